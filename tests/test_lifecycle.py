"""Daemon lifecycle: sd_notify, SIGTERM drain and requeue, a second signal, SIGHUP reload."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from conftest import db_rows, save_image, wait_for


def test_sd_notify_ready_watchdog_stopping(root: Path, tmp_path: Path, daemon) -> None:
    """With NOTIFY_SOCKET set the daemon sends READY=1, WATCHDOG=1 pings and STOPPING=1."""
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.2)
    messages: list[str] = []

    def drain() -> None:
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except TimeoutError:
            pass

    proc = daemon(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
    wait_for(lambda: drain() or any("WATCHDOG=1" in m for m in messages), timeout=15)
    assert any("READY=1" in m for m in messages)
    assert proc.stop() == 0
    drain()
    assert any("STOPPING=1" in m for m in messages)
    sock.close()


def test_sigterm_during_long_job_requeues_and_resumes(root: Path, daemon) -> None:
    """SIGTERM while a job hangs: drained up to the timeout, requeued without losing an attempt, exit 0;
    the next start finishes it."""
    save_image(root / "inbox" / "upscale" / "long.png")
    proc = daemon(env={"RETOUCHD_FAULT_POINT": "hang-after-step-upscale", "RETOUCHD_WORKERS__DRAIN_TIMEOUT": "1"})
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "running"])
    time.sleep(0.5)
    started = time.monotonic()
    assert proc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    (row,) = db_rows(root)
    assert row["state"] == "queued" and row["attempts"] == 0
    assert (root / "inbox" / "upscale" / "long.png").exists()
    again = daemon()
    wait_for(lambda: db_rows(root)[0]["state"] == "archived")
    assert again.stop() == 0


def test_second_signal_exits_at_once(root: Path, daemon) -> None:
    """A second SIGTERM skips the drain wait; the cut job is requeued for the next start."""
    save_image(root / "inbox" / "upscale" / "long.png")
    proc = daemon(env={"RETOUCHD_FAULT_POINT": "hang-after-step-upscale", "RETOUCHD_WORKERS__DRAIN_TIMEOUT": "300"})
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "running"])
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    assert db_rows(root)[0]["state"] == "queued"


def test_sighup_reloads_rules(root: Path, tmp_path: Path, daemon) -> None:
    """SIGHUP re-reads the rule files: a rule added to the file starts watching its inbox."""
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname="one"\ninbox="one"\nsteps=[{op="upscale", scale=2, model="lanczos"}]\n')
    proc = daemon("--rules", str(rules))
    rules.write_text(rules.read_text() + '[[rule]]\nname="two"\ninbox="two"\n'
                     'steps=[{op="upscale", scale=3, model="lanczos"}]\n')
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(line.get("event") == "rules reloaded" for line in proc.log_lines()))
    save_image(root / "inbox" / "two" / "t.png", 10, 10)
    wait_for(lambda: [r for r in db_rows(root) if r["rule"] == "two" and r["state"] == "archived"])
    assert (root / "outbox" / "two" / "t.png").exists()
    rules.write_text("not toml [")
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(line.get("event") == "rules not reloaded; keeping the old ones" for line in proc.log_lines()))
    assert proc.proc.poll() is None
    assert proc.stop() == 0
