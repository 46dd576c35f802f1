"""`retouchd status`: the live terminal view, one frame, JSON, and the daemon's status file behind them."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from retouchd.commands.status.data import MINUTES, query_jobs, reader, status_data
from retouchd.commands.status.view import human_bytes, human_seconds, sparkline
from retouchd.statusfile import SCHEMA, read_statuses, status_path, write_status
from retouchd.store import Job, JobState, open_store, utcnow

from conftest import cli, save_image, wait_for
from tests_support.terminal import run_in_pty, strip_ansi

TILED_RULE = """
[[rule]]
name = "tiled"
inbox = "tiled"
steps = [{ op = "upscale", scale = 2, model = "fast", tile = 32 }]
"""


def _status(root: Path, *extra: str) -> dict:
    result = cli("status", "--json", "--root", str(root), *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_job_in_flight_with_tiles_devices_and_daemon(root: Path, tmp_path: Path, daemon) -> None:
    """A job held after its model step shows in flight with step, tiles done / total and device; the
    daemon line and CPU memory come from the status file, which goes away when the daemon stops."""
    rules = tmp_path / "tiled.toml"
    rules.write_text(TILED_RULE)
    proc = daemon("--rules", str(rules), env={"RETOUCHD_FAULT_POINT": "hang-after-step-upscale",
                                                "RETOUCHD_WORKERS__DRAIN_TIMEOUT": "1"})
    save_image(root / "inbox" / "tiled" / "held.png", 64, 64)

    def tiles_done() -> dict | None:
        data = _status(root, "--rules", str(rules))
        running = data["running"]
        return data if running and running[0]["done"] == running[0]["total"] == 4 else None

    data = wait_for(tiles_done, timeout=90, interval=0.5)
    job = data["running"][0]
    assert (job["rule"], job["path"], job["step"], job["device"], job["progress"]) == (
        "tiled", "held.png", "upscale", "cpu", 1.0)
    assert data["queue"] == {"tiled": {"running": 1}}
    [report] = data["daemons"]
    assert report["running"] and report["pid"] == proc.proc.pid and report["host"] == socket.gethostname()
    assert report["metrics_url"] is None, "metrics are off by default"
    [device] = data["devices"]
    assert device["device"] == "cpu" and device["busy"] == 1 and device["slots"] == 1
    assert 50 * 2**20 < device["memory_used"] < device["memory_total"]

    frame = cli("status", "--once", "--root", str(root), "--rules", str(rules)).stdout
    assert "● running on" in frame and f"pid {proc.proc.pid}" in frame
    assert "held.png" in frame and "4/4" in frame and "upscale" in frame
    assert "RSS of daemon + workers" in frame

    assert proc.stop(signal.SIGTERM) == 0
    assert not status_path(root / "state").exists()
    after = _status(root, "--rules", str(rules))
    assert after["daemons"] == [] and after["devices"] == [] and after["running"] == []
    assert "no daemon reports" in cli("status", "--once", "--root", str(root)).stdout


def test_live_view_on_a_terminal_refreshes_and_quits_on_q(root: Path) -> None:
    """On a terminal `status` draws on the alternate screen, redraws, and `q` ends it with exit 0; without a
    terminal it prints one frame."""
    save_image(root / "inbox" / "upscale" / "a.png")
    (root / "inbox" / "upscale" / "b.png").write_bytes(b"not an image")
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 0
    # q after a few redraws, with room for a slow start on a busy machine.
    code, raw = run_in_pty("status", "--root", str(root), "--interval", "0.3", keys=b"q", keys_after=8.0)
    assert code == 0
    assert "\x1b[?1049h" in raw and "\x1b[?1049l" in raw, "alternate screen entered and left"
    text = strip_ansi(raw)
    assert text.count("queue by rule") >= 2, "the view was redrawn"
    assert "q or Ctrl-C to quit" in text and "not an image" in text
    piped = cli("status", "--root", str(root))
    assert piped.returncode == 0 and piped.stdout.count("queue by rule") == 1 and "\x1b[" not in piped.stdout


def test_status_reads_do_not_wait_for_the_write_lock(root: Path) -> None:
    """While another connection holds SQLite's write lock (as the daemon does when it commits), a status
    refresh still completes at once and sees the last committed state."""
    save_image(root / "inbox" / "upscale" / "a.png")
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 0
    db = root / "state" / "retouchd.db"
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE jobs SET state = 'failed'")
        started = time.monotonic()
        data = status_data(reader(f"sqlite:///{db}"), root / "state")
        assert time.monotonic() - started < 2
        assert data["queue"] == {"upscale": {"archived": 1}}
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_status_file_is_believed_only_while_fresh_and_alive(tmp_path: Path) -> None:
    """A fresh file of a live process reads as running; a stale one, or one whose process is gone on this
    machine (whatever its host_id), reads as stopped; a file from another machine is judged by its age alone."""
    host, now = socket.gethostname(), time.time()
    base = {"schema": SCHEMA, "interval": 2.0, "started_at": now - 60}
    write_status(tmp_path / "daemon-a.json", {**base, "host": host, "pid": os.getpid(), "updated_at": now - 1})
    write_status(tmp_path / "daemon-b.json", {**base, "host": host, "pid": os.getpid(), "updated_at": now - 60})
    write_status(tmp_path / "daemon-c.json", {**base, "host": host, "pid": 2**22 + 7, "updated_at": now})
    write_status(tmp_path / "daemon-d.json", {**base, "host": "elsewhere", "pid": 1, "updated_at": now - 2})
    write_status(tmp_path / "daemon-e.json", {**base, "schema": 99, "host": host, "pid": 1, "updated_at": now})
    write_status(tmp_path / "daemon-g.json", {**base, "host": "custom-host-id", "hostname": host, "pid": 2**22 + 7,
                                              "updated_at": now})
    (tmp_path / "daemon-f.json").write_text("{half a fi")
    found = {Path(s["file"]).name: s["running"] for s in read_statuses(tmp_path, now)}
    assert found == {"daemon-a.json": True, "daemon-b.json": False, "daemon-c.json": False, "daemon-d.json": True,
                     "daemon-g.json": False}
    assert not list(tmp_path.glob(".*.tmp")), "writes go through a temporary name that is renamed away"


def test_throughput_buckets_sparkline_and_units(tmp_path: Path) -> None:
    """Finished times fall into one-minute buckets (counted in the database), oldest first; the sparkline
    scales to the busiest minute."""
    now = utcnow()
    times = [now - timedelta(seconds=s) for s in (5, 30, 59, 61, 125, 60 * MINUTES + 1)]
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    with store.session() as s:
        s.add_all(Job(rule="r", content_key=f"k{i}", sha256=f"{i:064x}", source_path=f"/in/{i}", rel_path=f"{i}.jpg",
                      size=1, mtime=0.0, state=JobState.ARCHIVED, attempts=1, created_at=at, updated_at=at,
                      finished_at=at) for i, at in enumerate(times))
    buckets = query_jobs(store.engine, now)["throughput"]["per_minute"]
    store.engine.dispose()
    assert len(buckets) == MINUTES and buckets[-3:] == [1, 1, 3] and sum(buckets) == 5
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█" and sparkline([0, 0]) == "▁▁"
    assert (human_bytes(512), human_bytes(3 * 2**30 // 2), human_bytes(None)) == ("512 B", "1.5 GiB", "?")
    assert (human_seconds(42), human_seconds(3725), human_seconds(90061)) == ("42s", "1h 02m", "1d 1h")


def _busy_data() -> dict:
    """A status with a bit of everything: two rules, five jobs in flight, ten failures, a device, a host,
    an image waiting for its mask and an orphan mask."""
    now = utcnow()
    running = [{"id": i, "rule": "catalog", "path": f"shoot/IMG_{i:04d}.jpg", "step": "upscale", "progress": 0.5,
                "done": 8, "total": 16, "device": "cpu", "host": "nas", "attempt": 1, "seconds": 12.0}
               for i in range(1, 6)]
    failures = [{"id": 100 + i, "rule": "objects", "path": f"f{i}.png", "error": "not an image (HTML page)",
                 "step": "decode", "at": now, "attempt": 1} for i in range(10)]
    daemon_file = {"running": True, "host": "nas", "pid": 42, "started_at": time.time() - 3600, "slots": [],
                   "settling": 1, "stopping": False,
                   "awaiting_sidecar": [{"rule": "objects", "path": "/in/objects/late.jpg", "left": 12.0}],
                   "orphan_masks": [{"rule": "objects", "path": "/in/objects/lonely.mask.png", "age": 95.0}]}
    return {
        "time": now, "queue": {"catalog": {"queued": 40, "running": 5, "archived": 900},
                               "objects": {"failed": 10, "archived": 3}},
        "duplicates": {"catalog": 7}, "running": running,
        "throughput": {"last_5_min": 20, "last_hour": 200, "per_minute_5": 4.0, "failed_last_hour": 10,
                       "minutes": MINUTES, "per_minute": [3] * MINUTES, "failed_per_minute": [0] * MINUTES},
        "recent_failures": failures, "retrying": [],
        "hosts": [{"host": "nas", "pid": 42, "version": "1", "slots": ["cpu"], "started_at": now,
                   "seen_at": now, "working_on": [1]}],
        "daemons": [daemon_file],
        "devices": [{"device": "cpu", "name": "CPU", "slots": 1, "busy": 1, "memory_used": 300 * 2**20,
                     "memory_total": 8 * 2**30, "memory_scope": "RSS"}],
    }


def test_frame_fits_80x24_with_the_quit_hint_last() -> None:
    """On an 80×24 terminal the frame is at most 24 lines, every section still appears (collapsed to a line
    if need be) and the last line is the quit hint; a tall terminal gets the full tables."""
    from rich.console import Console

    from retouchd.commands.status.view import render

    footer = "refreshes every 2 s · q or Ctrl-C to quit"
    data = _busy_data()
    small = Console(width=80, height=24, record=True, force_terminal=False, color_system=None)
    small.print(render(data, footer, "/srv/retouch", console=small, height=24))
    lines = small.export_text().rstrip("\n").splitlines()
    assert len(lines) <= 24
    assert lines[-1].startswith("refreshes every 2 s · q or Ctrl-C to quit")
    text = "\n".join(lines)
    for section in ("queue", "in flight", "recent failures", "devices", "throughput", "hosts"):
        assert section in text, section
    assert "late.jpg" in text and "lonely.mask.png" in text
    tall = Console(width=120, height=200, record=True, force_terminal=False, color_system=None)
    tall.print(render(data, footer, "/srv/retouch", console=tall, height=200))
    full = tall.export_text()
    assert "f9.png" in full and "IMG_0005.jpg" in full, "a tall terminal shows every row"
    assert full.rstrip("\n").splitlines()[-1].startswith("refreshes every")


def test_jobs_in_flight_keep_their_file_name_at_80_columns() -> None:
    """At 80 columns the in-flight table still shows each file name, its tiles and time; a retry shows ↻N."""
    from rich.console import Console

    from retouchd.commands.status.view import _running_table

    running = _busy_data()["running"][:2]
    running[1]["attempt"] = 2
    console = Console(width=80, record=True, color_system=None)
    console.print(_running_table(running))
    text = console.export_text()
    assert "shoot/IMG_0001.jpg" in text and "8/16" in text and "12s" in text and "upscale ↻2" in text
    assert max(len(line) for line in text.splitlines()) <= 80
