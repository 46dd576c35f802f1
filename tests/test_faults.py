"""Faults to survive (SPEC §6, issue 6), each against the real daemon process."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import child_pids, cli, db_rows, files_under, kill_hard, save_image, sha256, wait_for

ONCE = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}


def _assert_done_once(root: Path, hashes: dict[str, str]) -> None:
    rows = db_rows(root)
    assert sorted(r["rel_path"] for r in rows) == sorted(hashes)
    for row in rows:
        assert row["state"] == "archived", row
        assert sha256(Path(row["archive_path"])) == hashes[row["rel_path"]]
        with Image.open(row["output_path"]) as im:
            im.load()
    assert sorted(p.name for p in files_under(root / "outbox")) == sorted(hashes)
    assert files_under(root / "inbox") == []


def test_killed_again_during_recovery(root: Path) -> None:
    """Killed at a commit point, then killed again at the same point while recovering: the third start
    still archives every original exactly once and fails nothing."""
    hashes = {f"k{i}.png": sha256(save_image(root / "inbox" / "upscale" / f"k{i}.png", seed=i)) for i in range(2)}
    env = {**ONCE, "RETOUCHD_FAULT_POINT": "before-archive"}
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 87
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 87
    assert cli("run", "--once", "--root", str(root), env=ONCE).returncode == 0
    _assert_done_once(root, hashes)


def test_killed_between_queue_and_claim(root: Path) -> None:
    """Killed right after a file was queued (before any claim): the restart processes it once."""
    hashes = {"q.png": sha256(save_image(root / "inbox" / "upscale" / "q.png"))}
    assert cli("run", "--once", "--root", str(root), env={**ONCE, "RETOUCHD_FAULT_POINT": "after-queue"}
               ).returncode == 87
    assert [r["state"] for r in db_rows(root)] == ["queued"]
    assert cli("run", "--once", "--root", str(root), env=ONCE).returncode == 0
    _assert_done_once(root, hashes)


def test_kill_9_mid_step_takes_the_worker_too(root: Path, daemon) -> None:
    """kill -9 of the daemon while a worker is mid-step: the worker dies with it, and the restarted daemon
    finishes the job without spending an attempt."""
    hashes = {"m.png": sha256(save_image(root / "inbox" / "upscale" / "m.png"))}
    proc = daemon(env={"RETOUCHD_FAULT_POINT": "hang-after-step-upscale"})
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "running"])
    workers = child_pids(proc.proc.pid)
    assert workers
    kill_hard(proc)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=10)
    assert cli("run", "--once", "--root", str(root), env=ONCE).returncode == 0
    _assert_done_once(root, hashes)
    assert db_rows(root)[0]["attempts"] == 1


def test_worker_sigkill_costs_one_attempt_and_daemon_lives(root: Path, daemon) -> None:
    """A worker killed with SIGKILL mid-job: one attempt spent, reason recorded, the daemon keeps going and
    processes the next file."""
    save_image(root / "inbox" / "upscale" / "victim.png")
    proc = daemon(env={"RETOUCHD_FAULT_POINT": "hang-after-step-upscale@victim.png",
                       "RETOUCHD_WORKERS__CPU_SLOTS": "2"})
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "running"])
    running = db_rows(root)[0]
    assert running["rel_path"] == "victim.png"
    for pid in child_pids(proc.proc.pid):  # the idle worker too: an idle death costs no job anything
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: db_rows(root)[0]["attempts"] == 2 and db_rows(root)[0]["state"] == "running")
    assert "worker died (killed by SIGKILL)" in db_rows(root)[0]["error"]
    save_image(root / "inbox" / "upscale" / "next.png", seed=2)
    wait_for(lambda: any(r["rel_path"] == "next.png" and r["state"] == "archived" for r in db_rows(root)))
    assert proc.proc.poll() is None
    assert proc.stop() == 0


def test_segfaulting_worker_goes_to_failed_after_max_attempts(root: Path) -> None:
    """A file that segfaults its worker every time ends in failed/ with "worker died" after max_attempts;
    the other file is processed normally."""
    save_image(root / "inbox" / "upscale" / "crash.png")
    save_image(root / "inbox" / "upscale" / "fine.png", seed=1)
    result = cli("run", "--once", "--root", str(root), env={
        **ONCE, "RETOUCHD_FAULT_POINT": "segv-after-step-upscale@crash.png", "RETOUCHD_WORKERS__MAX_ATTEMPTS": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["rel_path"]: r for r in db_rows(root)}
    assert rows["crash.png"]["state"] == "failed" and rows["crash.png"]["attempts"] == 3
    assert "worker died (killed by SIGSEGV)" in rows["crash.png"]["error"]
    assert (root / "failed" / "upscale" / "crash.png").exists()
    assert rows["fine.png"]["state"] == "archived"


def test_inbox_share_vanishes_and_returns(root: Path, tmp_path: Path, daemon) -> None:
    """An inbox that disappears (an unmounted share) is paused and logged; nothing is failed or forgotten;
    files that were added while it was away are processed when it returns."""
    share = tmp_path / "nas" / "inbox"
    share.mkdir(parents=True)
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname="nas"\ninbox="{share}"\nsteps=[{{op="upscale", model="lanczos"}}]\n')
    proc = daemon("--rules", str(rules), env={"RETOUCHD_WATCH__MODE": "poll"})
    save_image(share / "before.png")
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "archived"])
    away = tmp_path / "nas-unmounted"
    share.rename(away)
    wait_for(lambda: any(line.get("event", "").startswith("inbox unavailable") for line in proc.log_lines()))
    save_image(away / "during.png", seed=1)
    time.sleep(1.0)
    assert [r["state"] for r in db_rows(root)] == ["archived"]
    away.rename(share)
    wait_for(lambda: len(db_rows(root)) == 2 and all(r["state"] == "archived" for r in db_rows(root)))
    assert any(line.get("event") == "inbox back; resuming" for line in proc.log_lines())
    assert proc.stop() == 0


def test_sqlite_write_lock_held_by_another_process(root: Path, daemon) -> None:
    """Another process holding the database's write lock only delays work: nothing is lost or failed."""
    proc = daemon()
    hashes = {}
    conn = sqlite3.connect(root / "state" / "retouchd.db", timeout=30, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    for i in range(3):
        hashes[f"l{i}.png"] = sha256(save_image(root / "inbox" / "upscale" / f"l{i}.png", seed=i))
    time.sleep(4)
    conn.execute("COMMIT")
    conn.close()
    wait_for(lambda: len(db_rows(root)) == 3 and all(r["state"] == "archived" for r in db_rows(root)), timeout=60)
    _assert_done_once(root, hashes)
    assert proc.stop() == 0


def test_touched_and_renamed_while_queued(root: Path, daemon) -> None:
    """A queued file that is touched (mtime only) keeps its one job; renamed inside the inbox, the job
    follows it; the content is processed once, under the new name."""
    inbox = root / "inbox" / "upscale"
    save_image(inbox / "blocker.png", seed=9)
    proc = daemon(env={"RETOUCHD_FAULT_POINT": "hang-after-step-upscale@blocker.png",
                       "RETOUCHD_WORKERS__DRAIN_TIMEOUT": "1"})
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "running"])
    save_image(inbox / "q.png", seed=1)
    wait_for(lambda: any(r["rel_path"] == "q.png" for r in db_rows(root)))
    os.utime(inbox / "q.png", (time.time() + 5, time.time() + 5))
    time.sleep(1.5)
    (inbox / "q.png").rename(inbox / "r.png")
    wait_for(lambda: any(r["rel_path"] == "r.png" for r in db_rows(root)))
    assert len(db_rows(root)) == 2
    assert proc.stop() == 0
    assert cli("run", "--once", "--root", str(root), env=ONCE).returncode == 0
    rows = {r["rel_path"]: r for r in db_rows(root)}
    assert set(rows) == {"blocker.png", "r.png"} and rows["r.png"]["state"] == "archived"
    assert sorted(p.name for p in files_under(root / "outbox")) == ["blocker.png", "r.png"]


