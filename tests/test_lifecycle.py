"""Daemon lifecycle: sd_notify, SIGTERM drain and requeue, a second signal, SIGHUP reload."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from conftest import cli, db_rows, save_image, wait_for


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
    """SIGHUP with a rule whose inbox cannot be created (its parent is a file): the old rules stay, the log
    says why, and the daemon keeps processing."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname="one"\ninbox="one"\n{LANCZOS}')
    proc = daemon("--rules", str(rules))
    rules.write_text(rules.read_text() + f'[[rule]]\nname="bad"\ninbox="{blocker}/inbox"\n{LANCZOS}')
    proc.proc.send_signal(signal.SIGHUP)
    failed = wait_for(lambda: [line for line in proc.log_lines()
                               if line.get("event") == "rules not reloaded; keeping the old ones"])
    assert "cannot create the folder" in failed[0]["error"] and "bad" in failed[0]["error"]
    save_image(root / "inbox" / "one" / "o.png", 10, 10)
    wait_for(lambda: [r for r in db_rows(root) if r["rule"] == "one" and r["state"] == "archived"])
    assert not any(line.get("event") == "rules reloaded" for line in proc.log_lines())
    assert proc.stop() == 0


def test_startup_with_a_folder_that_cannot_be_created(root: Path, tmp_path: Path) -> None:
    """The same rule at start-up: exit 2 with one line that names the rule and the folder."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname="bad"\ninbox="{blocker}/inbox"\n{LANCZOS}')
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
