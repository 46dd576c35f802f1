"""Worker processes: the risky work (decode, models, encode) runs in a child so that its death costs one
attempt of one job, never the daemon. The child keeps its models cached between jobs."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import structlog

from retouchd.exceptions import WorkerDiedError
from retouchd.pipeline import Task, TaskResult

log = structlog.get_logger("retouchd.worker")
_CTX = multiprocessing.get_context("spawn")


def child_main(conn: Connection, device: str, log_format: str, log_level: str) -> None:
    """Entry point of a worker process: run tasks until told to stop or the parent goes away."""
    # The parent decides when work stops (drain); a Ctrl-C or SIGTERM to the process group must not
    # kill a job half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    unbound = _die_with_parent()
    from retouchd.devices import prefer_passive_openmp
    from retouchd.logging import configure_logging

    prefer_passive_openmp()
    from retouchd.pipeline import run_task
    from retouchd.steps.base import DictCache

    configure_logging(log_format, log_level)
    if unbound is not None:
        log.warning("worker not tied to the daemon (prctl failed): if the daemon is killed, kill this worker too",
                    pid=os.getpid(), error=unbound)
    from retouchd.pipesafe import protect_log_stream

    protect_log_stream()
    cache = DictCache()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            _exit_now()
        task: Task = message[1]

        def progress(done: int, total: int) -> None:
            conn.send(("progress", done, total))

        def on_step(name: str) -> None:
            conn.send(("step", name))

        conn.send(("result", run_task(task, models=cache, progress=progress, on_step=on_step)))


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


class Worker:
    """Parent-side handle of one worker process; restarts it on demand."""

    def __init__(self, device: str, log_format: str, log_level: str) -> None:
        self.device = device
        self._log = (log_format, log_level)
        self._proc: Any = None
        self._conn: Connection | None = None
        self._starts = 0

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

    def run(
        self, task: Task, *, timeout: float, on_message: Callable[[tuple[Any, ...]], None],
        tick: Callable[[], None], tick_every: float,
    ) -> TaskResult:
        """Run `task` in the child; raise WorkerDiedError if it ends or overruns `timeout` (it is then killed).

        `tick` (the lease heartbeat) and the timeout run on the clock, however often the child reports
        progress; if `tick` raises (the lease is lost), the child is killed and the error propagates."""
        conn = self._ensure()
        conn.send(("task", task))
        started = last_tick = time.monotonic()
        while True:
            try:
                ready = conn.poll(min(0.2, tick_every))
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    raise WorkerDiedError(self._death()) from None
                if message[0] == "result":
                    result: TaskResult = message[1]
                    return result
                on_message(message)
            elif not self._proc.is_alive():
                raise WorkerDiedError(self._death())
            now = time.monotonic()
            if now - started > timeout:
                self.kill()
                raise WorkerDiedError(
                    f"job timed out after {timeout:.0f} s (workers.job_timeout); the worker was killed")
            if now - last_tick >= tick_every:
                try:
                    tick()
                except BaseException:
                    self.kill()
                    raise
                last_tick = time.monotonic()  # a tick that waited on a locked database is not repeated at once

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
