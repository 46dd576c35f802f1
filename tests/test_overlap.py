"""The codec off the device's critical path (issue 16): a worker holds a second job while the first encodes,
so the next job's decode and the last job's encode run while the device computes. Exactly once, lease
fencing, temp clean-up and drain hold with two jobs in one worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from retouchd.pipeline import Task
from retouchd.worker import Event, Worker

from conftest import assert_processed_once, child_pids, cli, db_rows, files_under, save_image, sha256, wait_for

LANCZOS = [{"op": "upscale", "scale": 2, "model": "lanczos"}]


def _task(tmp_path: Path, name: str, fault: str | None = None) -> Task:
    source = save_image(tmp_path / "in" / name, 96, 64)
    (tmp_path / "work").mkdir(exist_ok=True)
    return Task(rule="r", source=str(source), steps=LANCZOS, output={}, work_dir=str(tmp_path / "work"),
                inbox=str(tmp_path / "in"), tmp_prefix=f"{name}-", fault_point=fault)


def _pump(worker: Worker, seen: list[tuple[Any, ...]], until: Any, limit: float = 60) -> list[Event]:
    """Pump the worker, recording (kind, key) of every message and event in order, until `until(seen)`."""
    ended: list[Event] = []
    deadline = time.monotonic() + limit
    while not until(seen):
        assert time.monotonic() < deadline, seen
        for event in worker.pump(wait=0.1, timeout=600, on_message=lambda m: seen.append((m[0], m[1])),
                                 tick=lambda key: None, tick_every=60):
            seen.append((event.kind, event.key))
            ended.append(event)
    return ended


def test_a_slow_encode_does_not_hold_back_the_next_compute(tmp_path: Path) -> None:
    """Job a's encode never ends (it hangs once its output is written); job b, handed over once a computed,
    is decoded, computed, encoded and answered meanwhile. Killing the worker then ends only a."""
    worker = Worker("cpu", "json", "warning")
    seen: list[tuple[Any, ...]] = []
    try:
        worker.submit("a", _task(tmp_path, "a.png", fault="hang-after-encode@a.png"))
        _pump(worker, seen, lambda s: ("computed", "a") in s)
        worker.submit("b", _task(tmp_path, "b.png"))
        (event,) = _pump(worker, seen, lambda s: ("result", "b") in s)
        assert event.result is not None and event.result.ok, event.result
        assert Path(event.result.tmp_path or "").exists()
        assert [p.name.split("-")[0] for p in files_under(tmp_path / "work")] == ["a.png", "b.png"]
        order = [entry for entry in seen if entry[0] in ("step", "computed", "result")]
        assert order == [("step", "a"), ("computed", "a"), ("step", "b"), ("computed", "b"), ("result", "b")]
        assert list(worker.sent) == ["a"]
        worker.kill()
        (died,) = _pump(worker, seen, lambda s: s[-1][0] == "died")
        assert died.keys == ("a",) and "SIGKILL" in str(died.error)
    finally:
        worker.stop()






def test_worker_killed_while_encoding_one_job_and_computing_another(root: Path, daemon) -> None:
    """The worker holds a (encode written, hanging before its result) and b (computing) when it is killed:
    both go back to the queue at no cost, the temp output of a is removed, and each then runs alone; after a
    restart without the fault, each file is published and archived once."""
    inbox = root / "inbox" / "upscale"
    hashes = {"a.png": sha256(save_image(inbox / "a.png", 64, 48))}
    proc = daemon(env={"RETOUCHD_FAULT_POINT": "hang-after-encode@a.png", "RETOUCHD_WORKERS__DRAIN_TIMEOUT": "1"})
    wait_for(lambda: list((root / "state" / "work").glob("*.tmp")), timeout=60, interval=0.05)
    hashes["b.png"] = sha256(save_image(inbox / "b.png", 480, 360, seed=1))
    wait_for(lambda: {r["rel_path"]: r["state"] for r in db_rows(root)} == {"a.png": "running", "b.png": "running"},
             timeout=60, interval=0.05)
    for pid in child_pids(proc.proc.pid):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: any(line.get("event") == "worker died holding two jobs; both are retried, each alone"
                         for line in proc.log_lines()), timeout=30)
    # a runs again alone (and hangs again in its encode); b waits for the slot.
    wait_for(lambda: {r["rel_path"]: r["state"] for r in db_rows(root)} == {"a.png": "running", "b.png": "queued"},
             timeout=60)
    time.sleep(1)
    assert {r["rel_path"]: r["state"] for r in db_rows(root)} == {"a.png": "running", "b.png": "queued"}
    assert {r["rel_path"]: r["attempts"] for r in db_rows(root)} == {"a.png": 1, "b.png": 0}
    assert proc.stop(signal.SIGTERM) == 0
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 0
    rows = assert_processed_once(root, hashes)
    assert {r["rel_path"]: r["attempts"] for r in rows} == {"a.png": 1, "b.png": 1}


def test_drain_waits_for_the_encode(root: Path, daemon) -> None:
    """SIGTERM while a job encodes (its output written, 3 s before its result): the drain waits for it, and the
    job is published, not requeued."""
    hashes = {"e.png": sha256(save_image(root / "inbox" / "upscale" / "e.png"))}
    proc = daemon(env={"RETOUCHD_FAULT_POINT": "slow-after-encode"})
    wait_for(lambda: list((root / "state" / "work").glob("*.tmp")), timeout=60, interval=0.02)
    assert proc.stop(signal.SIGTERM) == 0
    (row,) = assert_processed_once(root, hashes)
    assert row["attempts"] == 1
    assert "requeued jobs cut short by shutdown" not in [line.get("event") for line in proc.log_lines()]


def test_a_gpu_slot_takes_its_next_job_once_the_first_computes_a_cpu_slot_once_it_encodes() -> None:
    """With workers.overlap, a slot on a GPU claims its next job as soon as the one it holds is on the device
    (the next one's read and decode then run while the device computes); a CPU slot only once the first is
    encoding. Neither before the first has reached a step, beside a suspect job, or without the spare token;
    the job shown is the one computing, not the one waiting for the device."""
    import threading
    from types import SimpleNamespace

    from retouchd.slot import Attempt, Slot

    settings = SimpleNamespace(log=SimpleNamespace(format="json", level="warning"),
                               workers=SimpleNamespace(overlap=True))
    pool = SimpleNamespace(settings=settings, identity=SimpleNamespace(owner=lambda i: f"h:1:x:{i}"),
                           stopping=threading.Event(), suspects=set(), spare=threading.Semaphore(1))

    def wants(device: str, step: str | None, suspect: bool = False) -> bool:
        slot = Slot(0, device, pool)  # type: ignore[arg-type]
        slot.attempts["a"] = Attempt(SimpleNamespace(id=1), "a", None, 0.0, {"step": step})  # type: ignore[arg-type]
        pool.suspects = {1} if suspect else set()
        wanted = slot._wants_job()
        slot._give_back_spare()
        if wanted:  # a second job, handed over, not yet decoded: the first is still the one shown
            slot.attempts["b"] = Attempt(SimpleNamespace(id=2), "b", None, 0.0, {"step": None})  # type: ignore[arg-type]
            assert slot.current is not None and slot.current.id == (2 if step == "encode" else 1)
        return wanted

    assert [wants("cuda:0", step) for step in (None, "upscale", "encode")] == [False, True, True]
    assert [wants("cpu", step) for step in (None, "upscale", "encode")] == [False, False, True]
    assert not wants("cuda:0", "upscale", suspect=True)
    assert pool.spare.acquire(blocking=False)
    assert not wants("cuda:0", "upscale")
    pool.spare.release()
