"""`retouchd run` with web_port: the interface is served by the daemon, and a paused inbox is honoured."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import FAST_ENV, base_env, cli, db_rows, save_image, wait_for

TOKEN = "e2e-token-0123456789abcdef"


def call(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {TOKEN}"},
                                     data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_daemon_serves_the_interface_and_honours_a_pause(root: Path, tmp_path: Path, daemon) -> None:
    """Paused: a dropped file is queued but not processed; `status` says so; resumed: it is processed."""
    proc = daemon(env={"RETOUCHD_WEB_PORT": "0", "RETOUCHD_WEB_TOKEN": TOKEN})
    url = wait_for(lambda: next((line["url"] for line in proc.log_lines()
                                 if line.get("event") == "serving the web interface"), None), timeout=30)
    assert call(url + "api/inboxes/upscale/pause", "POST")["paused"] is True
    save_image(root / "inbox" / "upscale" / "a.png", 40, 30)
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "queued"], timeout=60)
    wait_for(lambda: "paused by a person" in cli("status", "--once", "--root", str(root)).stdout, timeout=30)
    status = json.loads(cli("status", "--json", "--root", str(root)).stdout)
    assert set(status["paused_inboxes"]) == {"upscale"}
    assert [r["state"] for r in db_rows(root)] == ["queued"]  # ≥ several claim rounds later, still queued
    assert call(url + "api/inboxes/upscale/resume", "POST")["paused"] is False
    wait_for(lambda: [r["state"] for r in db_rows(root)] == ["archived"], timeout=90)
    jobs = call(url + "api/jobs")
    assert [(j["rel_path"], j["state"]) for j in jobs] == [("a.png", "archived")]
    assert proc.stop() == 0


def _status(url: str, path: str, method: str = "GET") -> int:
    try:
        call(url + path, method)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def test_web_sees_the_rules_reloaded_on_sighup(root: Path, tmp_path: Path, daemon) -> None:
    """After SIGHUP the interface serves the new rule set: a new inbox can be paused (and the daemon honours
    the pause), a removed rule leaves the dashboard and can no longer be paused."""
    rules = tmp_path / "rules.toml"
    step = 'steps=[{op="upscale", scale=2, model="lanczos"}]\n'
    rules.write_text(f'[[rule]]\nname="old"\ninbox="old"\n{step}')
    proc = daemon("--rules", str(rules), env={"RETOUCHD_WEB_PORT": "0", "RETOUCHD_WEB_TOKEN": TOKEN})
    url = wait_for(lambda: next((line["url"] for line in proc.log_lines()
                                 if line.get("event") == "serving the web interface"), None), timeout=30)
    assert [i["rule"] for i in call(url + "api/inboxes")] == ["old"]
    rules.write_text(f'[[rule]]\nname="new"\ninbox="new"\n{step}')
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(line.get("event") == "rules reloaded" for line in proc.log_lines()))
    assert [i["rule"] for i in call(url + "api/inboxes")] == ["new"]
    assert [i["rule"] for i in call(url + "api/status")["inboxes"]] == ["new"]
    assert call(url + "api/inboxes/new/pause", "POST")["paused"] is True
    assert _status(url, "api/inboxes/old/pause", "POST") == 404
    save_image(root / "inbox" / "new" / "n.png", 40, 30)
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "queued"], timeout=60)
    wait_for(lambda: "inbox of rule new paused by a person" in cli("status", "--once", "--root", str(root)).stdout)
    assert [r["state"] for r in db_rows(root)] == ["queued"]
    assert call(url + "api/inboxes/new/resume", "POST")["paused"] is False
    wait_for(lambda: [r["state"] for r in db_rows(root)] == ["archived"], timeout=90)
    assert proc.stop() == 0


def test_retouchd_web_rereads_the_rules_on_sighup(root: Path, tmp_path: Path) -> None:
    """`retouchd web` on its own: SIGHUP reads the rule files again; a broken file keeps the old rules."""
    rules = tmp_path / "rules.toml"
    step = 'steps=[{op="upscale", scale=2, model="lanczos"}]\n'
    rules.write_text(f'[[rule]]\nname="old"\ninbox="old"\n{step}')
    log = tmp_path / "web.log"
    env = {**base_env(), **FAST_ENV, "RETOUCHD_WEB_TOKEN": TOKEN}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "retouchd", "web", "--root", str(root), "--rules", str(rules),
                                 "--port", "0"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def logged(event: str) -> dict[str, Any] | None:
            for raw in log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if line.get("event") == event:
                        return line
            return None

        url = wait_for(lambda: (logged("serving the web interface") or {}).get("url"), timeout=60)
        wait_for(lambda: _status(url, "api/inboxes") == 200, timeout=30)
        rules.write_text(f'[[rule]]\nname="new"\ninbox="new"\n{step}')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: logged("rules reloaded"))
        assert [i["rule"] for i in call(url + "api/inboxes")] == ["new"]
        rules.write_text("not toml [")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: logged("rules not reloaded; keeping the old ones"))
        assert [i["rule"] for i in call(url + "api/inboxes")] == ["new"]
    finally:
        proc.terminate()
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
