"""Exactly once under pauses and database stalls (SPEC §6.9, issue 11): the lease is the truth.

Unit tests pin the fence (a lost lease changes nothing), the heartbeat clock and the recovery predicate; the
end-to-end tests pause a real daemon with SIGSTOP past its lease and hold SQLite's write lock past the busy
timeout.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from datetime import timedelta
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import pytest

from retouchd.archive import Committer, lease_dead
from retouchd.exceptions import LeaseLost, WorkerDiedError
from retouchd.pipeline import TaskResult
from retouchd.rules import RuleFolders
from retouchd.store import JobState, Store, open_store, utcnow
from retouchd.worker import Event, Worker

from conftest import assert_processed_once, db_rows, files_under, job_fields, save_image, sha256, wait_for

HOST = "h"
A = f"{HOST}:100:aaaa:0:lease1"
B = f"{HOST}:200:bbbb:0:lease2"




@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state' / 'db.sqlite'}")


def test_lost_lease_changes_nothing(store: Store) -> None:
    """Once another claimant took the job over, every change by the old lease raises LeaseLost and the row
    keeps the new holder's state."""
    job, _ = store.enqueue(**job_fields())
    assert store.claim(A, HOST, "cpu", 60, ["r"]) is not None
    assert store.take_over(job.id, A, B, 60) is not None
    assert store.take_over(job.id, A, "third", 60) is None  # the lease it saw is gone: no second take-over
    for change in (
        lambda: store.heartbeat(job.id, A, 60),
        lambda: store.plan_output(job.id, A, output_path="/o", output_sha256="x", tmp="/t", steps=[]),
        lambda: store.finish(job.id, A, review=False),
        lambda: store.requeue(job.id, A, error="e", delay=0),
        lambda: store.fail(job.id, A, error="e", step=None, traceback_id=None),
        lambda: store.plan_failed(job.id, A, "/failed/a.png"),
    ):
        with pytest.raises(LeaseLost):
            change()
    row = store.get(job.id)
    assert row is not None and row.state == JobState.RUNNING and row.lease_owner == B
    assert row.output_path is None and row.failed_path is None and row.attempts == 1


def test_lease_held_through_archiving(store: Store) -> None:
    """A finished job stays leased to its claimant until archived: a late recovery cannot archive it twice."""
    job, _ = store.enqueue(**job_fields())
    store.claim(A, HOST, "cpu", 60, ["r"])
    store.finish(job.id, A, review=False, lease_seconds=60)
    row = store.get(job.id)
    assert row is not None and row.state == JobState.DONE and row.lease_owner == A
    with pytest.raises(LeaseLost):
        store.archived(job.id, B)
    store.archived(job.id, A)
    row = store.get(job.id)
    assert row is not None and row.state == JobState.ARCHIVED and row.lease_owner is None


def test_own_lease_is_never_dead_while_held() -> None:
    """A process never calls its own held lease dead, however expired (it may just have been paused); a
    paused other process's expired lease is dead; a dead local process's lease is dead at once."""
    from retouchd.store import Job

    now = utcnow()
    expired, fresh = now - timedelta(seconds=600), now + timedelta(seconds=60)
    mine = f"{HOST}:100:aaaa:0:x"
    held = {mine}
    is_dead = lease_dead(HOST, 100, "aaaa", alive=lambda pid: pid == 200, held=held.__contains__)

    def job(owner: str | None, expires: Any) -> Job:
        return Job(id=1, state=JobState.RUNNING, lease_owner=owner, lease_expires=expires)

    assert not is_dead(job(mine, expired), now)
    assert is_dead(job(f"{HOST}:100:aaaa:1:y", expired), now)  # our slot no longer holds it
    assert not is_dead(job(f"{HOST}:100:aaaa:1:y", fresh), now)
    assert is_dead(job(f"{HOST}:200:cccc:0:z", expired), now)  # alive but paused past its lease
    assert not is_dead(job(f"{HOST}:200:cccc:0:z", fresh), now)
    assert is_dead(job(f"{HOST}:300:dddd:0:z", fresh), now)  # a process of this host that is gone
    assert not is_dead(job("other:300:dddd:0:z", fresh), now)
    assert is_dead(job("other:300:dddd:0:z", expired), now)


