"""Worker processes: the risky work (decode, models, encode) runs in a child so that its death costs one
attempt of the jobs it held, never the daemon. The child keeps its models cached between jobs.

A child may hold two jobs: each runs in its own thread, read → decode → steps → encode, and only the steps
take the child's compute lock. So the encode of one job runs while the next one is decoded and computed,
and the device does not wait for the encoder. The parent decides how many jobs a child holds (slot.Slot:
one, or a second once the first has computed while it holds the pool's one spare token, so decoded images
stay ≤ slots + 1).
Messages are tagged with the job's key (its lease): ("step"|"progress"|"computed"|"result", key, ...).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import structlog

from retouchd.exceptions import WorkerDiedError
from retouchd.task import Task, TaskResult

log = structlog.get_logger("retouchd.worker")
_CTX = multiprocessing.get_context("spawn")
_DRAIN = 256
"""Most messages read in one pump before the clock (heartbeats, timeouts) is looked at again."""
IDLE_RELEASE_S = 2.0
"""A worker without a job for this long returns the blocks it kept for the next job's tiles."""


def child_main(conn: Connection, device: str, log_format: str, log_level: str) -> None:
    """Entry point of a worker process: run tasks until told to stop or the parent goes away."""
    # The parent decides when work stops (drain); a Ctrl-C or SIGTERM to the process group must not
    # kill a job half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    unbound = _die_with_parent()
    from retouchd.devices import prefer_passive_openmp
    from retouchd.logging import configure_logging, protect_log_stream

    prefer_passive_openmp()
    from retouchd.heap import keep_freed_heap

    keep_freed_heap()  # before the first job's arrays (retouchd.heap: ~420 page faults a small job without)
    from retouchd.pipeline import run_task
    from retouchd.steps.base import DictCache

    configure_logging(log_format, log_level)
    if unbound is not None:
        log.warning("worker not tied to the daemon (prctl failed): if the daemon is killed, kill this worker too",
                    pid=os.getpid(), error=unbound)
    protect_log_stream()
    cache = DictCache()
    sending, compute = threading.Lock(), threading.Lock()
    # Two threads kept for the jobs (a child holds at most two), not one started per job: a thread's first
    # job pays for its stack, its malloc arena's cache and OpenCV's per-thread state (~0.7 ms a small job).
    runners = ThreadPoolExecutor(max_workers=2, thread_name_prefix="job")
    jobs: list[Future[None]] = []

    def send(*message: Any) -> None:
        with sending, contextlib.suppress(OSError):  # the parent is gone: the main loop ends on its EOF
            conn.send(message)

    def job(key: str, task: Task) -> None:
        try:
            result = run_task(task, models=cache, progress=lambda done, total: send("progress", key, done, total),
                              on_step=lambda name: send("step", key, name), gate=compute,
                              on_computed=lambda: send("computed", key))
            send("result", key, result)
        except BaseException:  # a future keeps its exception to itself: say it, as a dying thread did
            log.exception("worker job thread failed", job=key)

    def busy() -> bool:
        return any(not running.done() for running in jobs)

    while True:
        try:
            _wait_for_message(conn, busy, IDLE_RELEASE_S)
            message = conn.recv()
        except (EOFError, OSError):  # the daemon is gone: leave now, without waiting for a running job
            _exit_now()
        if message[0] == "stop":
            futures.wait(jobs)
            _exit_now()
        jobs = [running for running in jobs if not running.done()]
        jobs.append(runners.submit(job, message[1], message[2]))


def _wait_for_message(conn: Connection, busy: Callable[[], bool], idle: float) -> None:
    """Return when a message can be read; once no job has run for `idle` seconds, first empty the ncnn pools
    kept for the next job (models/ncnnrun.py, NcnnModule.settle): an idle worker holds no tile's blocks."""
    while not conn.poll(idle):
        if not busy():
            ncnnrun = sys.modules.get("retouchd.models.ncnnrun")
            if ncnnrun is not None:
                ncnnrun.release_held()
            return


def _exit_now() -> None:
    """Told to stop (idle: no job, no file open): exit without the interpreter's teardown of numpy, cv2,
    torch (~0.1 s of CPU and ~0.4 s of wall on a loaded machine, the end of every `run --once`)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


def _die_with_parent() -> str | None:
    """Ask Linux to SIGKILL this worker if the daemon dies (kill -9), so no orphan keeps writing; returns why
    not when that fails."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            return os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        return str(exc)
    return None


