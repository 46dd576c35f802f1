"""`retouchd run` with web_port: the interface is served by the daemon, and a paused inbox is honoured."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from conftest import cli, db_rows, save_image, wait_for

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
