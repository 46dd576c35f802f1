"""The pool: a fixed set of slots (retouchd.slot), one per device place, and what they share (the spare token
for workers.overlap, suspects, outcomes, recoveries). Slots pull jobs from the store."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from retouchd.archive import Committer
from retouchd.devices import resolve_devices
from retouchd.rules import RuleSet
from retouchd.settings import Settings
from retouchd.slot import Slot
from retouchd.store import Job, Store
from retouchd.task import TaskResult


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
        self.spare = threading.Semaphore(1)
        """The one token that lets a slot hold a second job (workers.overlap): decoded images ≤ slots + 1."""
        self.outcomes: dict[str, int] = {}
        self.suspects: set[int] = set()
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
        """Jobs in flight (a slot holds one, or two while one encodes and the other computes)."""
        return sum(len(slot.attempts) for slot in self.slots)

    def suspect(self, job_id: int, suspect: bool) -> None:
        """Mark (or clear) a job that was in a worker that died holding two: it runs alone until it ends, so
        that a death costs one attempt of the one job that caused it."""
        with self._lock:
            if suspect:
                self.suspects.add(job_id)
            else:
                self.suspects.discard(job_id)

    def suspect_ids(self) -> list[int]:
        with self._lock:
            return sorted(self.suspects)

    def record_outcome(self, outcome: str, inbox_bytes: int = 0) -> None:
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self.worker_inbox_bytes += inbox_bytes

    def holds(self, lease: str) -> bool:
        """Whether one of this pool's slots holds `lease` right now."""
        return any(lease in slot.attempts for slot in self.slots)

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
        cut = [attempt.job for slot in self.slots if slot.is_alive() for attempt in list(slot.attempts.values())]
        if any(slot.is_alive() for slot in self.slots):
            self.force.set()
            for slot in self.slots:
                slot.worker.kill()
            for slot in self.slots:
                slot.join(10)
        return cut
