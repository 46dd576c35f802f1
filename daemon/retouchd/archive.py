"""The commit order (SPEC §6.1): output durable → DB says so → original archived → DB says so.

Each file move is announced in the database before it happens, so that after a crash at any instant the
recovery sweep can tell which side of the move the file is on and finish the job exactly once. Every database
change is made under the claim's lease (`lease`): a holder that lost it gets LeaseLost and stops. A database
that is locked or unreachable makes a commit wait and try again; it never costs an attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError

from retouchd import beneath
from retouchd.exceptions import LeaseLost, TransientError, UnsafePathError
from retouchd.fsops import fit_name, move_verified, publish, safe_join, sha256_file, temp_sibling, unique_path
from retouchd.rules import RuleFolders
from retouchd.store import Job, JobState, Store, utcnow
from retouchd.task import TaskResult

log = structlog.get_logger("retouchd.archive")

FaultHook = Callable[[str], None]
T = TypeVar("T")


def _no_fault(point: str) -> None:
    """Production: no fault injection."""


def error_json_path(failed_file: Path) -> Path:
    return failed_file.with_name(fit_name(failed_file.name, ".error.json"))


def return_companions(failed: Path, sidecar_path: str | None) -> None:
    """After a failed file went back to its inbox: its sidecar follows it, its `.error.json` goes."""
    if sidecar_path:
        sidecar = failed.with_name(Path(sidecar_path).name)
        if sidecar.exists():
            move_verified(sidecar, unique_path(Path(sidecar_path)), None)
    with contextlib.suppress(OSError):
        error_json_path(failed).unlink()


@dataclass
class Committer:
    store: Store
    folders: dict[str, RuleFolders]
    file_mode: int = 0o644
    retry_backoff: float = 30.0
    fault: FaultHook = _no_fault
    lease_seconds: float = 60.0
    give_up: Callable[[], bool] = lambda: False
    """True when waiting for the database must stop (a forced shutdown)."""
    outage: Callable[[str], bool] = lambda rule: False
    """Whether a rule's inbox is away (unmounted, replaced): a job whose file is gone then waits for it."""
    confirm_time: float = 0.0
    """watch.quiet_time: an input that does not decode is failed only once it has been unchanged this long
    (a writer that paused longer than the settle time grows it meanwhile); 0 fails it at once."""
    _suspects: dict[int, tuple[int, int, float]] = field(default_factory=dict)
    """job id → (size, mtime_ns, monotonic time first seen so) of inputs that did not decode."""

    def db_call(self, call: Callable[[], T]) -> T:
        """Run a store call, waiting for a locked or unreachable database instead of failing the commit."""
        delay, warned = 0.5, False
        while True:
            try:
                return call()
            except (OperationalError, InterfaceError) as exc:
                if self.give_up():
                    raise
                if not warned:
                    log.warning("database unavailable during a commit; waiting (the output is kept)",
                                error=str(exc).splitlines()[0])
                    warned = True
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    # -- success -------------------------------------------------------------------------------------------
    def success(self, job: Job, lease: str, result: TaskResult) -> None:
        assert result.tmp_path and result.output_name and result.output_sha256
        self._suspects.pop(job.id, None)  # it did decode in the end (its writer had only paused)
        folders = self.folders[job.rule]
        base = folders.review if result.review else folders.outbox
        target = unique_path(safe_join(base, Path(job.rel_path).parent / result.output_name))
        tmp = result.tmp_path
        try:
            self.db_call(lambda: self.store.plan_output(job.id, lease, output_path=str(target),
                                                    output_sha256=result.output_sha256 or "", tmp=tmp,
                                                    steps=result.steps, lease_seconds=self.lease_seconds))
        except LeaseLost:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.fault("before-publish")
        publish(Path(tmp), target, mode=self.file_mode)
        self.fault("after-publish")
        planned = self._archive_plan(job)
        finished = self.db_call(lambda: self.store.finish(
            job.id, lease, review=result.review, lease_seconds=self.lease_seconds,
            archive_path=str(planned[0]) if planned else None,
            sidecar_archive_path=str(planned[1]) if planned and planned[1] else None))
        self.fault("after-finish")
        self.archive(job.id, lease, finished)

    def _archive_targets(self, job: Job) -> tuple[Path, Path | None]:
        """Free names in today's archive folder for the job's original and its sidecar."""
        root = self.folders[job.rule].archive / date.today().isoformat()
        target = unique_path(safe_join(root, job.rel_path))
        sidecar_target = None
        if job.sidecar_path:
            sidecar_target = unique_path(safe_join(root, Path(job.rel_path).parent / Path(job.sidecar_path).name))
        return target, sidecar_target

    def _archive_plan(self, job: Job) -> tuple[Path, Path | None] | None:
        """The archive names to announce with `finish` when the original is still there, unchanged (the
        usual case); None leaves the plan to archive(), which then says why it does not move it."""
        try:
            if _current_sha256(self.folders[job.rule].inbox, Path(job.source_path), job) != job.sha256:
                return None
        except (OSError, beneath.NotRegularError, UnsafePathError):
            return None
        return self._archive_targets(job)

    def archive(self, job_id: int, lease: str, job: Job | None = None) -> None:
        """Move a finished job's original (and sidecar) to the archive, hash-checked. A move that was cut
        short (the archive name planned and present) is finished, never repeated under a second name.
        `job`: the row as the fenced `finish` just left it (saves reading it again)."""
        if job is None:
            job = self.db_call(lambda: self.store.get(job_id))
        if job is None or job.state not in (JobState.DONE, JobState.REVIEW) or job.lease_owner != lease:
            raise LeaseLost(f"job {job_id}: no longer held by {lease!r}; not archiving it")
        src = Path(job.source_path)
        inbox = self.folders[job.rule].inbox
        planned = Path(job.archive_path) if job.archive_path else None
        if planned is not None and os.path.lexists(planned):
            present = beneath.exists(inbox, src)
            if not present or beneath.same_as(inbox, src, planned, job.sha256):
                if present:
                    beneath.finish_move(inbox, src)  # cut short between link and unlink: only the source goes
                self._archive_sidecar(job)
                self.db_call(lambda: self.store.archived(job.id, lease))
                return
            planned = None  # another file took that name meanwhile
        try:
            current = _current_sha256(inbox, src, job)
        except (FileNotFoundError, NotADirectoryError):
            if self.outage(job.rule):
                raise TransientError(f"the inbox of {job.rule} is away; archiving {src.name} waits for it") from None
            log.warning("original missing at archive time", job_id=job.id, rule=job.rule, path=str(src))
            self.db_call(lambda: self.store.archived(job.id, lease, moved=False))
            return
        except (beneath.NotRegularError, UnsafePathError):
            current = None
        if current != job.sha256:
            # The inbox file was replaced after processing: keep it for the watcher as new content.
            log.warning("original replaced before archiving; left in the inbox", job_id=job.id, path=str(src))
            self.db_call(lambda: self.store.archived(job.id, lease, moved=False))
            return
        if planned is not None:
            target = planned
            sidecar_target = Path(job.sidecar_archive_path) if job.sidecar_archive_path else None
        else:
            target, sidecar_target = self._archive_targets(job)
            self.db_call(lambda: self.store.plan_archive(job.id, lease, str(target),
                                                     str(sidecar_target) if sidecar_target else None))
        self.fault("before-archive")
        how = beneath.move_out(inbox, src, target, job.sha256, fault=self.fault)
        if how == "copied":
            log.info("original archived as a copy (hard-linked or on another filesystem)", job_id=job.id,
                     path=str(src), archive_path=str(target))
        self.fault("after-archive-move")
        job.archive_path, job.sidecar_archive_path = str(target), str(sidecar_target) if sidecar_target else None
        self._archive_sidecar(job)
        self.db_call(lambda: self.store.archived(job.id, lease))

    def _archive_sidecar(self, job: Job) -> None:
        inbox = self.folders[job.rule].inbox
        if job.sidecar_path and job.sidecar_archive_path and beneath.exists(inbox, Path(job.sidecar_path)):
            self._move_beside(inbox, Path(job.sidecar_path), Path(job.sidecar_archive_path))

    @staticmethod
    def _move_beside(inbox: Path, src: Path, dst: Path) -> None:
        """Move an inbox entry to `dst`, finishing a move cut short there, or to a free name beside it."""
        if os.path.lexists(dst):
            if beneath.same_as(inbox, src, dst, None):
                beneath.finish_move(inbox, src)
                return
            dst = unique_path(dst)
        beneath.move_out(inbox, src, dst, None)

    # -- failure -------------------------------------------------------------------------------------------
    def failure(self, job: Job, lease: str, result: TaskResult) -> JobState:
        """Retry later (transient, attempts left) or move to failed/ with the reason; return the new state."""
        if result.tmp_path:
            with contextlib.suppress(OSError):
                os.unlink(result.tmp_path)
        if not result.undecodable:
            self._suspects.pop(job.id, None)
        if result.vanished and self.outage(job.rule):
            self.db_call(lambda: self.store.requeue(
                job.id, lease, error="the file is gone with its inbox (unmounted?); waiting for it",
                delay=max(self.retry_backoff, 5.0), refund=True))
            return JobState.QUEUED
        if result.vanished:
            self.db_call(lambda: self.store.fail(job.id, lease, error=result.error or "file vanished",
                                             step=result.error_step, traceback_id=None, steps=result.steps))
            return JobState.FAILED
        if result.undecodable and (wait := self._confirm_wait(job)) > 0:
            self.db_call(lambda: self.store.requeue(
                job.id, lease, error=f"{result.error} (changed less than {self.confirm_time:g} s ago, it may still "
                f"be being written: looking again in {wait:.0f} s)", delay=wait, refund=True))
            log.info("input does not decode yet; looking again before failing it", job_id=job.id, rule=job.rule,
                     path=job.source_path, delay=round(wait, 1), error=result.error)
            return JobState.QUEUED
        if not result.permanent and job.attempts < job.max_attempts:
            delay = self.retry_backoff * (2 ** max(0, job.attempts - 1))
            self.db_call(lambda: self.store.requeue(job.id, lease, error=result.error, delay=delay))
            log.info("job will be retried", job_id=job.id, rule=job.rule, path=job.source_path,
                     attempts=job.attempts, delay=delay, error=result.error)
            return JobState.QUEUED
        self.to_failed(job, lease, result.error or "unknown error", result.error_step, result.traceback_id,
                       result.steps)
        return JobState.FAILED

    def _confirm_wait(self, job: Job) -> float:
        """Seconds to wait before an undecodable input may be failed: until its size and mtime have held
        still for `confirm_time` (by its mtime, or, should the share's clock be ahead, by this daemon's clock
        since it first failed so). 0: fail it now (still that long, or gone)."""
        if self.confirm_time <= 0:
            return 0.0
        try:
            st = beneath.lstat(self.folders[job.rule].inbox, Path(job.source_path))
        except (OSError, UnsafePathError):
            self._suspects.pop(job.id, None)
            return 0.0
        now = time.monotonic()
        seen = self._suspects.get(job.id)
        if seen is None or seen[:2] != (st.st_size, st.st_mtime_ns):
            seen = self._suspects[job.id] = (st.st_size, st.st_mtime_ns, now)
        still_for = max(now - seen[2], time.time() - st.st_mtime)
        if still_for >= self.confirm_time:
            self._suspects.pop(job.id, None)
            return 0.0
        return max(0.5, self.confirm_time - still_for)

    def to_failed(self, job: Job, lease: str, error: str, step: str | None, traceback_id: str | None,
                  steps: list[dict[str, object]] | None = None) -> None:
        folders = self.folders[job.rule]
        src = Path(job.source_path)
        target = Path(job.failed_path) if job.failed_path else None
        present = beneath.exists(folders.inbox, src)
        if target is not None and present and os.path.lexists(target) \
                and not beneath.same_as(folders.inbox, src, target, None):
            target = None  # another file took the planned name meanwhile
        if target is None:
            target = unique_path(safe_join(folders.failed, job.rel_path))
            planned = target
            self.db_call(lambda: self.store.plan_failed(job.id, lease, str(planned), error=error, step=step,
                                                    traceback_id=traceback_id))
        if present:
            if os.path.lexists(target):
                beneath.finish_move(folders.inbox, src)  # cut short between link and unlink (checked above)
            else:
                beneath.move_out(folders.inbox, src, target, None, fault=self.fault)
        if job.sidecar_path and beneath.exists(folders.inbox, Path(job.sidecar_path)):
            sidecar = Path(job.sidecar_path)
            self._move_beside(folders.inbox, sidecar, target.with_name(sidecar.name))
        report = {
            "job_id": job.id, "rule": job.rule, "source": job.source_path, "sha256": job.sha256,
            "reason": error, "step": step, "attempts": job.attempts, "traceback_id": traceback_id,
            "time": utcnow().isoformat(), "retry": f"retouchd retry {job.id}",
        }
        if os.path.lexists(target):
            tmp = temp_sibling(target, ".error.json.tmp")
            text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
            tmp.write_bytes(text.encode("utf-8", "backslashreplace"))
            os.chmod(tmp, self.file_mode)
            os.replace(tmp, error_json_path(target))
        self.db_call(lambda: self.store.fail(job.id, lease, error=error, step=step, traceback_id=traceback_id,
                                         steps=steps))
        log.warning("job failed", job_id=job.id, rule=job.rule, path=job.source_path, step=step, error=error,
                    failed_path=str(target))

    # -- crash recovery ------------------------------------------------------------------------------------
    def recover(self, job: Job, lease: str, *, refund: bool, error: str | None = None) -> str:
        """Finish, requeue or fail a job taken over (`lease` now holds it) from a holder that is gone
        (`refund`: not the job's fault, the attempt is given back) or whose commit raised (`error`: counts
        as an attempt, retried with backoff)."""
        if job.state in (JobState.DONE, JobState.REVIEW):
            self.archive(job.id, lease)
            return "archived"
        # The old holder's temp output goes first: a holder that is only paused then cannot publish it
        # after the check below (its link fails); if it published before, the check sees the output.
        if job.output_tmp:
            with contextlib.suppress(OSError):
                os.unlink(job.output_tmp)
        output = Path(job.output_path) if job.output_path else None
        if output is not None and output.exists() and sha256_file(output) == job.output_sha256:
            review = self._under(output, self.folders[job.rule].review)
            self.db_call(lambda: self.store.finish(job.id, lease, review=review, lease_seconds=self.lease_seconds))
            self.archive(job.id, lease)
            return "finished"
        if job.failed_path:
            self.to_failed(job, lease, job.error or "interrupted while failing", job.error_step, job.traceback_id)
            return "failed"
        if output is not None:
            with contextlib.suppress(OSError):
                temp_sibling(output).unlink()
        if refund:
            self.db_call(lambda: self.store.requeue(job.id, lease, error="interrupted (the process holding it stopped)",
                                                delay=0, refund=True))
            return "requeued"
        result = TaskResult(ok=False, error=error or "interrupted", error_step="commit", permanent=False)
        return str(self.failure(job, lease, result))

    @staticmethod
    def _under(path: Path, root: Path) -> bool:
        return os.path.commonpath([path, root]) == str(root)