@dataclass
class Event:
    """What a pump saw: a job's "result", or the end of the worker ("died", "timeout" of `key`, "lost"
    lease of `key`: the child was killed). After an end, every job it held (`keys`) is gone."""

    kind: str
    key: str | None = None
    result: TaskResult | None = None
    error: BaseException | None = None
    keys: tuple[str, ...] = ()


class Worker:
    """Parent-side handle of one worker process; restarts it on demand."""

    def __init__(self, device: str, log_format: str, log_level: str) -> None:
        self.device = device
        self._log = (log_format, log_level)
        self._proc: Any = None
        self._conn: Connection | None = None
        self._starts = 0
        self.sent: dict[str, float] = {}
        """Jobs handed to the child and not finished: key → when (monotonic), in the order sent."""
        self._ticked: dict[str, float] = {}

    @property
    def restarts(self) -> int:
        """Processes started after the first: each one replaced a worker that died (idle or mid-job)."""
        return max(0, self._starts - 1)

    def _ensure(self) -> Connection:
        if self._proc is None or not self._proc.is_alive() or self._conn is None:
            if self._proc is not None:
                self._close()
            self._starts += 1
            parent, child = _CTX.Pipe()
            self._proc = _CTX.Process(
                target=child_main, args=(child, self.device, *self._log), name=f"retouchd-worker-{self.device}",
                daemon=True,
            )
            self._proc.start()
            child.close()
            self._conn = parent
        return self._conn

    def start(self) -> None:
        self._ensure()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def submit(self, key: str, task: Task) -> None:
        """Hand `task` to the child under `key`. A child that died holding other jobs is not silently
        replaced: the next pump reports its death for all of them (this job included)."""
        now = time.monotonic()
        self.sent[key] = self._ticked[key] = now
        if len(self.sent) > 1 and (self._proc is None or not self._proc.is_alive()):
            return
        with contextlib.suppress(OSError):  # a pipe broken by a death is reported by the next pump
            self._ensure().send(("task", key, task))

    def pump(
        self, *, wait: float, timeout: float, on_message: Callable[[tuple[Any, ...]], None],
        tick: Callable[[str], None], tick_every: float,
    ) -> list[Event]:
        """Wait up to `wait` s for the child; hand its progress messages to `on_message`; return what ended.

        `tick(key)` (a lease heartbeat) and the per-job `timeout` run on the clock, however often the child
        reports; a tick that raises (the lease is lost) or a job past its timeout kills the child."""
        events: list[Event] = []
        conn = self._conn
        if conn is None or not self.sent:
            time.sleep(wait)
            return events
        try:
            ready = conn.poll(wait)
        except (EOFError, OSError):
            ready = True
        for _ in range(_DRAIN if ready else 0):
            try:
                if not conn.poll(0):
                    break
                message = conn.recv()
            except (EOFError, OSError):
                return [*events, self._ended(Event("died", error=WorkerDiedError(self._death())))]
            if message[0] == "result":
                self.sent.pop(message[1], None)
                self._ticked.pop(message[1], None)
                events.append(Event("result", message[1], result=message[2]))
            else:
                on_message(message)
        if not ready and not self._proc.is_alive():
            return [*events, self._ended(Event("died", error=WorkerDiedError(self._death())))]
        now = time.monotonic()
        for key, sent in list(self.sent.items()):
            if now - sent > timeout:
                self.kill()
                error = WorkerDiedError(
                    f"job timed out after {timeout:.0f} s (workers.job_timeout); the worker was killed")
                return [*events, self._ended(Event("timeout", key, error=error))]
            if now - self._ticked[key] >= tick_every:
                try:
                    tick(key)
                except BaseException as exc:
                    self.kill()
                    return [*events, self._ended(Event("lost", key, error=exc))]
                self._ticked[key] = time.monotonic()  # a tick that waited on a locked database is not repeated
        return events

    def _ended(self, event: Event) -> Event:
        event.keys = tuple(self.sent)
        self.sent.clear()
        self._ticked.clear()
        if event.kind != "died":
            self._death()
        return event

    def _death(self) -> str:
        self._proc.join(2)
        code = self._proc.exitcode
        self._close()
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"worker died (killed by {name})"
        return f"worker died (exit code {code})"

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is None:
            return
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._close()
