"""A slot: one thread + one worker process, bound to a device. It claims jobs from the store, hands them to its
worker and commits what comes back (the commit order: archive.Committer)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from retouchd.commitfail import commit_error
from retouchd.exceptions import LeaseLost
from retouchd.sidecars import find_sidecar
from retouchd.store import Job, JobState
from retouchd.store.fenced import keeping
from retouchd.task import Task, TaskResult
from retouchd.worker import Event, Worker

if TYPE_CHECKING:
    from retouchd.pool import Pool

log = structlog.get_logger("retouchd.pool")


@dataclass
class Attempt:
    """One claim of one job, handed to a slot's worker."""

    job: Job
    lease: str
    """Every change to the job is conditional on it (one lease per claim fences this attempt)."""
    bound: Any
    started: float
    live: dict[str, Any]
    """What the job last reported (step, tiles done / total); read by the status monitor."""
    warned: bool = False


class Slot(threading.Thread):
    """A thread that claims jobs and hands them to its worker process. It holds one job, or two while it has
    the pool's spare token (`workers.overlap`): the next job is claimed as soon as the first has computed (on
    a GPU: has started computing), so the first's encode, and the next one's read and decode, run while the
    device computes (decoded images in flight ≤ slots + 1)."""

    def __init__(self, index: int, device: str, pool: Pool) -> None:
        super().__init__(name=f"slot-{index}-{device}", daemon=True)
        self.index, self.device, self.pool = index, device, pool
        self.owner = pool.identity.owner(index)
        self.worker = Worker(device, pool.settings.log.format, pool.settings.log.level)
        self.attempts: dict[str, Attempt] = {}
        """In flight, by lease, oldest first."""
        self._claim_warned = -60.0
        self._spare = False
        """Whether this slot holds the pool's spare token (it has, or is claiming, a second job)."""
        self._next_claim = 0.0

    def _front(self) -> Attempt | None:
        """The attempt to show: the one computing (the newest in a step), else the next one (read, decoded,
        waiting for the device), else the oldest."""
        attempts = list(self.attempts.values())
        computing = [attempt for attempt in attempts if attempt.live.get("step") not in (None, "encode")]
        if computing:
            return computing[-1]
        waiting = [attempt for attempt in attempts if attempt.live.get("step") is None]
        return waiting[0] if waiting else (attempts[0] if attempts else None)

    @property
    def current(self) -> Job | None:
        front = self._front()
        return front.job if front else None

    @property
    def live(self) -> dict[str, Any]:
        front = self._front()
        return front.live if front else {}

    def run(self) -> None:
        self.worker.start()
        settings = self.pool.settings.workers
        tick_every = min(5.0, settings.lease_seconds / 3)
        try:
            with keeping():  # claim, plan, finish, archived on one SQLite connection (store.fenced.keeping)
                while not self.pool.stopping.is_set() or self.attempts:
                    if self._wants_job():
                        self._take()
                    if self.attempts:
                        for event in self.worker.pump(wait=min(0.2, tick_every), timeout=settings.job_timeout,
                                                      on_message=self._on_message, tick=self._tick,
                                                      tick_every=tick_every):
                            self._on_event(event)
        finally:
            self._give_back_spare()
            self.worker.stop()

    def _wants_job(self) -> bool:
        if self.pool.stopping.is_set():
            return False
        if not self.attempts:
            return True
        if (len(self.attempts) > 1 or not self.pool.settings.workers.overlap
                or time.monotonic() < self._next_claim):
            return False
        (only,) = self.attempts.values()
        step = only.live.get("step")
        # Once it computed; on a GPU as soon as it computes: the next job's read and decode then run while the
        # device computes, on cores the device leaves free (codec_overlap: the device's median wait between
        # jobs 59-83 ms -> 4-9). On the CPU they would take the compute's cores, and a job claimed that early
        # would wait behind a long compute that another slot or host could have done. Never beside a job that
        # was in a worker that died holding two.
        ahead = step == "encode" or (step is not None and self.device != "cpu")
        if not ahead or only.job.id in self.pool.suspects:
            return False
        if not self._spare:
            self._spare = self.pool.spare.acquire(blocking=False)
        return self._spare

    def _give_back_spare(self) -> None:
        if self._spare and len(self.attempts) <= 1:
            self._spare = False
            self.pool.spare.release()

    def _take(self) -> None:
        lease = f"{self.owner}:{uuid.uuid4().hex[:8]}"  # one lease per claim: it fences this attempt
        idle = not self.attempts
        try:
            job = self.pool.store.claim(lease, self.pool.identity.host, self.device,
                                        self.pool.settings.workers.lease_seconds, self.pool.rule_names(),
                                        exclude=() if idle else self.pool.suspect_ids())
        except Exception as exc:  # the database is busy or gone: wait and try again (said once a minute)
            if time.monotonic() - self._claim_warned >= 60.0:
                self._claim_warned = time.monotonic()
                log.warning("cannot claim a job; will keep trying", error=str(exc).splitlines()[0],
                            slot=self.index)
            job = None
            if idle:
                self.pool.wake.wait(2.0)
        else:
            self._claim_warned = -60.0
            if job is None and idle:
                self.pool.wake.wait(0.5)
        if job is None:
            self._next_claim = time.monotonic() + 0.5
            self._give_back_spare()
            return
        try:
            self._start(job, lease)
        except LeaseLost as exc:
            log.warning("lease lost before the job started; it was abandoned to its new holder", job_id=job.id,
                        error=str(exc))
            self._give_back_spare()
        except Exception as exc:  # e.g. the worker process could not be started
            self.attempts.pop(lease, None)
            self.worker.sent.pop(lease, None)
            self._commit_failed(job, lease, exc)
            self._drop_temps(lease)
            self._give_back_spare()

    def _start(self, job: Job, lease: str) -> None:
        bound = log.bind(job_id=job.id, rule=job.rule, path=job.source_path)
        if not job.sidecar_path:  # a mask written just after its image still travels with it
            sidecar = find_sidecar(Path(job.source_path))
            if sidecar is not None:
                self.pool.committer.db_call(lambda: self.pool.store.set_sidecar(job.id, lease, str(sidecar)))
                job.sidecar_path = str(sidecar)
        live: dict[str, Any] = {"step": None, "progress": None, "done": None, "total": None}
        self.attempts[lease] = Attempt(job, lease, bound, time.monotonic(), live)
        self.worker.submit(lease, self._task(job, lease))
        # After the hand-over, so that a reader of the log knows the worker has the job (tests pause the daemon
        # on this line and wait for the worker's output).
        bound.info("job started", attempt=job.attempts, device=self.device)

    def _on_message(self, message: tuple[Any, ...]) -> None:
        attempt = self.attempts.get(message[1])
        if attempt is None:
            return
        if message[0] == "step":
            attempt.live.update(step=message[2], progress=None, done=None, total=None)
        elif message[0] == "progress":
            attempt.live.update(progress=message[2] / max(1, message[3]), done=message[2], total=message[3])
        elif message[0] == "computed":
            attempt.live.update(step="encode", progress=None, done=None, total=None)

    def _tick(self, lease: str) -> None:
        attempt = self.attempts[lease]
        try:
            self.pool.store.heartbeat(attempt.job.id, lease, self.pool.settings.workers.lease_seconds,
                                      step=attempt.live["step"], progress=attempt.live["progress"])
            attempt.warned = False
        except LeaseLost:
            raise
        except Exception as exc:  # a busy database must not abandon the worker mid-job
            if not attempt.warned:
                attempt.bound.warning("lease heartbeat failed; will keep trying", error=str(exc).splitlines()[0])
                attempt.warned = True

    def _on_event(self, event: Event) -> None:
        """A job's result, or the end of the worker and with it of every job it held."""
        if event.kind == "result":
            attempt = self.attempts.get(event.key or "")
            if attempt is not None:
                self.pool.suspect(attempt.job.id, False)
                self._end(attempt, event.result)
            return
        shared = event.kind == "died" and len(event.keys) > 1
        for lease in event.keys:
            attempt = self.attempts.get(lease)
            if attempt is None:
                continue
            if self.pool.stopping.is_set() and self.pool.force.is_set():
                self._end(attempt, None, requeue="daemon stopped")
            elif event.kind == "lost" and lease == event.key:
                attempt.bound.warning("lease lost (paused or cut off from the database past its lease); the job "
                                      "was abandoned to its new holder", error=str(event.error))
                self._end(attempt, None)
            elif event.kind != "died" and lease != event.key:  # killed for another job's timeout or lease
                self._end(attempt, None, requeue=f"worker stopped for another job: {event.error}")
            elif shared:  # either may have killed it: both go back at no cost, and each runs alone next time
                attempt.bound.error("worker died holding two jobs; both are retried, each alone",
                                    reason=str(event.error))
                self.pool.suspect(attempt.job.id, True)
                self._end(attempt, None, requeue=f"{event.error} (with another job; retried alone)")
            else:
                if event.kind == "died":
                    attempt.bound.error("worker died", reason=str(event.error))
                self._end(attempt, TaskResult(ok=False, error=str(event.error), error_step=attempt.live["step"],
                                              permanent=False))

    def _end(self, attempt: Attempt, result: TaskResult | None, requeue: str | None = None) -> None:
        """Commit `result` (None: nothing to commit), or put the job back without costing it an attempt."""
        job, lease = attempt.job, attempt.lease
        published = False
        try:
            if requeue is not None:
                self.pool.store.requeue(job.id, lease, error=requeue, delay=0, refund=True)
            elif result is not None:
                self._commit(attempt, result)
                published = result.ok
        except LeaseLost as exc:
            attempt.bound.warning("lease lost (paused or cut off from the database past its lease); the job "
                                  "was abandoned to its new holder", error=str(exc))
        except Exception as exc:
            self._commit_failed(job, lease, exc)
        finally:
            if not published:  # a published attempt's one temp file is the output now: nothing to look for
                self._drop_temps(lease)
            self.attempts.pop(lease, None)
            self._give_back_spare()

    def _commit(self, attempt: Attempt, result: TaskResult) -> None:
        job, lease = attempt.job, attempt.lease
        if result.ok:
            self.pool.committer.success(job, lease, result)
            attempt.bound.info("job done", seconds=round(time.monotonic() - attempt.started, 3),
                               review=result.review)
            outcome = "review" if result.review else "done"
        else:
            state_after = self.pool.committer.failure(job, lease, result)
            outcome = "retry" if state_after == JobState.QUEUED else "failed"
        self.pool.record_outcome(outcome, result.inbox_bytes)
        self.pool.on_result(job, result, outcome)

    def _commit_failed(self, job: Job, lease: str, exc: Exception) -> None:
        reason = commit_error(exc, self.pool.committer.folders.get(job.rule))
        if reason is not None:  # a setup problem with a known fix: one line, no traceback
            log.warning(reason, job_id=job.id, rule=job.rule, path=job.source_path)
        else:
            log.exception("job commit failed; the job will be retried", job_id=job.id, rule=job.rule,
                          path=job.source_path)
        self.pool.recover_later(job.id, lease, reason or f"commit failed: {exc}")

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