def lease_dead(
    host: str, my_pid: int, my_instance: str, alive: Callable[[int], bool], held: Callable[[str], bool]
) -> Callable[[Job, datetime], bool]:
    """A predicate for leases whose holder is gone. This process never calls a lease of its own dead while
    one of its slots holds it, however late its heartbeat (it may just have been paused); another process's
    lease is dead once expired, or at once if it was a process on this host that no longer runs."""

    def is_dead(job: Job, now: datetime) -> bool:
        owner = job.lease_owner or ""
        if not owner:
            return True  # a finished job from before leases covered archiving
        expired = job.lease_expires is None or job.lease_expires < now
        parts = owner.split(":")
        if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
            return expired
        pid, instance = int(parts[1]), parts[2]
        if pid == my_pid and instance == my_instance:
            return expired and not held(owner)
        if pid == my_pid:
            return True  # an earlier run whose pid this process now has
        return expired or not alive(pid)

    return is_dead


def _current_sha256(inbox: Path, src: Path, job: Job) -> str:
    """The original's sha256 now. Unchanged size and mtime since intake: the intake hash, without reading
    the file a third time (a move on one filesystem keeps the very inode; a copy is verified against the
    hash as it is made). Otherwise a fresh hash decides whether it is still the processed content."""
    st = beneath.lstat(inbox, src)
    if stat.S_ISREG(st.st_mode) and st.st_size == job.size and st.st_mtime == job.mtime:
        return job.sha256
    return beneath.hash_file(inbox, src)[0]