def test_hard_links_are_ordinary_files(root: Path, tmp_path: Path) -> None:
    """A hard link to a file outside the inbox is processed like any file (the outside name keeps its
    bytes); two links to the same inode inside the inbox are one content: processed once."""
    outside = save_image(tmp_path / "outside.png", seed=3)
    inbox = root / "inbox" / "upscale"
    inbox.mkdir(parents=True)
    os.link(outside, inbox / "linked.png")
    save_image(inbox / "one.png", seed=4)
    os.link(inbox / "one.png", inbox / "two.png")
    assert cli("run", "--once", "--root", str(root), env=ONCE).returncode == 0
    assert outside.exists() and sha256(outside) == sha256(next((root / "archive").rglob("linked.png")))
    rows = db_rows(root)
    assert len(rows) == 2 and {r["state"] for r in rows} == {"archived"}
    assert len(files_under(root / "outbox")) == 2 and len(files_under(root / "archive")) == 3


def test_file_mode_of_written_files(root: Path) -> None:
    """Outputs and error reports get the configured file_mode, whatever the umask."""
    save_image(root / "inbox" / "upscale" / "a.png")
    (root / "inbox" / "upscale" / "b.png").write_bytes(b"junk")
    old = os.umask(0o077)
    try:
        assert cli("run", "--once", "--root", str(root), env={**ONCE, "RETOUCHD_FILE_MODE": "0640"}).returncode == 0
    finally:
        os.umask(old)
    assert (root / "outbox" / "upscale" / "a.png").stat().st_mode & 0o777 == 0o640
    assert (root / "failed" / "upscale" / "b.png.error.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.slow
def test_two_thousand_files_at_once(root: Path, tmp_path: Path) -> None:
    """2 000 small files dropped at once: all processed once, the queue stays within its bound, and the
    daemon's memory stays bounded: its peak RSS (VmHWM) grows less than 50 MiB over its first sample after
    start-up."""
    inbox = root / "inbox" / "upscale"
    inbox.mkdir(parents=True)
    image = Image.new("RGB", (24, 16), (10, 20, 30))
    for i in range(2000):
        image.putpixel((0, 0), (i % 256, i // 256, 77))  # unique content per file
        image.save(inbox / f"f{i:04d}.png")
    peak = {"queued": 0, "first_rss": 0, "hwm": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                conn = sqlite3.connect(root / "state" / "retouchd.db", timeout=5)
                n = conn.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
                conn.close()
                peak["queued"] = max(peak["queued"], n)
            except sqlite3.Error:
                pass
            memory = daemon_memory(root / "state")
            if memory is not None:
                peak["first_rss"] = peak["first_rss"] or memory[0]
                peak["hwm"] = max(peak["hwm"], memory[1])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = cli("run", "--once", "--root", str(root), env={
            **ONCE, "RETOUCHD_WORKERS__QUEUE_BOUND": "100", "RETOUCHD_WORKERS__CPU_SLOTS": "2",
            "RETOUCHD_LOG__LEVEL": "warning"}, timeout=900)
    finally:
        stop.set()
        sampler.join()
    assert result.returncode == 0, result.stderr[-2000:]
    rows = db_rows(root)
    assert len(rows) == 2000 and {r["state"] for r in rows} == {"archived"}
    assert {r["attempts"] for r in rows} == {1}
    assert len(files_under(root / "outbox")) == 2000 and files_under(inbox) == []
    assert peak["queued"] <= 100
    assert peak["first_rss"] > 0, "the daemon's memory was never sampled"
    assert peak["hwm"] - peak["first_rss"] < 50 << 20, peak


def daemon_memory(state: Path) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in bytes of the daemon whose status file is in `state`; None before it writes one."""
    import json

    try:
        pid = json.loads(next(state.glob("daemon-*.json")).read_text())["pid"]
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except (StopIteration, OSError, ValueError, KeyError):
        return None
    return int(fields["VmRSS"].split()[0]) << 10, int(fields["VmHWM"].split()[0]) << 10
