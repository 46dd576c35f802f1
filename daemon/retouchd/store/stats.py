"""Reject rates and cost per approved image, per rule and per experiment variant (`/api/stats`, `report`).

- done: results produced (jobs that reached done, review or archived);
- rejected: results a person rejected; pending: results waiting in the review queue;
- approved: results that stand — approved in review, or published to the outbox and not rejected;
- reject_rate = rejected / (approved + rejected);
- device_seconds: time spent in steps by every attempt of every job (failed ones included: they cost too);
  per image = / done, per approved image = / approved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from retouchd.store.review_schema import Review
from retouchd.store.schema import Job, UTCDateTime
from retouchd.store.states import JobState

COMPLETED = (JobState.DONE, JobState.REVIEW, JobState.ARCHIVED)
Key = tuple[str, str | None]

_SECONDS_SQL = {
    "sqlite": "SELECT jobs.rule, jobs.variant, SUM(CAST(json_extract(e.value, '$.seconds') AS REAL)) "
              "FROM jobs, json_each(jobs.steps) AS e WHERE jobs.steps IS NOT NULL {since} "
              "GROUP BY jobs.rule, jobs.variant",
    "postgresql": "SELECT jobs.rule, jobs.variant, SUM(CAST(e ->> 'seconds' AS DOUBLE PRECISION)) "
                  "FROM jobs, json_array_elements(jobs.steps) AS e WHERE jobs.steps IS NOT NULL {since} "
                  "GROUP BY jobs.rule, jobs.variant",
}


def _device_seconds(s: Session, engine: Engine, since: datetime | None) -> dict[Key, float]:
    sql = _SECONDS_SQL.get(engine.dialect.name)
    if sql is not None:
        where = "AND jobs.updated_at >= :since" if since is not None else ""
        statement = text(sql.format(since=where))
        if since is not None:
            statement = statement.bindparams(bindparam("since", since, type_=UTCDateTime()))
        rows = s.execute(statement).all()
        return {(rule, variant): float(total or 0.0) for rule, variant, total in rows}
    totals: dict[Key, float] = {}  # any other database: add up in Python
    query = select(Job.rule, Job.variant, Job.steps).where(Job.steps.is_not(None))
    if since is not None:
        query = query.where(Job.updated_at >= since)
    for rule, variant, steps in s.execute(query):
        totals[(rule, variant)] = totals.get((rule, variant), 0.0) + sum(float(r.get("seconds") or 0) for r in steps)
    return totals


def _row(rule: str, variant: str | None, c: dict[str, float]) -> dict[str, Any]:
    done, rejected, pending = int(c.get("done", 0)), int(c.get("rejected", 0)), int(c.get("pending", 0))
    approved = max(0, done - rejected - pending)
    seconds = float(c.get("seconds", 0.0))
    return {
        "rule": rule, "variant": variant, "done": done, "approved": approved,
        "approved_in_review": int(c.get("approved_in_review", 0)), "rejected": rejected, "pending_review": pending,
        "failed": int(c.get("failed", 0)),
        "reject_rate": rejected / (approved + rejected) if approved + rejected else None,
        "device_seconds": round(seconds, 3),
        "device_seconds_per_image": seconds / done if done else None,
        "device_seconds_per_approved": seconds / approved if approved else None,
    }


def review_stats(engine: Engine, *, since: datetime | None = None) -> dict[str, Any]:
    """{"rules": [...], "variants": [...]}: one row per rule, one per (rule, variant) that ran variants."""
    counts: dict[Key, dict[str, float]] = {}

    def add(key: Key, name: str, n: float) -> None:
        counts.setdefault(key, {})[name] = counts.get(key, {}).get(name, 0) + n

    with Session(engine) as s:
        query = select(Job.rule, Job.variant, Job.state, func.count()).group_by(Job.rule, Job.variant, Job.state)
        if since is not None:
            query = query.where(Job.updated_at >= since)
        for rule, variant, state, n in s.execute(query):
            if state in COMPLETED:
                add((rule, variant), "done", n)
            elif state == JobState.FAILED:
                add((rule, variant), "failed", n)
        query = (select(Job.rule, Job.variant, Review.verdict, func.count()).join(Review, Review.job_id == Job.id)
                 .group_by(Job.rule, Job.variant, Review.verdict))
        if since is not None:
            query = query.where(Job.updated_at >= since)
        for rule, variant, verdict, n in s.execute(query):
            name = {"approved": "approved_in_review", "rejected": "rejected", "pending": "pending"}[verdict]
            add((rule, variant), name, n)
        for key, seconds in _device_seconds(s, engine, since).items():
            add(key, "seconds", seconds)
    per_rule: dict[str, dict[str, float]] = {}
    for (rule, _variant), c in counts.items():
        for name, value in c.items():
            per_rule.setdefault(rule, {})[name] = per_rule.get(rule, {}).get(name, 0.0) + value
    return {
        "rules": [_row(rule, None, c) for rule, c in sorted(per_rule.items())],
        "variants": [_row(rule, variant, c) for (rule, variant), c in sorted(counts.items(), key=lambda kv: (
            kv[0][0], kv[0][1] or "")) if variant is not None],
    }
