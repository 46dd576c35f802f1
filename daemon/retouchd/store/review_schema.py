"""Tables of the review loop: a person's verdict on a result, and inboxes a person paused."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, event, text
from sqlalchemy.orm import Mapped, mapped_column

from retouchd.store.schema import Base, FsPath, Job, UTCDateTime

# Cost per rule and variant is an index-only scan at 100 000 jobs.
Index("ix_jobs_rule_variant_state", Job.rule, Job.variant, Job.state, Job.device_seconds)
# The history (newest first) filtered by rule or state walks these instead of sorting every match.
Index("ix_jobs_rule_id", Job.rule, Job.id)
Index("ix_jobs_state_id", Job.state, Job.id)
# The dashboard at 100 000 jobs (migration 0007): the last hour's results are read from the index alone, and the
# newest failures / retries are its first entries instead of a sort of every failed or queued job.
Index("ix_jobs_finished_at_state", Job.finished_at, Job.state)
Index("ix_jobs_state_finished_at", Job.state, Job.finished_at, Job.id)
RETRYING_WHERE = text("state = 'queued' AND error IS NOT NULL")  # as store.overview.RETRYING
RETRYING_INDEX = Index("ix_jobs_retrying", Job.updated_at, Job.id, sqlite_where=RETRYING_WHERE)


def postgresql_options() -> None:
    """The partial index's WHERE on PostgreSQL (as migration 0007 makes it), given when a PostgreSQL engine is
    made: naming `postgresql_where` at import would load SQLAlchemy's whole PostgreSQL dialect on SQLite too."""
    RETRYING_INDEX.dialect_options["postgresql"]["where"] = RETRYING_WHERE


def step_seconds(steps: Any) -> float | None:
    if not steps:
        return None
    return float(sum(float(r.get("seconds") or 0) for r in steps if isinstance(r, dict)))


@event.listens_for(Job.steps, "set")
def _keep_device_seconds(job: Job, value: Any, _old: Any, _initiator: Any) -> None:
    """Wherever the store records a job's steps, their total time is recorded beside them."""
    job.device_seconds = step_seconds(value)


class Review(Base):
    """One row per job a person has to look at (`pending`) or has looked at (`approved` / `rejected`)."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_verdict", "verdict"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    """pending | approved | rejected."""
    reason: Mapped[str | None] = mapped_column(Text)
    moved_from: Mapped[str | None] = mapped_column(FsPath)
    moved_to: Mapped[str | None] = mapped_column(FsPath)
    """Where the output goes: written before the move, so an interrupted move can be finished."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InboxPause(Base):
    """An inbox a person paused: its queued jobs wait until it is resumed."""

    __tablename__ = "inbox_pauses"

    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)


class SummarySent(Base):
    """The days (local dates) whose summary notification went out: one per day, whichever host sends it,
    and not again after a restart. The row is written before sending (a claim) and removed if sending fails."""

    __tablename__ = "summaries_sent"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    """YYYY-MM-DD in the daemon's local time zone."""
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    host: Mapped[str | None] = mapped_column(String(255))