def test_commit_with_a_lost_lease_publishes_nothing(store: Store, tmp_path: Path) -> None:
    """A slot whose lease was taken over while it computed removes its temp output and publishes nothing."""
    folders = RuleFolders(*(tmp_path / name for name in ("in", "out", "arch", "failed", "review")))
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "a.png"
    src.write_bytes(b"original")
    job, _ = store.enqueue(**job_fields(source_path=str(src), sha256=hashlib.sha256(b"original").hexdigest()))
    claimed = store.claim(A, HOST, "cpu", 60, ["r"])
    assert claimed is not None
    store.take_over(job.id, A, B, 60)
    tmp = tmp_path / "work.tmp"
    tmp.write_bytes(b"output")
    result = TaskResult(ok=True, tmp_path=str(tmp), output_name="a.png",
                        output_sha256=hashlib.sha256(b"output").hexdigest())
    with pytest.raises(LeaseLost):
        Committer(store, {"r": folders}).success(claimed, A, result)
    assert not tmp.exists() and files_under(tmp_path / "out") == [] and src.read_bytes() == b"original"
    row = store.get(job.id)
    assert row is not None and row.lease_owner == B and row.output_path is None


class _FakeChild:
    """Stands in for a worker process: alive until killed."""

    def __init__(self) -> None:
        self.killed = False

    def is_alive(self) -> bool:
        return not self.killed

    def kill(self) -> None:
        self.killed = True

    def join(self, timeout: float | None = None) -> None:
        return None

    @property
    def exitcode(self) -> int | None:
        return -signal.SIGKILL if self.killed else None


def _streaming_worker(seconds: float) -> tuple[Worker, _FakeChild, threading.Event]:
    """A Worker holding job "k" whose 'child' sends a progress message every 10 ms for `seconds`, then a
    result."""
    worker = Worker("cpu", "json", "info")
    parent, child = Pipe()
    fake = _FakeChild()
    worker._proc, worker._conn = fake, parent
    worker.sent["k"] = worker._ticked["k"] = time.monotonic()
    stop = threading.Event()

    def stream() -> None:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end and not stop.is_set() and not fake.killed:
            child.send(("progress", "k", n, 10_000))
            n += 1
            time.sleep(0.01)
        if not fake.killed and not stop.is_set():
            child.send(("result", "k", TaskResult(ok=True)))

    threading.Thread(target=stream, daemon=True).start()
    return worker, fake, stop


def _pump_until_end(worker: Worker, *, timeout: float, tick: Any, tick_every: float) -> Event:
    """Pump as a slot does until job "k" ends (its result, or the worker's end)."""
    while True:
        events = worker.pump(wait=min(0.2, tick_every), timeout=timeout, on_message=lambda m: None, tick=tick,
                             tick_every=tick_every)
        if events:  # (a result may come with the fake child's EOF after it: the first event is the job's)
            return events[0]


def test_heartbeat_runs_on_the_clock_while_progress_streams() -> None:
    """A child that reports progress every 10 ms does not starve the lease heartbeat."""
    worker, _, stop = _streaming_worker(1.6)
    ticks: list[float] = []
    try:
        event = _pump_until_end(worker, timeout=60, tick=lambda key: ticks.append(time.monotonic()), tick_every=0.2)
    finally:
        stop.set()
    assert event.kind == "result" and event.key == "k" and event.result is not None and event.result.ok
    assert len(ticks) >= 4, ticks


def test_timeout_fires_while_progress_streams() -> None:
    """job_timeout kills a worker that keeps sending progress."""
    worker, fake, stop = _streaming_worker(20)
    started = time.monotonic()
    try:
        event = _pump_until_end(worker, timeout=0.5, tick=lambda key: None, tick_every=0.2)
    finally:
        stop.set()
    assert event.kind == "timeout" and event.key == "k" and event.keys == ("k",)
    assert isinstance(event.error, WorkerDiedError) and "timed out" in str(event.error)
    assert fake.killed and time.monotonic() - started < 10


