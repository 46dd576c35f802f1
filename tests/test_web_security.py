"""Who may use the web interface: token, session cookie, CSRF, Host, body size, exposed addresses."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from retouchd.exceptions import ConfigError
from retouchd.settings import load_settings
from retouchd.web.app import create_app
from retouchd.web.security import MAX_BODY, check_bind

from tests_support.webjobs import Farm

TOKEN = "s3cret-token-0123456789"
BASE = "http://127.0.0.1"


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    return Farm(tmp_path / "root", web_token=TOKEN)


def make(farm: Farm, base: str = BASE) -> tuple[TestClient, str]:
    app = create_app(farm.settings, farm.rules, farm.store, farm.folders)
    return TestClient(app, base_url=base, follow_redirects=False), app.state.web.guard.csrf


def test_no_token_or_wrong_token_is_401(farm: Farm) -> None:
    """Every API call, image and event stream needs the token; a page redirects to the login form."""
    job = farm.finished("shop", "a.png")
    client, _ = make(farm)
    for path in ("/api/jobs", f"/api/jobs/{job.id}", "/api/stats", f"/jobs/{job.id}/before", "/events"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong-token-000000"}).status_code == 401, path
        assert client.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401, path
    assert client.post(f"/api/jobs/{job.id}/reject", json={"reason": "x"}).status_code == 401
    assert client.post("/api/inboxes/shop/pause").status_code == 401
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/login").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert Path(job.output_path or "").exists()


def test_bearer_token_works_without_csrf(farm: Farm) -> None:
    """A script with the token in the Authorization header needs nothing else (no cookie → no CSRF risk)."""
    job = farm.finished("shop", "a.png")
    client, _ = make(farm)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert [j["id"] for j in client.get("/api/jobs", headers=auth).json()] == [job.id]
    r = client.post(f"/api/jobs/{job.id}/reject", json={"reason": "bad"}, headers=auth)
    assert r.status_code == 200 and r.json()["review"] == "rejected"


def test_login_sets_a_strict_httponly_cookie_and_posts_need_csrf(farm: Farm) -> None:
    """The login form's cookie opens GETs; a POST by cookie also needs the page's CSRF token."""
    job = farm.finished("shop", "a.png", review=True)
    client, csrf = make(farm)
    bad = client.post("/login", data={"token": "nope"})
    assert bad.status_code == 401 and "retouchd_session" not in bad.headers.get("set-cookie", "")
    r = client.post("/login", data={"token": TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
    assert client.get("/").status_code == 200
    assert csrf in client.get("/review").text  # the page carries the CSRF token for its script
    assert client.post(f"/api/jobs/{job.id}/approve").status_code == 403
    assert client.post(f"/api/jobs/{job.id}/approve", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert farm.store.get(job.id).output_path.startswith(str(farm.folders["shop"].review))  # type: ignore[union-attr]
    assert client.post(f"/api/jobs/{job.id}/approve", headers={"X-CSRF-Token": csrf}).status_code == 200
    client.post("/logout", headers={"X-CSRF-Token": csrf})
    client.cookies.clear()
    assert client.get("/api/jobs").status_code == 401


def test_without_a_token_only_loopback_hosts_and_csrf_posts(tmp_path: Path) -> None:
    """No token: a request naming another Host (DNS rebinding) is refused; a POST without CSRF is refused."""
    farm = Farm(tmp_path / "root")
    job = farm.finished("shop", "a.png", review=True)
    client, csrf = make(farm)
    assert client.get("/api/jobs").status_code == 200
    assert client.get("/api/jobs", headers={"Host": "evil.example:8750"}).status_code == 403
    assert client.get("/api/jobs", headers={"Host": "[::1]:8750"}).status_code == 200
    assert client.post(f"/api/jobs/{job.id}/approve").status_code == 403
    form = client.post(f"/api/jobs/{job.id}/approve", content=b"x=1",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 403  # what a cross-site form could send
    assert client.post(f"/api/jobs/{job.id}/approve", headers={"X-CSRF-Token": csrf}).status_code == 200


def test_oversized_bodies_are_refused(farm: Farm) -> None:
    """Bodies over the limit get 413, announced (Content-Length) or streamed (chunked)."""
    job = farm.finished("shop", "a.png")
    client, _ = make(farm)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    huge = b'{"reason": "' + b"x" * (MAX_BODY + 10) + b'"}'
    assert client.post(f"/api/jobs/{job.id}/reject", content=huge, headers=auth).status_code == 413

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"x" * (MAX_BODY // 2)

    assert client.post(f"/api/jobs/{job.id}/reject", content=chunks(), headers=auth).status_code == 413
    assert Path(job.output_path or "").exists()


def test_exposed_address_needs_a_token(tmp_path: Path) -> None:
    """Binding beyond loopback without web_token refuses with one line; loopback or a token is fine."""
    message = check_bind("0.0.0.0", None)
    assert message is not None and "web_token" in message and "\n" not in message
    assert check_bind("127.0.0.1", None) is None and check_bind("::1", None) is None
    assert check_bind("0.0.0.0", TOKEN) is None
    from retouchd.web.server import WebThread

    farm = Farm(tmp_path / "root", web_port=0, web_address="0.0.0.0")
    with pytest.raises(ConfigError, match="without web_token"):
        WebThread(farm.settings, farm.rules, farm.store, farm.folders)
    with pytest.raises(ConfigError, match="web_token"):
        load_settings(env=False, web_token="short")


def test_retouchd_web_refuses_an_exposed_address_without_a_token(tmp_path: Path) -> None:
    """`retouchd web` on 0.0.0.0 without web_token exits 2 with one line that names the fix."""
    from conftest import cli

    result = cli("web", "--root", str(tmp_path / "root"), env={"RETOUCHD_WEB_ADDRESS": "0.0.0.0"}, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "without web_token" in lines[0] and lines[0].startswith("retouchd: ")
