"""The queries behind `status`, the web dashboard and the metrics gauges: read-only, in a caller's session
(the Store's reader, or a status command's own engine), so every SELECT over jobs and hosts lives in store/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select, text
from sqlalchemy.orm import Session

from retouchd.store.review_schema import InboxPause
from retouchd.store.schema import Duplicate, Host, Job
from retouchd.store.states import JobState
from retouchd.store.stats import Totals

RUNNING_COLUMNS = (Job.id, Job.rule, Job.rel_path, Job.current_step, Job.progress, Job.device, Job.host,
                   Job.attempts, Job.started_at)
RETRYING = "state = 'queued' AND error IS NOT NULL"
MINUTES = 30
"""Throughput is counted per whole minute of age over the last MINUTES minutes."""


@dataclass
class Overview:
    counts: list[tuple[str, str, int]]
    """(rule, state, jobs) for every pair present."""
    duplicates: list[tuple[str, int]]
    """(rule, duplicates recorded against its jobs)."""
    running: list[Any]
    """Rows of RUNNING_COLUMNS for the running jobs, oldest first."""
    finished: list[tuple[int, str, int]]
    """(age in whole minutes, state, jobs) of the jobs that finished within the hour; age -1: a host's clock
    ahead, MINUTES: older than the buckets."""
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


def _retrying(dialect: str) -> Any:
    """The 10 newest queued jobs that failed an attempt, from the small partial index ix_jobs_retrying. The
    condition is written with literals: SQLite matches a partial index's WHERE only against literals; and it
    is told to use that index (without statistics it would walk every queued job)."""
    order = "ORDER BY updated_at DESC, id DESC LIMIT 10"
    if dialect == "sqlite":
        sql = f"SELECT * FROM jobs INDEXED BY ix_jobs_retrying WHERE {RETRYING} {order}"
        return select(Job).from_statement(text(sql))
    return select(Job).where(text(RETRYING)).order_by(Job.updated_at.desc(), Job.id.desc()).limit(10)


def _by_minute(now: datetime) -> Select[Any]:
    """Jobs that finished in the last hour, counted per state and age in whole minutes, in the database: the
    dashboard reads ~30 rows however many jobs finish per hour."""
    age = case((Job.finished_at > now, -1),
               *[(Job.finished_at > now - timedelta(minutes=m + 1), m) for m in range(MINUTES)], else_=MINUTES)
    return (select(age, Job.state, func.count()).where(Job.finished_at >= now - timedelta(hours=1))
            .group_by(age, Job.state))


def overview(session: Session, now: datetime, totals: Totals, *, host_fresh: timedelta) -> Overview:
    """`totals`: `state_totals(engine)` (one index-only count the caller may share with the stats)."""
    counts: dict[tuple[str, str], int] = {}
    for rule, _variant, state, n, _seconds in totals:
        counts[(rule, str(state))] = counts.get((rule, str(state)), 0) + n
    # Duplicates drive the join (grouped in a subquery, SQLite looks each job up by id instead of scanning all).
    per_job = select(Duplicate.job_id, func.count().label("n")).group_by(Duplicate.job_id).subquery()
    duplicates = session.execute(select(Job.rule, func.sum(per_job.c.n)).select_from(per_job)
                                 .join(Job, Job.id == per_job.c.job_id).group_by(Job.rule)).all()
    running = session.execute(select(*RUNNING_COLUMNS).where(Job.state == JobState.RUNNING)
                              .order_by(Job.started_at, Job.id)).all()
    finished = session.execute(_by_minute(now)).all()
    failed = session.scalars(select(Job).where(Job.state == JobState.FAILED)
                             .order_by(Job.finished_at.desc(), Job.id.desc()).limit(10))
    retrying = session.scalars(_retrying(session.get_bind().dialect.name))
    paused = {p.rule: p.paused_at for p in session.scalars(select(InboxPause).order_by(InboxPause.rule))}
    return Overview(
        counts=[(rule, state, n) for (rule, state), n in counts.items()],
        duplicates=[(rule, int(n)) for rule, n in duplicates],
        running=list(running), finished=[(int(age), str(state), int(n)) for age, state, n in finished],
        failed=list(failed.all()), retrying=list(retrying.all()), paused=paused,
        hosts=live_hosts(session, host_fresh, now),
    )


def active_counts(session: Session) -> dict[tuple[str, str], int]:
    """(rule, state) → jobs, for the queued and running ones (the metrics gauges)."""
    rows = session.execute(select(Job.rule, Job.state, func.count())
                           .where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
                           .group_by(Job.rule, Job.state)).all()
    return {(rule, str(state)): int(n) for rule, state, n in rows}
