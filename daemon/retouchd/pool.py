"""Slots: one thread + one worker process per slot, bound to a device. Slots pull jobs from the store."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from retouchd.archive import Committer
from retouchd.commitfail import commit_error
from retouchd.devices import resolve_devices
from retouchd.exceptions import LeaseLost, WorkerDiedError
from retouchd.masks import find_sidecar
from retouchd.pipeline import Task, TaskResult
from retouchd.rules import RuleSet
from retouchd.settings import Settings
from retouchd.store import Job, JobState, Store
from retouchd.worker import Worker

log = structlog.get_logger("retouchd.pool")


def slot_devices(settings: Settings) -> list[str]:
    devices = []
    for device in resolve_devices(settings.workers.devices):
        per = settings.workers.cpu_slots if device == "cpu" else settings.workers.slots_per_device
        devices.extend([device] * per)
    return devices


@dataclass
class Identity:
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}:{self.instance}"

    def owner(self, slot: int) -> str:
        return f"{self.key}:{slot}"


class Slot(threading.Thread):
    def __init__(self, index: int, device: str, pool: Pool) -> None:
        super().__init__(name=f"slot-{index}-{device}", daemon=True)
        self.index, self.device, self.pool = index, device, pool
        self.owner = pool.identity.owner(index)
        self.worker = Worker(device, pool.settings.log.format, pool.settings.log.level)
        self.current: Job | None = None
        self.lease: str | None = None
        self._claim_warned = -60.0
        """The lease under which `current` was claimed; every change to the job is conditional on it."""
        self.live: dict[str, Any] = {}
        """What the running job last reported (step, tiles done / total); read by the status monitor."""

    def run(self) -> None:
        self.worker.start()
        while not self.pool.stopping.is_set():
            lease = f"{self.owner}:{uuid.uuid4().hex[:8]}"  # one lease per claim: it fences this attempt
            try:
                job = self.pool.store.claim(lease, self.pool.identity.host, self.device,
                                            self.pool.settings.workers.lease_seconds, self.pool.rule_names())
            except Exception as exc:  # the database is busy or gone: wait and try again (said once a minute)
                if time.monotonic() - self._claim_warned >= 60.0:
                    self._claim_warned = time.monotonic()
                    log.warning("cannot claim a job; will keep trying", error=str(exc).splitlines()[0],
                                slot=self.index)
                self.pool.wake.wait(2.0)
                continue
            self._claim_warned = -60.0
            if job is None:
                self.pool.wake.wait(0.5)
                continue
            self.current, self.lease = job, lease
            try:
                self.execute(job, lease)
            except LeaseLost as exc:
                log.warning("lease lost (paused or cut off from the database past its lease); the job was "
                            "abandoned to its new holder", job_id=job.id, rule=job.rule, path=job.source_path,
                            error=str(exc))
            except Exception as exc:
                reason = commit_error(exc, self.pool.committer.folders.get(job.rule))
                if reason is not None:  # a setup problem with a known fix: one line, no traceback
                    log.warning(reason, job_id=job.id, rule=job.rule, path=job.source_path)
                else:
                    log.exception("job commit failed; the job will be retried", job_id=job.id, rule=job.rule,
                                  path=job.source_path)
                self.pool.recover_later(job.id, lease, reason or f"commit failed: {exc}")
            finally:
                self._drop_temps(lease)
                self.current, self.lease = None, None
        self.worker.stop()

    def _tmp_prefix(self, lease: str) -> str:
        return f"{self.pool.identity.host}-{lease.rsplit(':', 1)[1]}-"

    def _drop_temps(self, lease: str) -> None:
        """Temp outputs of this attempt that were not published (abandoned, killed, failed) go at once."""
        for leftover in self.pool.settings.work.glob(f"{self._tmp_prefix(lease)}*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def _task(self, job: Job, lease: str) -> Task:
        settings = self.pool.settings
        rule = self.pool.rules.by_name(job.rule)
        return Task.build(
            rule, settings, source=job.source_path, work_dir=str(settings.work), device=self.device,
            cpu_threads=self.pool.cpu_threads, variant=job.variant, job_id=job.id, sha256=job.sha256,
            sidecar=job.sidecar_path, fault_point=settings.fault_point,
            inbox=str(self.pool.committer.folders[job.rule].inbox), tmp_prefix=self._tmp_prefix(lease),
        )

    def execute(self, job: Job, lease: str) -> None:
        bound = log.bind(job_id=job.id, rule=job.rule, path=job.source_path)
        if not job.sidecar_path:  # a mask written just after its image still travels with it
            sidecar = find_sidecar(Path(job.source_path))
            if sidecar is not None:
                self.pool.committer.db_call(lambda: self.pool.store.set_sidecar(job.id, lease, str(sidecar)))
                job.sidecar_path = str(sidecar)
        bound.info("job started", attempt=job.attempts, device=self.device)
        started = time.monotonic()
        settings = self.pool.settings
        lease_seconds = settings.workers.lease_seconds
        state: dict[str, Any] = {"step": None, "progress": None, "done": None, "total": None}
        self.live = state

        def on_message(message: tuple[Any, ...]) -> None:
            if message[0] == "step":
                state.update(step=message[1], progress=None, done=None, total=None)
            elif message[0] == "progress":
                state.update(progress=message[1] / max(1, message[2]), done=message[1], total=message[2])

        warned = {"heartbeat": False}

        def tick() -> None:
            try:
                self.pool.store.heartbeat(job.id, lease, lease_seconds, step=state["step"],
                                          progress=state["progress"])
                warned["heartbeat"] = False
            except LeaseLost:
                raise
            except Exception as exc:  # a busy database must not abandon the worker mid-job
                if not warned["heartbeat"]:
                    bound.warning("lease heartbeat failed; will keep trying", error=str(exc).splitlines()[0])
                    warned["heartbeat"] = True

        try:
            result = self.worker.run(self._task(job, lease), timeout=settings.workers.job_timeout,
                                     on_message=on_message, tick=tick, tick_every=min(5.0, lease_seconds / 3))
        except WorkerDiedError as exc:
            if self.pool.stopping.is_set() and self.pool.force.is_set():
                self.pool.store.requeue(job.id, lease, error="daemon stopped", delay=0, refund=True)
                return
            bound.error("worker died", reason=str(exc))
            result = TaskResult(ok=False, error=str(exc), error_step=state["step"], permanent=False)
        if result.ok:
            self.pool.committer.success(job, lease, result)
            bound.info("job done", seconds=round(time.monotonic() - started, 3), review=result.review)
            outcome = "review" if result.review else "done"
        else:
            state_after = self.pool.committer.failure(job, lease, result)
            outcome = "retry" if state_after == JobState.QUEUED else "failed"
        self.pool.record_outcome(outcome, result.inbox_bytes)
        self.pool.on_result(job, result, outcome)


class Pool:
    """A fixed set of slots. `stop()` stops claiming, drains in-flight jobs, then kills what is left."""

    def __init__(self, settings: Settings, rules: RuleSet, store: Store, committer: Committer,
                 identity: Identity, devices: Sequence[str]) -> None:
        self.settings, self.rules, self.store = settings, rules, store
        self.committer, self.identity = committer, identity
        self.stopping, self.force, self.wake = threading.Event(), threading.Event(), threading.Event()
        cores = os.cpu_count() or 1
        cpu_slots = max(1, sum(1 for d in devices if d == "cpu"))
        self.cpu_threads = settings.workers.cpu_threads or max(1, cores // cpu_slots)
        self.slots = [Slot(i, device, self) for i, device in enumerate(devices)]
        self._lock = threading.Lock()
        self.outcomes: dict[str, int] = {}
        self.worker_inbox_bytes = 0
        """Bytes the workers read from inbox files (the daemon's own reads: beneath.inbox_bytes_read)."""
        self.held: set[str] = set()
        """Rules whose jobs are not claimed now (a share that is not mounted, a user's pause)."""
        self._recover: list[tuple[int, str, str]] = []
        self.on_result: Callable[[Job, TaskResult, str], None] = lambda job, result, outcome: None
        """Called as each attempt ends, with its outcome (done, review, retry, failed): metrics hook."""

    def rule_names(self) -> list[str]:
        return [rule.name for rule in self.rules.rules if rule.enabled and rule.name not in self.held]

    def claim_rules(self) -> list[str]:
        """Rules whose queued jobs may start now: not those whose inbox a person paused (read at each claim,
        so that a pause holds from the moment it is recorded)."""
        from retouchd.store.reviews import Reviews

        paused = Reviews(self.store).paused()
        return [name for name in self.rule_names() if name not in paused]

    def start(self) -> None:
        for slot in self.slots:
            slot.start()

    def busy(self) -> int:
        return sum(1 for slot in self.slots if slot.current is not None)

    def record_outcome(self, outcome: str, inbox_bytes: int = 0) -> None:
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self.worker_inbox_bytes += inbox_bytes

    def holds(self, lease: str) -> bool:
        """Whether one of this pool's slots holds `lease` right now."""
        return any(slot.lease == lease for slot in self.slots)

    def recover_later(self, job_id: int, lease: str, error: str) -> None:
        with self._lock:
            self._recover.append((job_id, lease, error))

    def take_recoveries(self) -> list[tuple[int, str, str]]:
        with self._lock:
            items, self._recover = self._recover, []
        return items

    def stop(self, drain_timeout: float, forced: Callable[[], bool] = lambda: False) -> list[Job]:
        """Drain: wait up to `drain_timeout` (or until `forced()`) for in-flight jobs; then kill workers.
        Returns the jobs cut short (they are requeued without losing an attempt)."""
        self.stopping.set()
        self.wake.set()
        deadline = time.monotonic() + drain_timeout
        while any(slot.is_alive() for slot in self.slots) and time.monotonic() < deadline and not forced():
            time.sleep(0.05)
        cut = [slot.current for slot in self.slots if slot.is_alive() and slot.current is not None]
        if any(slot.is_alive() for slot in self.slots):
            self.force.set()
            for slot in self.slots:
                slot.worker.kill()
            for slot in self.slots:
                slot.join(10)
        return [job for job in cut if job is not None]
