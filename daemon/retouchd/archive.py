"""The commit order (SPEC §6.1): output durable → DB says so → original archived → DB says so.

Each file move is announced in the database before it happens, so that after a crash at any instant the
recovery sweep can tell which side of the move the file is on and finish the job exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import structlog

from retouchd import beneath
from retouchd.exceptions import TransientError, UnsafePathError
from retouchd.fsops import fit_name, publish, safe_join, sha256_file, temp_sibling, unique_path
from retouchd.pipeline import TaskResult
from retouchd.rules import RuleFolders
from retouchd.store import Job, JobState, Store, utcnow

log = structlog.get_logger("retouchd.archive")

FaultHook = Callable[[str], None]


def _no_fault(point: str) -> None:
    """Production: no fault injection."""


def error_json_path(failed_file: Path) -> Path:
    return failed_file.with_name(fit_name(failed_file.name, ".error.json"))


@dataclass
class Committer:
    store: Store
    folders: dict[str, RuleFolders]
    file_mode: int = 0o644
    retry_backoff: float = 30.0
    fault: FaultHook = _no_fault
    outage: Callable[[str], bool] = lambda rule: False
    """Whether a rule's inbox is away (unmounted, replaced): a job whose file is gone then waits for it."""

    # -- success -------------------------------------------------------------------------------------------
    def success(self, job: Job, owner: str, result: TaskResult) -> None:
        assert result.tmp_path and result.output_name and result.output_sha256
        folders = self.folders[job.rule]
        base = folders.review if result.review else folders.outbox
        target = unique_path(safe_join(base, Path(job.rel_path).parent / result.output_name))
        self.store.plan_output(job.id, owner, output_path=str(target), output_sha256=result.output_sha256,
                               tmp=result.tmp_path, steps=result.steps)
        self.fault("before-publish")
        publish(Path(result.tmp_path), target, mode=self.file_mode)
        self.fault("after-publish")
        self.store.finish(job.id, owner, review=result.review)
        self.fault("after-finish")
        self.archive(job.id)

    def archive(self, job_id: int) -> None:
        """Move a finished job's original (and sidecar) to the archive, hash-checked."""
        job = self.store.get(job_id)
        assert job is not None and job.state in (JobState.DONE, JobState.REVIEW)
        src = Path(job.source_path)
        inbox = self.folders[job.rule].inbox
        if job.archive_path and not beneath.exists(inbox, src) and Path(job.archive_path).exists():
            self._archive_sidecar(job)  # crashed after the move, before the DB said so
            self.store.archived(job.id)
            return
        try:
            current = _current_sha256(inbox, src, job)
        except (FileNotFoundError, NotADirectoryError):
            if self.outage(job.rule):
                raise TransientError(f"the inbox of {job.rule} is away; archiving {src.name} waits for it") from None
            log.warning("original missing at archive time", job_id=job.id, rule=job.rule, path=str(src))
            self.store.archived(job.id)
            return
        except (beneath.NotRegularError, UnsafePathError):
            current = None
        if current != job.sha256:
            # The inbox file was replaced after processing: keep it for the watcher as new content.
            log.warning("original replaced before archiving; left in the inbox", job_id=job.id, path=str(src))
            self.store.archived(job.id)
            return
        day = date.today().isoformat()
        root = self.folders[job.rule].archive / day
        target = unique_path(safe_join(root, job.rel_path))
        sidecar_target = None
        if job.sidecar_path:
            sidecar_target = unique_path(safe_join(root, Path(job.rel_path).parent / Path(job.sidecar_path).name))
        self.store.plan_archive(job.id, str(target), str(sidecar_target) if sidecar_target else None)
        self.fault("before-archive")
        how = beneath.move_out(inbox, src, target, job.sha256)
        if how == "copied":
            log.info("original archived as a copy (hard-linked or on another filesystem)", job_id=job.id,
                     path=str(src), archive_path=str(target))
        self.fault("after-archive-move")
        job.archive_path, job.sidecar_archive_path = str(target), str(sidecar_target) if sidecar_target else None
        self._archive_sidecar(job)
        self.store.archived(job.id)

    def _archive_sidecar(self, job: Job) -> None:
        inbox = self.folders[job.rule].inbox
        if job.sidecar_path and job.sidecar_archive_path and beneath.exists(inbox, Path(job.sidecar_path)):
            dst = Path(job.sidecar_archive_path)
            if os.path.lexists(dst):
                dst = unique_path(dst)
            beneath.move_out(inbox, Path(job.sidecar_path), dst, None)

    # -- failure -------------------------------------------------------------------------------------------
    def failure(self, job: Job, owner: str | None, result: TaskResult) -> JobState:
        """Retry later (transient, attempts left) or move to failed/ with the reason; return the new state."""
        if result.tmp_path:
            with contextlib.suppress(OSError):
                os.unlink(result.tmp_path)
        if result.vanished and self.outage(job.rule):
            self.store.requeue(job.id, owner, error="the file is gone with its inbox (unmounted?); waiting for it",
                               delay=max(self.retry_backoff, 5.0), refund=True)
            return JobState.QUEUED
        if result.vanished:
            self.store.fail(job.id, owner, error=result.error or "file vanished", step=result.error_step,
                            traceback_id=None, steps=result.steps)
            return JobState.FAILED
        if not result.permanent and job.attempts < job.max_attempts:
            delay = self.retry_backoff * (2 ** max(0, job.attempts - 1))
            self.store.requeue(job.id, owner, error=result.error, delay=delay)
            log.info("job will be retried", job_id=job.id, rule=job.rule, path=job.source_path,
                     attempts=job.attempts, delay=delay, error=result.error)
            return JobState.QUEUED
        self.to_failed(job, owner, result.error or "unknown error", result.error_step, result.traceback_id,
                       result.steps)
        return JobState.FAILED

    def to_failed(self, job: Job, owner: str | None, error: str, step: str | None, traceback_id: str | None,
                  steps: list[dict[str, object]] | None = None) -> None:
        folders = self.folders[job.rule]
        src = Path(job.source_path)
        target = Path(job.failed_path) if job.failed_path else unique_path(safe_join(folders.failed, job.rel_path))
        if not job.failed_path:
            self.store.plan_failed(job.id, str(target))
        if beneath.exists(folders.inbox, src) and not os.path.lexists(target):
            beneath.move_out(folders.inbox, src, target, None)
        if job.sidecar_path and beneath.exists(folders.inbox, Path(job.sidecar_path)):
            sidecar = Path(job.sidecar_path)
            beneath.move_out(folders.inbox, sidecar, unique_path(target.with_name(sidecar.name)), None)
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
        self.store.fail(job.id, owner, error=error, step=step, traceback_id=traceback_id, steps=steps)
        log.warning("job failed", job_id=job.id, rule=job.rule, path=job.source_path, step=step, error=error,
                    failed_path=str(target))

    # -- crash recovery ------------------------------------------------------------------------------------
    def recover_running(self, job: Job, *, refund: bool, error: str | None = None) -> str:
        """Finish, requeue or fail a job whose owner died (`refund`: not the job's fault, the attempt is
        given back) or whose commit raised (`error`: counts as an attempt, retried with backoff)."""
        output = Path(job.output_path) if job.output_path else None
        if output is not None and output.exists() and sha256_file(output) == job.output_sha256:
            self.store.finish(job.id, None, review=self._under(output, self.folders[job.rule].review))
            self.archive(job.id)
            return "finished"
        if job.failed_path:
            self.to_failed(job, None, job.error or "interrupted while failing", job.error_step, job.traceback_id)
            return "failed"
        if job.output_tmp:
            with contextlib.suppress(OSError):
                os.unlink(job.output_tmp)
        if job.output_path:
            stale = Path(job.output_path)
            with contextlib.suppress(OSError):
                temp_sibling(stale).unlink()
        if refund:
            self.store.requeue(job.id, None, error="interrupted (the process holding it stopped)", delay=0,
                               refund=True)
            return "requeued"
        result = TaskResult(ok=False, error=error or "interrupted", error_step="commit", permanent=False)
        return str(self.failure(job, None, result))

    @staticmethod
    def _under(path: Path, root: Path) -> bool:
        return os.path.commonpath([path, root]) == str(root)


def _current_sha256(inbox: Path, src: Path, job: Job) -> str:
    """The original's sha256 now. Unchanged size and mtime since intake: the intake hash, without reading
    the file a third time (a move on one filesystem keeps the very inode; a copy is verified against the
    hash as it is made). Otherwise a fresh hash decides whether it is still the processed content."""
    st = beneath.lstat(inbox, src)
    if stat.S_ISREG(st.st_mode) and st.st_size == job.size and st.st_mtime == job.mtime:
        return job.sha256
    return beneath.hash_file(inbox, src)[0]


def lease_dead(
    host: str, my_pid: int, my_instance: str, alive: Callable[[int], bool]
) -> Callable[[Job, datetime], bool]:
    """A predicate for jobs whose owner is gone: lease expired, or a dead process on this host."""

    def is_dead(job: Job, now: datetime) -> bool:
        if job.lease_expires is not None and job.lease_expires < now:
            return True
        owner = (job.lease_owner or "").split(":")
        if len(owner) < 3 or owner[0] != host:
            return False
        pid, instance = int(owner[1]), owner[2]
        if pid == my_pid:
            return instance != my_instance
        return not alive(pid)

    return is_dead
