"""The web interface's JSON API (a contract) and the review semantics behind it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from retouchd.store.reviews import Reviews
from retouchd.web.app import create_app

from tests_support.webjobs import Farm

BASE = "http://127.0.0.1"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    return Farm(tmp_path / "root")


def client_for(farm: Farm) -> TestClient:
    app = create_app(farm.settings, farm.rules, farm.store, farm.folders)
    client = TestClient(app, base_url=BASE)
    client.headers["X-CSRF-Token"] = app.state.web.guard.csrf
    return client


@pytest.fixture
def client(farm: Farm) -> TestClient:
    return client_for(farm)


def test_jobs_list_has_the_contract_fields_and_filters(farm: Farm, client: TestClient) -> None:
    """GET /api/jobs lists id, rule, state, rel_path, newest first; state, rule and limit filter it."""
    a = farm.finished("shop", "a.png")
    b = farm.queued("shop", "sub/b.png")
    c = farm.failed("scans", "c.png")
    jobs = client.get("/api/jobs").json()
    assert [(j["id"], j["rule"], j["state"], j["rel_path"]) for j in jobs] == [
        (c.id, "scans", "failed", "c.png"), (b.id, "shop", "queued", "sub/b.png"), (a.id, "shop", "archived", "a.png")]
    assert [j["id"] for j in client.get("/api/jobs", params={"state": "queued"}).json()] == [b.id]
    assert [j["id"] for j in client.get("/api/jobs", params={"rule": "shop"}).json()] == [b.id, a.id]
    assert [j["id"] for j in client.get("/api/jobs", params={"limit": 1}).json()] == [c.id]
    assert [j["id"] for j in client.get("/api/jobs", params={"q": "sub/"}).json()] == [b.id]
    assert [j["id"] for j in client.get("/api/jobs", params={"q": "%"}).json()] == []  # a literal, not a wildcard
    detail = client.get(f"/api/jobs/{a.id}").json()
    assert detail["sha256"] == a.sha256 and detail["steps"][0]["op"] == "upscale" and detail["device_seconds"] == 1.0
    assert client.get("/api/jobs/999999").status_code == 404


def test_approve_moves_a_review_result_to_the_outbox(farm: Farm, client: TestClient) -> None:
    """Approve: review/<rule>/x → outbox/<rule>/x (same bytes), verdict recorded; twice is a conflict."""
    job = farm.finished("shop", "deep/x.png", review=True)
    in_review = Path(job.output_path or "")
    assert in_review.parent == farm.folders["shop"].review / "deep"
    digest = sha(in_review)
    assert [j["id"] for j in client.get("/api/jobs", params={"review": "pending"}).json()] == [job.id]
    r = client.post(f"/api/jobs/{job.id}/approve")
    assert r.status_code == 200, r.text
    assert r.json()["review"] == "approved"
    published = farm.folders["shop"].outbox / "deep" / "x.png"
    assert sha(published) == digest and not in_review.exists()
    assert farm.store.get(job.id).output_path == str(published)  # type: ignore[union-attr]
    assert client.post(f"/api/jobs/{job.id}/approve").status_code == 409
    assert client.post("/api/jobs/424242/approve").status_code == 404


def test_reject_moves_to_rejected_with_reason_and_keeps_the_original(farm: Farm, client: TestClient) -> None:
    """Reject (review result, or an outbox result): output → rejected/<rule>/<rel>; reason in the DB."""
    pending = farm.finished("shop", "p.png", review=True)
    published = farm.finished("shop", "d/q.png")
    archived = Path(published.archive_path or "")
    original_digest = sha(archived)
    assert client.post(f"/api/jobs/{pending.id}/reject", json={"reason": "halo"}).status_code == 200
    r = client.post(f"/api/jobs/{published.id}/reject", json={"reason": "  smeared logo  "})
    assert r.status_code == 200, r.text
    rejected = farm.root / "rejected" / "shop"
    assert (rejected / "p.png").is_file() and (rejected / "d" / "q.png").is_file()
    assert not (farm.folders["shop"].outbox / "d" / "q.png").exists()
    assert sha(archived) == original_digest == published.sha256  # the original stays archived
    reviews = Reviews(farm.store)
    assert (reviews.get(published.id).verdict, reviews.get(published.id).reason) == (  # type: ignore[union-attr]
        "rejected", "smeared logo")
    assert client.get(f"/api/jobs/{pending.id}").json()["reason"] == "halo"
    assert client.post(f"/api/jobs/{published.id}/reject", json={"reason": "again"}).status_code == 409


def test_reject_refuses_bad_requests(farm: Farm, client: TestClient) -> None:
    """No reason → 400; not JSON → 400; a queued job has no result → 409."""
    done = farm.finished("shop", "a.png")
    queued = farm.queued("shop", "b.png")
    assert client.post(f"/api/jobs/{done.id}/reject", json={"reason": " "}).status_code == 400
    assert client.post(f"/api/jobs/{done.id}/reject", content=b"not json").status_code == 400
    assert client.post(f"/api/jobs/{done.id}/reject", json={"why": "x"}).status_code == 400
    assert client.post(f"/api/jobs/{queued.id}/reject", json={"reason": "x"}).status_code == 409
    assert Path(done.output_path or "").exists()


def test_rejected_folder_may_be_absolute_per_rule(tmp_path: Path) -> None:
    """A rule's `rejected` folder may be an absolute path (e.g. on a share)."""
    elsewhere = tmp_path / "nas-rejects"
    rules = f'[[rule]]\nname = "shop"\ninbox = "shop"\nrejected = "{elsewhere}"\n' \
            'steps = [{ op = "upscale", scale = 2, model = "lanczos" }]\n'
    farm = Farm(tmp_path / "root", rules)
    job = farm.finished("shop", "a.png")
    assert client_for(farm).post(f"/api/jobs/{job.id}/reject", json={"reason": "x"}).status_code == 200
    assert (elsewhere / "a.png").is_file()