def test_lost_lease_in_heartbeat_kills_the_worker() -> None:
    """A heartbeat that finds the lease lost stops the computation at once."""
    worker, fake, stop = _streaming_worker(20)

    def tick(key: str) -> None:
        raise LeaseLost("taken over")

    try:
        event = _pump_until_end(worker, timeout=60, tick=tick, tick_every=0.2)
    finally:
        stop.set()
    assert event.kind == "lost" and event.key == "k" and isinstance(event.error, LeaseLost)
    assert fake.killed


# -- the real daemon ---------------------------------------------------------------------------------------






LEASE = {"RETOUCHD_WORKERS__LEASE_SECONDS": "5"}


def test_paused_daemon_keeps_its_own_job(root: Path, daemon) -> None:
    """SIGSTOP of the daemon for longer than its lease while a job runs, then SIGCONT: the daemon does not
    take its own job from itself; the job is processed once, with one attempt, nothing left behind."""
    hashes = {"p.png": sha256(save_image(root / "inbox" / "upscale" / "p.png", 320, 240))}
    proc = daemon(env=LEASE)
    wait_for(lambda: [r for r in db_rows(root) if r["state"] == "running"], timeout=60, interval=0.05)
    os.kill(proc.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(9)
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
    wait_for(lambda: [r["state"] for r in db_rows(root)] == ["archived"], timeout=90)
    assert proc.stop() == 0
    (row,) = assert_processed_once(root, hashes)
    assert row["attempts"] == 1
    events = [line.get("event") for line in proc.log_lines()]
    assert events.count("job started") == 1
    assert "recovered interrupted job" not in events and "job commit failed; the job will be retried" not in events


@pytest.mark.slow
def test_database_locked_past_busy_timeout_costs_no_attempt(root: Path, daemon) -> None:
    """The job's output is durable in state/work/ when another process takes SQLite's write lock and holds
    it past the busy timeout (and the lease): the commit waits and goes through; no attempt is spent,
    nothing is computed twice, no temp file is left."""
    # The worker waits 3 s after the step, so the job cannot commit before SIGSTOP lands (a 64×48 job did on
    # a quiet machine; a 2400×1800 one took the `fast` model past the 120 s below on a loaded one). "job
    # started" is logged once the worker has the task.
    hashes = {"l.png": sha256(save_image(root / "inbox" / "upscale" / "l.png", 320, 240))}
    proc = daemon(env={**LEASE, "RETOUCHD_FAULT_POINT": "slow-after-step-upscale"})
    wait_for(lambda: "job started" in [line.get("event") for line in proc.log_lines()], timeout=60, interval=0.02)
    os.kill(proc.proc.pid, signal.SIGSTOP)  # hold the commit back until the lock is in place
    conn = sqlite3.connect(root / "state" / "retouchd.db", timeout=30, isolation_level=None)
    try:
        wait_for(lambda: [p for p in (root / "state" / "work").glob("*.tmp") if p.stat().st_size], timeout=120)
        time.sleep(3)  # the worker (not paused) finishes writing, fsyncs and sends its result
        conn.execute("BEGIN EXCLUSIVE")
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
    try:
        time.sleep(75)  # a heartbeat, then the commit's first try, each run into the 30 s busy timeout
    finally:
        conn.execute("COMMIT")
        conn.close()
    wait_for(lambda: [r["state"] for r in db_rows(root)] == ["archived"], timeout=90)
    assert proc.stop() == 0
    (row,) = assert_processed_once(root, hashes)
    assert row["attempts"] == 1 and row["error"] is None
    events = [line.get("event") for line in proc.log_lines()]
    assert events.count("job started") == 1
    assert "database unavailable during a commit; waiting (the output is kept)" in events
