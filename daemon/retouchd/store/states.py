"""Job states and the one place where a job changes state."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from retouchd.exceptions import StoreError

if TYPE_CHECKING:
    from retouchd.store.schema import Job


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    REVIEW = "review"
    FAILED = "failed"
    ARCHIVED = "archived"


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING}),
    JobState.RUNNING: frozenset({JobState.QUEUED, JobState.DONE, JobState.REVIEW, JobState.FAILED}),
    JobState.DONE: frozenset({JobState.ARCHIVED}),
    JobState.REVIEW: frozenset({JobState.ARCHIVED}),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.ARCHIVED: frozenset(),
}

ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})
"""States in which the original is still in the inbox, waiting for or under work."""
LEASED = frozenset({JobState.RUNNING, JobState.DONE, JobState.REVIEW})
"""States in which a claimant holds the job: from the claim until the original is archived."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def transition(job: Job, new: JobState, *, now: datetime | None = None, error: str | None = None) -> None:
    """Move `job` to `new` if the map allows it, stamping times, attempts, lease and error."""
    now = now or utcnow()
    old = JobState(job.state)
    if new not in TRANSITIONS[old]:
        raise StoreError(f"job {job.id}: illegal state change {old} → {new}")
    job.state = new
    job.updated_at = now
    if new is JobState.RUNNING:
        job.attempts += 1
        job.started_at = now  # `error` keeps the previous attempt's reason until this one ends
    elif new is JobState.QUEUED:
        job.lease_owner = None
        job.lease_expires = None
        job.progress = None
        job.current_step = None
        if old is JobState.FAILED:
            job.attempts = 0
            job.failed_path = None
            job.not_before = None
    elif new in (JobState.DONE, JobState.REVIEW):
        job.finished_at = now  # the lease stays: the same claimant archives the original
        job.current_step = None
    elif new is JobState.FAILED:
        job.finished_at = now
        job.lease_owner = None
        job.lease_expires = None
        job.current_step = None
    elif new is JobState.ARCHIVED:
        job.lease_owner = None
        job.lease_expires = None
    if error is not None:
        job.error = printable(error)


def printable(text: str) -> str:
    """Text safe to store anywhere: undecodable bytes of file names become backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
