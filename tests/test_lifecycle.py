"""Daemon lifecycle: sd_notify, SIGTERM drain and requeue, a second signal, SIGHUP reload."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import FAST_ENV, base_env, cli, db_rows, save_image, wait_for


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


LANCZOS = 'steps=[{op="upscale", scale=2, model="lanczos"}]\n'


def test_reload_with_a_folder_that_cannot_be_created(root: Path, tmp_path: Path, daemon) -> None:
    """SIGHUP with a rule whose inbox under the root cannot be created (its parent is a file): the old rules
    stay, the log says why, and the daemon keeps processing. (A missing *absolute* folder is an unmounted
    share: paused, never created — tested in test_inbox_boundary.)"""
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname="one"\ninbox="one"\n{LANCZOS}')
    proc = daemon("--rules", str(rules))
    (root / "inbox" / "a-file").write_text("x")
    rules.write_text(rules.read_text() + f'[[rule]]\nname="bad"\ninbox="a-file/inbox"\n{LANCZOS}')
    proc.proc.send_signal(signal.SIGHUP)
    failed = wait_for(lambda: [line for line in proc.log_lines()
                               if line.get("event") == "rules not reloaded; keeping the old ones"])
    assert "cannot create the folder" in failed[0]["error"] and "bad" in failed[0]["error"]
    save_image(root / "inbox" / "one" / "o.png", 10, 10)
    wait_for(lambda: [r for r in db_rows(root) if r["rule"] == "one" and r["state"] == "archived"])
    assert not any(line.get("event") == "rules reloaded" for line in proc.log_lines())
    assert proc.stop() == 0


def test_reload_that_drops_a_rule_forgets_its_settling_files(root: Path, tmp_path: Path, daemon) -> None:
    """A file still settling in a rule that SIGHUP removes is left alone: no "internal error", no job, the
    file stays in its inbox; the remaining rule keeps working."""
    rules = tmp_path / "rules.toml"
    one = f'[[rule]]\nname="one"\ninbox="one"\n{LANCZOS}'
    rules.write_text(one + f'[[rule]]\nname="two"\ninbox="two"\n{LANCZOS}')
    proc = daemon("--rules", str(rules), env={"RETOUCHD_WATCH__SETTLE_TIME": "3"})
    save_image(root / "inbox" / "two" / "t.png", 10, 10)
    time.sleep(1.0)  # seen, not yet settled
    rules.write_text(one)
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(line.get("event") == "rules reloaded" for line in proc.log_lines()))
    save_image(root / "inbox" / "one" / "o.png", 10, 10)
    wait_for(lambda: [r for r in db_rows(root) if r["rule"] == "one" and r["state"] == "archived"])
    time.sleep(1.0)  # t.png's settle time has long passed
    assert [r["rule"] for r in db_rows(root)] == ["one"]
    assert (root / "inbox" / "two" / "t.png").exists()
    assert not [line for line in proc.log_lines() if "internal error" in (line.get("event") or "")]
    assert proc.stop() == 0


def test_startup_with_a_folder_that_cannot_be_created(root: Path, tmp_path: Path) -> None:
    """The same rule at start-up: exit 2 with one line that names the rule and the folder."""
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    (root / "inbox" / "a-file").write_text("x")
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname="bad"\ninbox="a-file/inbox"\n{LANCZOS}')
    result = cli("run", "--once", "--root", str(root), "--rules", str(rules))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("retouchd:")]
    assert len(lines) == 1 and "rule 'bad': cannot create the folder" in lines[0]
    assert "Traceback" not in result.stderr


def test_sighup_rereads_rule_files_from_the_settings_file(root: Path, tmp_path: Path, daemon) -> None:
    """SIGHUP re-reads `rule_files` from the settings file: a file switched there is the one loaded."""
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(f'[[rule]]\nname="one"\ninbox="one"\n{LANCZOS}')
    second.write_text(f'[[rule]]\nname="two"\ninbox="two"\n{LANCZOS}')
    config = tmp_path / "retouchd.toml"
    config.write_text(f'rule_files = ["{first}"]\n')
    proc = daemon("--config", str(config))
    config.write_text(f'rule_files = ["{second}"]\n')
    proc.proc.send_signal(signal.SIGHUP)
    reloaded = wait_for(lambda: [line for line in proc.log_lines() if line.get("event") == "rules reloaded"])
    assert reloaded[0]["rules"] == ["two"] and reloaded[0]["files"] == [str(second)]
    save_image(root / "inbox" / "two" / "t.png", 10, 10)
    wait_for(lambda: [r for r in db_rows(root) if r["rule"] == "two" and r["state"] == "archived"])
    assert proc.stop() == 0


def test_ctrl_c_with_the_log_pipe_closed(root: Path) -> None:
    """`retouchd run 2>&1 | tee log` and Ctrl-C: tee goes away with the pipe; the daemon still drains, exits
    0 and takes its status file and lock with it (a second start is not refused)."""
    proc = subprocess.Popen([sys.executable, "-m", "retouchd", "run", "--root", str(root)],
                            env={**base_env(), **FAST_ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or b"retouchd started" in line:
                break
        assert proc.poll() is None
        proc.stdout.close()  # the reader (tee) is gone
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert list((root / "state").glob("daemon-*.json")) == []
    save_image(root / "inbox" / "upscale" / "after.png", 10, 10)
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 0
    assert [r["state"] for r in db_rows(root)] == ["archived"]


def test_startup_failure_after_the_pool_started_cleans_up(root: Path) -> None:
    """Start-up fails after the slots started: exit 3 with one line; no status file, the host row says it
    stopped, and the next start is not refused."""
    result = cli("run", "--once", "--root", str(root), env={"RETOUCHD_FAULT_POINT": "enospc-after-pool-start"})
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "No space left" in result.stderr.splitlines()[-1]
    assert list((root / "state").glob("daemon-*.json")) == []
    conn = sqlite3.connect(root / "state" / "retouchd.db")
    try:
        assert [row[0] is not None for row in conn.execute("SELECT stopped_at FROM hosts")] == [True]
    finally:
        conn.close()
    assert cli("run", "--once", "--root", str(root)).returncode == 0


def test_second_daemon_on_one_root_is_refused(root: Path, daemon) -> None:
    """A second daemon on the same SQLite state folder stops at start-up with one line naming the first."""
    first = daemon()
    result = cli("run", "--root", str(root), timeout=60)
    assert result.returncode == 3, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("retouchd:")]
    assert len(lines) == 1 and f"pid {first.proc.pid}" in lines[0] and "already running" in lines[0]
    assert first.proc.poll() is None
    assert first.stop() == 0
