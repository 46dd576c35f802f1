"""Store operations of the review loop: verdicts on results and inboxes a person paused.

A result a rule routed to review/ gets a `pending` row when its job finishes; a person's approve or reject
turns it into `approved` / `rejected`. A rejected result that never went through review (it was published to
the outbox) gets its row at the moment it is rejected. The file move is announced (`moved_to`) before it
happens, so an interrupted move is finished by doing it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from retouchd.exceptions import StoreError
from retouchd.store.jobs import Store
from retouchd.store.review_schema import InboxPause, Review, SummarySent
from retouchd.store.schema import Job
from retouchd.store.states import printable, utcnow

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


def mark_pending(session: Session, job_id: int, now: datetime | None = None) -> None:
    """Called in the transaction that finishes a job as `review`: a person now has to look at it."""
    if session.get(Review, job_id) is None:
        session.add(Review(job_id=job_id, verdict=PENDING, created_at=now or utcnow()))


class Reviews:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, job_id: int) -> Review | None:
        with self.store.session() as s:
            return s.get(Review, job_id)

    def of(self, job_ids: Sequence[int]) -> dict[int, Review]:
        if not job_ids:
            return {}
        with self.store.session() as s:
            return {r.job_id: r for r in s.scalars(select(Review).where(Review.job_id.in_(list(job_ids))))}

    def pending(self, *, rule: str | None = None, limit: int = 200) -> list[Job]:
        with self.store.session() as s:
            query = (select(Job).join(Review, Review.job_id == Job.id).where(Review.verdict == PENDING)
                     .order_by(Job.id).limit(limit))
            if rule is not None:
                query = query.where(Job.rule == rule)
            return list(s.scalars(query).all())

    def plan(self, job_id: int, *, src: str, dst: str) -> None:
        """Announce a move of the job's output (before it happens)."""
        now = utcnow()
        with self.store.session() as s:
            row = s.get(Review, job_id)
            if row is None:
                row = Review(job_id=job_id, verdict=PENDING, created_at=now)
                s.add(row)
            elif row.verdict != PENDING:
                raise StoreError(f"job {job_id} was already {row.verdict}")
            row.moved_from, row.moved_to = src, dst

    def decide(self, job_id: int, verdict: str, *, reason: str | None, output_path: str | None) -> Review:
        """Record the verdict; the job's output now lives at `output_path`."""
        if verdict not in (APPROVED, REJECTED):
            raise StoreError(f"unknown verdict {verdict!r}")
        now = utcnow()
        with self.store.session() as s:
            row = s.get(Review, job_id)
            job = s.get(Job, job_id)
            if row is None or job is None:
                raise StoreError(f"job {job_id} has no review to decide")
            if row.verdict != PENDING:
                raise StoreError(f"job {job_id} was already {row.verdict}")
            row.verdict, row.decided_at = verdict, now
            row.reason = printable(reason) if reason else None
            if output_path is not None:
                job.output_path = output_path
            job.updated_at = now
            return row

    # -- inboxes a person paused ---------------------------------------------------------------------------
    def pause(self, rule: str, note: str | None = None) -> None:
        with self.store.session() as s:
            if s.get(InboxPause, rule) is None:
                s.add(InboxPause(rule=rule, paused_at=utcnow(), note=note))

    def resume(self, rule: str) -> bool:
        with self.store.session() as s:
            row = s.get(InboxPause, rule)
            if row is None:
                return False
            s.delete(row)
            return True

    def paused(self) -> dict[str, datetime]:
        with self.store.read() as s:  # a read: never SQLite's write lock
            return {p.rule: p.paused_at for p in s.scalars(select(InboxPause)).all()}


# -- the daily summary, once per local day -------------------------------------------------------------------
def claim_summary_day(store: Store, day: str, host: str | None) -> bool:
    """Record that `day`'s summary is being sent; False when it was sent (or is being sent) already, by this
    host before a restart or by another host."""
    try:
        with store.session() as s:
            if s.get(SummarySent, day) is not None:
                return False
            s.add(SummarySent(day=day, sent_at=utcnow(), host=host))
    except IntegrityError:  # another host claimed it at the same moment
        return False
    return True


def release_summary_day(store: Store, day: str) -> None:
    """Sending failed: the day is free again, so a later try may send it."""
    with store.session() as s:
        row = s.get(SummarySent, day)
        if row is not None:
            s.delete(row)
