"""The queries behind `status`, the web dashboard and the metrics gauges: read-only, in a caller's session
(the Store's reader, or a status command's own engine), so every SELECT over jobs and hosts lives in store/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retouchd.store.review_schema import InboxPause
from retouchd.store.schema import Duplicate, Host, Job
from retouchd.store.states import JobState


@dataclass
class Overview:
    counts: list[tuple[str, str, int]]
    """(rule, state, jobs) for every pair present."""
    duplicates: list[tuple[str, int]]
    """(rule, duplicates recorded against its jobs)."""
    running: list[Job]
    finished: list[tuple[datetime | None, str]]
    """(finished_at, state) of the jobs that finished within the hour."""
    failed: list[Job]
    """The ten latest failures."""
    retrying: list[Job]
    """The ten latest jobs queued again after an error."""
    paused: dict[str, datetime]
    hosts: list[Host]


def live_hosts(session: Session, seen_within: timedelta, now: datetime) -> list[Host]:
    """Daemons that reported within `seen_within` and have not stopped, by host and start."""
    query = (select(Host).where(Host.stopped_at.is_(None), Host.seen_at >= now - seen_within)
             .order_by(Host.host, Host.started_at, Host.id))
    return list(session.scalars(query).all())


def overview(session: Session, now: datetime, *, host_fresh: timedelta) -> Overview:
    hour_ago = now - timedelta(hours=1)
    counts = session.execute(select(Job.rule, Job.state, func.count()).group_by(Job.rule, Job.state)).all()
    duplicates = session.execute(select(Job.rule, func.count(Duplicate.id))
                                 .join(Duplicate, Duplicate.job_id == Job.id).group_by(Job.rule)).all()
    running = session.scalars(select(Job).where(Job.state == JobState.RUNNING).order_by(Job.started_at, Job.id))
    finished = session.execute(select(Job.finished_at, Job.state).where(Job.finished_at >= hour_ago)).all()
    failed = session.scalars(select(Job).where(Job.state == JobState.FAILED)
                             .order_by(Job.finished_at.desc(), Job.id.desc()).limit(10))
    retrying = session.scalars(select(Job).where(Job.state == JobState.QUEUED, Job.error.is_not(None))
                               .order_by(Job.updated_at.desc(), Job.id.desc()).limit(10))
    paused = {p.rule: p.paused_at for p in session.scalars(select(InboxPause).order_by(InboxPause.rule))}
    return Overview(
        counts=[(rule, state, int(n)) for rule, state, n in counts],
        duplicates=[(rule, int(n)) for rule, n in duplicates],
        running=list(running.all()), finished=[(at, state) for at, state in finished],
        failed=list(failed.all()), retrying=list(retrying.all()), paused=paused,
        hosts=live_hosts(session, host_fresh, now),
    )


def active_counts(session: Session) -> dict[tuple[str, str], int]:
    """(rule, state) → jobs, for the queued and running ones (the metrics gauges)."""
    rows = session.execute(select(Job.rule, Job.state, func.count())
                           .where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
                           .group_by(Job.rule, Job.state)).all()
    return {(rule, str(state)): int(n) for rule, state, n in rows}
