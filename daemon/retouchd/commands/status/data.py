"""What `retouchd status` shows, as plain data: the database (from any shell or host) merged with the
status files of the daemons that run on this state folder (device memory, tiles done, settling files)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from retouchd.statusfile import read_statuses
from retouchd.store import Job, JobState, utcnow
from retouchd.store.overview import MINUTES, overview
from retouchd.store.states import printable
from retouchd.store.stats import Totals, state_totals

HOST_FRESH = timedelta(seconds=30)
"""A host that has not written its heartbeat row for this long is not listed as running."""
COMPLETED = (JobState.DONE, JobState.REVIEW, JobState.ARCHIVED)


def _failure(job: Job) -> dict[str, Any]:
    return {"id": job.id, "rule": job.rule, "path": printable(job.rel_path), "error": job.error,
            "step": job.error_step, "at": job.finished_at, "attempt": job.attempts}


def reader(url: str) -> Engine:
    """An engine that only looks. The store's SQLite transactions start IMMEDIATE (they take the write lock);
    this one's reads run without a transaction of their own, so a status view that refreshes every few
    seconds never makes the daemon's writes wait (WAL readers do not block writers)."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url, pool_pre_ping=True, pool_size=1)


def query_jobs(engine: Engine, now: datetime, totals: Totals | None = None) -> dict[str, Any]:
    """Everything from the database; `totals`: `state_totals(engine)` when the caller has it already."""
    if totals is None:
        totals = state_totals(engine)
    with Session(engine) as s:
        rows = overview(s, now, totals, host_fresh=HOST_FRESH)
    running = rows.running
    queue: dict[str, dict[str, int]] = {}
    for rule, state, n in rows.counts:
        queue.setdefault(rule, {})[state] = n
    per_minute, failed_per_minute = [0] * MINUTES, [0] * MINUTES
    last5 = last_hour = failed_last_hour = 0
    for age, state, n in rows.finished:  # age: whole minutes (-1: a host's clock ahead, MINUTES: older)
        if state in COMPLETED:
            last_hour += n
            last5 += n if age < 5 else 0
            if 0 <= age < MINUTES:
                per_minute[MINUTES - 1 - age] += n
        elif state == JobState.FAILED:
            failed_last_hour += n
            if 0 <= age < MINUTES:
                failed_per_minute[MINUTES - 1 - age] += n
    return {
        "queue": queue,
        "duplicates": dict(rows.duplicates),
        "running": [
            {"id": j.id, "rule": j.rule, "path": printable(j.rel_path), "step": j.current_step,
             "progress": j.progress, "device": j.device, "host": j.host, "attempt": j.attempts,
             "seconds": (now - j.started_at).total_seconds() if j.started_at else None, "done": None, "total": None}
            for j in running
        ],
        "throughput": {
            "last_5_min": last5, "last_hour": last_hour, "per_minute_5": last5 / 5,
            "failed_last_hour": failed_last_hour, "minutes": MINUTES,
            "per_minute": per_minute, "failed_per_minute": failed_per_minute,
        },
        "recent_failures": [_failure(j) for j in rows.failed],
        "hosts": [
            {"host": h.host, "pid": h.pid, "version": h.version, "slots": list(h.slots), "started_at": h.started_at,
             "seen_at": h.seen_at, "working_on": [j.id for j in running if j.host == h.host]}
            for h in rows.hosts
        ],
        "retrying": [{**_failure(j), "not_before": j.not_before} for j in rows.retrying],
        "paused_inboxes": rows.paused,
    }


def _merge_live(running: list[dict[str, Any]], daemons: list[dict[str, Any]]) -> None:
    """Tiles done / total and the current step come from the daemon's slots: fresher than the lease heartbeat."""
    slots = {s["job_id"]: s for d in daemons if d["running"] for s in d.get("slots", []) if s.get("job_id")}
    for job in running:
        slot = slots.get(job["id"])
        if slot is None:
            continue
        job["step"] = slot.get("step") or job["step"]
        job["done"], job["total"] = slot.get("done"), slot.get("total")
        if job["done"] is not None and job["total"]:
            job["progress"] = job["done"] / job["total"]


def devices_of(daemons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The devices of every running daemon, each with its host and how many of its slots are busy."""
    rows = []
    for d in daemons:
        if not d["running"]:
            continue
        for device in d.get("devices", []):
            busy = sum(1 for s in d.get("slots", []) if s.get("device") == device["device"] and s.get("job_id"))
            rows.append({**device, "host": d.get("host"), "busy": busy})
    return rows


def status_data(engine: Engine, state_dir: Path | None = None, totals: Totals | None = None) -> dict[str, Any]:
    now = utcnow()
    data: dict[str, Any] = {"time": now, **query_jobs(engine, now, totals)}
    daemons = read_statuses(state_dir, time.time()) if state_dir is not None else []
    _merge_live(data["running"], daemons)
    data["daemons"] = daemons
    data["devices"] = devices_of(daemons)
    return data
