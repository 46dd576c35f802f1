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

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from retouchd.store.review_schema import Review
from retouchd.store.schema import Job
from retouchd.store.states import JobState

COMPLETED = (JobState.DONE, JobState.REVIEW, JobState.ARCHIVED)
Key = tuple[str, str | None]


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


Totals = list[tuple[str, str | None, str, int, float]]
"""(rule, variant, state, jobs, device-seconds) for every group that has jobs."""


def state_totals(engine: Engine, *, since: datetime | None = None) -> Totals:
    """Jobs and device-seconds per rule, variant and state: one index-only scan (ix_jobs_rule_variant_state).
    The dashboard takes its queue counts and its stats from the same scan, so it is done once per refresh."""
    query = (select(Job.rule, Job.variant, Job.state, func.count(), func.sum(Job.device_seconds))
             .group_by(Job.rule, Job.variant, Job.state))
    if since is not None:
        query = query.where(Job.updated_at >= since)
    with Session(engine) as s:
        return [(rule, variant, str(state), int(n), float(seconds or 0.0))
                for rule, variant, state, n, seconds in s.execute(query)]


def review_stats(engine: Engine, *, since: datetime | None = None, totals: Totals | None = None) -> dict[str, Any]:
    """{"rules": [...], "variants": [...]}: one row per rule, one per (rule, variant) that ran variants.
    `totals`: the result of `state_totals` (same `since`) when the caller has it already."""
    counts: dict[Key, dict[str, float]] = {}

    def add(key: Key, name: str, n: float) -> None:
        counts.setdefault(key, {})[name] = counts.get(key, {}).get(name, 0) + n

    for rule, variant, state, n, seconds in state_totals(engine, since=since) if totals is None else totals:
        add((rule, variant), "seconds", seconds)
        if state in COMPLETED:
            add((rule, variant), "done", n)
        elif state == JobState.FAILED:
            add((rule, variant), "failed", n)
    # The reviews drive (a result a person looked at is rare among jobs): each review looks its job up by id.
    # A join would let SQLite scan every job for a review, and PostgreSQL merge-join along every job id.
    rule_of = select(Job.rule).where(Job.id == Review.job_id).scalar_subquery()
    variant_of = select(Job.variant).where(Job.id == Review.job_id).scalar_subquery()
    reviewed = select(rule_of.label("rule"), variant_of.label("variant"), Review.verdict.label("verdict"))
    if since is not None:
        reviewed = reviewed.where(Review.job_id.in_(select(Job.id).where(Job.updated_at >= since)))
    per = reviewed.subquery()
    verdicts = select(per.c.rule, per.c.variant, per.c.verdict, func.count()).group_by(per.c.rule, per.c.variant,
                                                                                      per.c.verdict)
    with Session(engine) as s:
        for rule, variant, verdict, n in s.execute(verdicts):
            name = {"approved": "approved_in_review", "rejected": "rejected", "pending": "pending"}[verdict]
            add((rule, variant), name, n)
    per_rule: dict[str, dict[str, float]] = {}
    for (rule, _variant), c in counts.items():
        for name, value in c.items():
            per_rule.setdefault(rule, {})[name] = per_rule.get(rule, {}).get(name, 0.0) + value
    return {
        "rules": [_row(rule, None, c) for rule, c in sorted(per_rule.items())],
        "variants": [_row(rule, variant, c) for (rule, variant), c in sorted(counts.items(), key=lambda kv: (
            kv[0][0], kv[0][1] or "")) if variant is not None],
    }
