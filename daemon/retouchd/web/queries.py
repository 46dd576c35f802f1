"""Read-only queries of the web interface, on an engine that never takes SQLite's write lock."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from retouchd.store import Job, JobState, Review
from retouchd.store.review_schema import InboxPause
from retouchd.store.states import printable

MAX_LIMIT = 500


def device_seconds(job: Job) -> float:
    return round(sum(float(r.get("seconds") or 0) for r in job.steps or []), 3)


def summary(job: Job, review: Review | None) -> dict[str, Any]:
    return {
        "id": job.id, "rule": job.rule, "state": job.state, "rel_path": printable(job.rel_path),
        "variant": job.variant, "review": review.verdict if review else None, "attempts": job.attempts,
        "error": job.error, "error_step": job.error_step, "step": job.current_step, "progress": job.progress,
        "device_seconds": device_seconds(job), "updated_at": job.updated_at, "finished_at": job.finished_at,
        "has_output": bool(job.output_path), "has_original": bool(job.archive_path),
    }


def list_jobs(engine: Engine, *, state: str | None = None, rule: str | None = None, review: str | None = None,
              search: str | None = None, before: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; `before` (a job id) pages on; `review` = pending | approved | rejected."""
    limit = max(1, min(limit, MAX_LIMIT))
    if review:  # the verdict index yields the job ids newest first: no sort of every matching job
        query = (select(Job, Review).join(Review, Review.job_id == Job.id).where(Review.verdict == review)
                 .order_by(Review.job_id.desc()).limit(limit))
    else:
        query = select(Job, Review).outerjoin(Review, Review.job_id == Job.id).order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state.in_(state.split(",")))
    if rule:
        query = query.where(Job.rule == rule)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Job.rel_path.like(f"%{escaped}%", escape="\\"))
    if before is not None:
        query = query.where((Review.job_id if review else Job.id) < before)
    with Session(engine) as s:
        return [summary(job, rev) for job, rev in s.execute(query).all()]


def job_detail(engine: Engine, job_id: int) -> dict[str, Any] | None:
    with Session(engine) as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        review = s.get(Review, job_id)
    data = summary(job, review)
    data.update({
        "sha256": job.sha256, "size": job.size, "device": job.device, "host": job.host, "steps": job.steps or [],
        "output_name": Path(job.output_path).name if job.output_path else None, "error_step": job.error_step,
        "created_at": job.created_at, "started_at": job.started_at, "archived_at": job.archived_at,
        "reason": review.reason if review else None, "decided_at": review.decided_at if review else None,
        "has_mask": bool(job.sidecar_archive_path),
        "before": f"/jobs/{job.id}/before", "after": f"/jobs/{job.id}/after",
    })
    return data


def paths_of(engine: Engine, job_id: int) -> tuple[str | None, str | None, str | None] | None:
    """(original, output, mask) of a job, as the database has them; None for an unknown id."""
    with Session(engine) as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        original = job.archive_path
        if original is None and job.state in (JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.REVIEW):
            original = job.source_path  # not archived yet: the original is still in its inbox
        if job.state == JobState.FAILED:
            original = job.failed_path
        return original, job.output_path, job.sidecar_archive_path


def inboxes(engine: Engine, rules: list[str], queued: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Each rule's inbox: paused or not, and its queued jobs (`queued`: counted already by the caller)."""
    with Session(engine) as s:
        paused: dict[str, datetime] = {p.rule: p.paused_at for p in s.scalars(select(InboxPause))}
        counts = queued if queued is not None else dict(
            s.execute(select(Job.rule, func.count()).where(Job.state == JobState.QUEUED, Job.rule.in_(rules))
                      .group_by(Job.rule)).all())
    return [{"rule": r, "paused": r in paused, "paused_at": paused.get(r), "queued": int(counts.get(r, 0))}
            for r in rules]
