"""What a person does to jobs from the web interface: approve, reject, retry, cancel, pause and resume.

Files move with the same care as in the daemon: the destination is written to the database first, then the
file is moved (hash-checked), then the verdict is recorded; doing an interrupted action again finishes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog

from retouchd.archive import Committer, return_companions
from retouchd.exceptions import RetouchdError
from retouchd.fsops import move_verified, safe_join, unique_path
from retouchd.rules import Rule, RuleFolders, RuleSet
from retouchd.settings import Settings
from retouchd.store import Job, JobState, Store, transition, utcnow
from retouchd.store.reviews import APPROVED, PENDING, REJECTED, Reviews

log = structlog.get_logger("retouchd.steering")
MAX_REASON = 2000
CANCEL_LEASE = 300.0


class ActionError(RetouchdError):
    """An action that cannot be done in the job's current state (HTTP 409), or on a job that is gone (404)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def rejected_folder(rule: Rule, base: Path) -> Path:
    """ROOT/rejected/<rule>, or the rule's own `rejected` folder (an absolute path allowed)."""
    if rule.rejected is None:
        return (base / rule.name).absolute()
    path = Path(rule.rejected)
    return (path if path.is_absolute() else base / path).absolute()


@dataclass
class Steering:
    settings: Settings
    rules: RuleSet
    store: Store
    folders: dict[str, RuleFolders]

    def __post_init__(self) -> None:
        self.reviews = Reviews(self.store)

    def _job(self, job_id: int) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise ActionError(f"job {job_id} does not exist", 404)
        if job.rule not in self.folders:
            raise ActionError(f"job {job_id} belongs to rule {job.rule!r}, which is not loaded here")
        return job

    def _move_output(self, job: Job, planned: str | None, base: Path) -> Path:
        """Move the job's output under `base` (same relative path as in its inbox); finish a planned move."""
        if planned is not None:
            dst = Path(planned)
        else:
            if not job.output_path:
                raise ActionError(f"job {job.id} has no output")
            name = Path(job.output_path).name
            dst = unique_path(safe_join(base, Path(job.rel_path).parent / name))
            self.reviews.plan(job.id, src=job.output_path, dst=str(dst))
        src = Path(job.output_path or "")
        if os.path.lexists(src) and src != dst:
            move_verified(src, dst, job.output_sha256)
        elif not dst.exists():
            raise ActionError(f"job {job.id}: its output {src} is gone; nothing to move", 410)
        return dst

    def approve(self, job_id: int) -> Job:
        """A result in review/ goes to the outbox."""
        job = self._job(job_id)
        review = self.reviews.get(job_id)
        if review is None or review.verdict != PENDING:
            state = review.verdict if review else "not in review"
            raise ActionError(f"job {job_id} is not waiting for review ({state}); only review results are approved")
        dst = self._move_output(job, review.moved_to, self.folders[job.rule].outbox)
        self.reviews.decide(job_id, APPROVED, reason=None, output_path=str(dst))
        log.info("result approved", job_id=job_id, rule=job.rule, path=job.rel_path, output=str(dst))
        return self._job(job_id)

    def reject(self, job_id: int, reason: str) -> Job:
        """A result in review/, or one published to the outbox, goes to rejected/ with the reason."""
        reason = reason.strip()[:MAX_REASON]
        if not reason:
            raise ActionError("say why the result is rejected (a non-empty reason)", 400)
        job = self._job(job_id)
        review = self.reviews.get(job_id)
        if review is not None and review.verdict != PENDING:
            raise ActionError(f"job {job_id} was already {review.verdict}")
        if review is None and job.state not in (JobState.DONE, JobState.ARCHIVED):
            raise ActionError(f"job {job_id} is {job.state}; only finished results can be rejected")
        base = rejected_folder(self.rules.by_name(job.rule), self.settings.rejected)
        dst = self._move_output(job, review.moved_to if review else None, base)
        self.reviews.decide(job_id, REJECTED, reason=reason, output_path=str(dst))
        log.info("result rejected", job_id=job_id, rule=job.rule, path=job.rel_path, reason=reason, output=str(dst))
        return self._job(job_id)

    def retry(self, job_id: int) -> Job:
        """A failed job's file goes back to its inbox and the job is queued again."""
        job = self._job(job_id)
        if job.state != JobState.FAILED:
            raise ActionError(f"job {job_id} is {job.state}; only failed jobs are retried")
        if not job.failed_path or not Path(job.failed_path).exists():
            raise ActionError(f"job {job_id}: its file is no longer in failed/; drop it in the inbox again", 410)
        failed = Path(job.failed_path)
        dest = unique_path(Path(job.source_path))
        move_verified(failed, dest, job.sha256)
        return_companions(failed, job.sidecar_path)
        log.info("failed job sent back to its inbox", job_id=job_id, rule=job.rule, path=str(dest))
        return self.store.retry(job.id, str(dest), str(Path(job.rel_path).parent / dest.name))

    def cancel(self, job_id: int) -> Job:
        """A queued job is taken off the queue: its file goes to failed/ ("cancelled"), retry brings it back."""
        job = self._job(job_id)
        owner = f"web:{os.getpid()}:cancel"
        with self.store.session() as s:
            row = s.get(Job, job_id, with_for_update=True)
            if row is None or row.state != JobState.QUEUED:
                raise ActionError(f"job {job_id} is {row.state if row else 'gone'}; only queued jobs are cancelled")
            transition(row, JobState.RUNNING)  # held like a slot holds it, so no slot can claim it meanwhile
            row.lease_owner, row.lease_expires = owner, utcnow() + timedelta(seconds=CANCEL_LEASE)
            row.attempts -= 1  # a cancel is not an attempt
        committer = Committer(self.store, self.folders, file_mode=self.settings.file_mode)
        committer.to_failed(self.store.get(job_id) or job, owner, "cancelled by a person", None, None)
        return self._job(job_id)

    def pause(self, rule: str) -> None:
        self._rule(rule)
        self.reviews.pause(rule)
        log.info("inbox paused", rule=rule)

    def resume(self, rule: str) -> bool:
        self._rule(rule)
        log.info("inbox resumed", rule=rule)
        return self.reviews.resume(rule)

    def _rule(self, rule: str) -> None:
        if rule not in {r.name for r in self.rules.rules}:
            raise ActionError(f"no rule named {rule!r}", 404)