def test_retry_and_cancel(farm: Farm, client: TestClient) -> None:
    """Retry sends a failed file back to its inbox; cancel takes a queued one off the queue into failed/."""
    failed = farm.failed("shop", "bad.png")
    assert Path(failed.failed_path or "").exists()
    r = client.post(f"/api/jobs/{failed.id}/retry")
    assert r.status_code == 200 and r.json()["state"] == "queued"
    assert (farm.folders["shop"].inbox / "bad.png").exists()
    assert client.post(f"/api/jobs/{failed.id}/retry").status_code == 409
    r = client.post(f"/api/jobs/{failed.id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "failed" and r.json()["error"] == "cancelled by a person"
    assert not (farm.folders["shop"].inbox / "bad.png").exists()
    assert (farm.folders["shop"].failed / "bad.png").exists()
    assert farm.store.get(failed.id).attempts == 0  # type: ignore[union-attr]
    assert client.post(f"/api/jobs/{failed.id}/cancel").status_code == 409
    assert client.post(f"/api/jobs/{failed.id}/explode").status_code == 404


def test_pause_and_resume_are_kept_in_the_database(farm: Farm, client: TestClient) -> None:
    """Pause/resume per inbox is a DB row; unknown rules are 404."""
    r = client.post("/api/inboxes/shop/pause")
    assert r.status_code == 200 and r.json()["paused"] is True
    assert set(Reviews(farm.store).paused()) == {"shop"}
    inboxes = {i["rule"]: i["paused"] for i in client.get("/api/inboxes").json()}
    assert inboxes == {"shop": True, "scans": False}
    assert client.post("/api/inboxes/shop/resume").json()["paused"] is False
    assert Reviews(farm.store).paused() == {}
    assert client.post("/api/inboxes/nope/pause").status_code == 404


def test_stats_reject_rate_and_cost_per_approved_image(farm: Farm, client: TestClient) -> None:
    """4 results of 2 s each + a failure of 0.5 s: 1 rejected, 1 pending → reject rate 1/3, 8.5 s / 2 approved."""
    jobs = [farm.finished("shop", f"{i}.png", seconds=2.0, review=i >= 2) for i in range(4)]
    farm.failed("shop", "bad.png")
    client.post(f"/api/jobs/{jobs[0].id}/reject", json={"reason": "x"})
    client.post(f"/api/jobs/{jobs[2].id}/approve")
    stats = client.get("/api/stats").json()
    shop = next(r for r in stats["rules"] if r["rule"] == "shop")
    assert (shop["done"], shop["approved"], shop["rejected"], shop["pending_review"], shop["failed"]) == (4, 2, 1, 1, 1)
    assert shop["reject_rate"] == pytest.approx(1 / 3)
    assert shop["device_seconds"] == pytest.approx(8.5)
    assert shop["device_seconds_per_image"] == pytest.approx(8.5 / 4)
    assert shop["device_seconds_per_approved"] == pytest.approx(8.5 / 2)


def test_images_only_by_job_id(farm: Farm, client: TestClient) -> None:
    """before = archived original's bytes, after = output; unknown ids and path-like requests are 404."""
    job = farm.finished("shop", "a.png")
    before = client.get(f"/jobs/{job.id}/before")
    assert before.status_code == 200 and before.content == Path(job.archive_path or "").read_bytes()
    assert before.headers["content-type"] == "image/png"
    after = client.get(f"/jobs/{job.id}/after")
    assert after.content == Path(job.output_path or "").read_bytes()
    assert client.get("/jobs/999/before").status_code == 404
    assert client.get(f"/jobs/{job.id}/mask").status_code == 404
    for attempt in ("/jobs/../../etc/passwd", "/jobs/%2e%2e/%2e%2e/etc/passwd", f"/jobs/{job.id}/..%2f..%2fetc",
                    "/static/../../../etc/passwd", "/static/%2e%2e/app.py", "/jobs/1;/etc/passwd/before"):
        r = client.get(attempt)
        assert r.status_code == 404, attempt
        assert b"root:" not in r.content and b"create_app" not in r.content


def test_an_output_replaced_by_a_symlink_is_not_followed(farm: Farm, client: TestClient, tmp_path: Path) -> None:
    """If someone swaps the output for a symlink, the interface does not serve what it points at."""
    job = farm.finished("shop", "a.png")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    out = Path(job.output_path or "")
    out.unlink()
    os.symlink(secret, out)
    assert client.get(f"/jobs/{job.id}/after").status_code == 404


def test_status_and_events(farm: Farm, client: TestClient) -> None:
    """The dashboard's data: queue by rule, inboxes with pause state, stats; SSE sends it as `status` events."""
    farm.queued("shop", "a.png")
    status = client.get("/api/status").json()
    assert status["queue"]["shop"] == {"queued": 1}
    assert {i["rule"] for i in status["inboxes"]} == {"shop", "scans"}
    with client.stream("GET", "/events", params={"once": "1"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert text.startswith("event: status\ndata: {") and '"queued": 1' in text


def test_pages_render(farm: Farm, client: TestClient) -> None:
    """Every page renders with the jobs it lists (and escapes their names)."""
    job = farm.finished("shop", "<b>x</b>.png", review=True)
    failed = farm.failed("scans", "bad.png")
    assert "&lt;b&gt;x&lt;/b&gt;.png" in client.get("/review").text
    assert f'data-job="{failed.id}"' in client.get("/failures").text
    assert "&lt;b&gt;x" in client.get("/history", params={"rule": "shop"}).text
    page = client.get(f"/jobs/{job.id}").text
    assert f"/jobs/{job.id}/after" in page and "upscale" in page and "tiles=4 model=lanczos" in page
    assert "<b>x</b>" not in client.get("/").text
    assert "Not found" in client.get("/jobs/4242").text


def test_formats_a_browser_cannot_show_are_served_as_jpeg(farm: Farm, client: TestClient) -> None:
    """A TIFF result (or a HEIC original) comes out as a full-resolution JPEG of the same picture."""
    from PIL import Image

    job = farm.finished("shop", "a.png")
    tiff = Path(job.output_path or "").with_suffix(".tif")
    with Image.open(job.output_path or "") as im:
        im.save(tiff, format="TIFF")
        size = im.size
    with farm.store.session() as s:
        from retouchd.store import Job

        s.get(Job, job.id).output_path = str(tiff)  # type: ignore[union-attr]
    r = client.get(f"/jobs/{job.id}/after")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    import io

    with Image.open(io.BytesIO(r.content)) as shown, Image.open(tiff) as original:
        assert shown.size == size
        diff = [abs(a - b) for a, b in zip(shown.convert("RGB").tobytes(), original.convert("RGB").tobytes(),
                                           strict=True)]
        assert sum(diff) / len(diff) < 8
