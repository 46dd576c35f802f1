"""The dashboard's data (`/api/status`, `retouchd status`) at scale: the right numbers from queries that read
indexes, never a sort or scan of every job (except the one index-only scan that counts them)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, insert, make_url, text
from starlette.testclient import TestClient

from retouchd.commands.status.data import MINUTES, reader, status_data
from retouchd.store import Duplicate, Job, JobState, open_store, utcnow
from retouchd.web.app import create_app

from tests_support.webjobs import Farm


def _rows(now: Any) -> list[dict[str, Any]]:
    """(rule, state, finished minutes ago, error, updated minutes ago) → job rows."""
    spec = [
        ("shop", JobState.ARCHIVED, 0.5, None, 0.5),
        ("shop", JobState.ARCHIVED, 1.5, None, 1.5),
        ("shop", JobState.DONE, 10.5, None, 10.5),
        ("scans", JobState.ARCHIVED, 45, None, 45),  # in the last hour, older than the 30 buckets
        ("scans", JobState.ARCHIVED, 120, None, 120),  # older than an hour
        ("scans", JobState.FAILED, 3.5, "not an image", 3.5),
        ("shop", JobState.FAILED, 200, "truncated", 200),
        ("shop", JobState.QUEUED, None, "worker died", 2),  # retrying
        ("scans", JobState.QUEUED, None, "worker died", 1),  # retrying, newer
        ("scans", JobState.QUEUED, None, None, 0),
    ]
    rows = []
    for i, (rule, state, finished, error, updated) in enumerate(spec, start=1):
        rows.append({"id": i, "rule": rule, "content_key": f"k{i}", "sha256": f"{i:064x}", "source_path": f"/in/{i}",
                     "rel_path": f"{i}.jpg", "size": 1, "mtime": 0.0, "state": state, "attempts": 1,
                     "created_at": now - timedelta(hours=5), "updated_at": now - timedelta(minutes=updated),
                     "finished_at": None if finished is None else now - timedelta(minutes=finished), "error": error,
                     "device_seconds": 1.0})
    return rows


SERVER = os.environ.get("RETOUCHD_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite, and PostgreSQL (a database of its own) when RETOUCHD_TEST_POSTGRES_URL names a server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    if not SERVER:
        pytest.skip("set RETOUCHD_TEST_POSTGRES_URL to a PostgreSQL server to run")
    server = make_url(SERVER).set(drivername="postgresql+psycopg")
    name = f"retouchd_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_status_numbers(db_url: str) -> None:
    """Queue per rule and state, duplicates per rule, throughput per minute, the newest failures and retries
    (the same SQL on SQLite and PostgreSQL)."""
    store = open_store(db_url)
    with store.session() as s:
        s.execute(insert(Job), _rows(utcnow()))
        s.execute(insert(Duplicate), [{"job_id": job, "source_path": f"/in/d{i}", "archive_path": f"/a/d{i}",
                                       "created_at": utcnow()} for i, job in enumerate([1, 1, 4])])
    engine = reader(store.engine.url.render_as_string(hide_password=False))
    data = status_data(engine)
    engine.dispose()
    store.engine.dispose()
    assert data["queue"] == {"shop": {"archived": 2, "done": 1, "failed": 1, "queued": 1},
                             "scans": {"archived": 2, "failed": 1, "queued": 2}}
    assert data["duplicates"] == {"shop": 2, "scans": 1}
    t = data["throughput"]
    assert (t["last_5_min"], t["last_hour"], t["failed_last_hour"]) == (2, 4, 1)
    expected = [0] * MINUTES
    expected[-1] = expected[-2] = expected[-11] = 1
    assert t["per_minute"] == expected
    assert t["failed_per_minute"] == [1 if i == MINUTES - 4 else 0 for i in range(MINUTES)]
    assert [f["id"] for f in data["recent_failures"]] == [6, 7]
    assert [r["id"] for r in data["retrying"]] == [9, 8]


def test_status_queries_read_indexes(tmp_path: Path) -> None:
    """Every query behind `/api/status` (SQLite's plan): no sort of all jobs for a top 10, no scan of the job
    table; the only full pass is over the covering index that counts jobs per rule, variant and state."""
    farm = Farm(tmp_path / "root")
    with farm.store.session() as s:
        s.execute(insert(Job), _rows(utcnow()))
    app = create_app(farm.settings, farm.rules, farm.store, farm.folders)
    statements: list[tuple[str, Any]] = []

    @event.listens_for(app.state.web.engine, "before_cursor_execute")
    def _seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    assert TestClient(app, base_url="http://127.0.0.1").get("/api/status").status_code == 200
    event.remove(app.state.web.engine, "before_cursor_execute", _seen)
    assert len(statements) >= 6
    full_passes = []
    with app.state.web.engine.connect() as conn:
        for statement, parameters in statements:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            sorts = any("TEMP B-TREE FOR ORDER BY" in step for step in plan)
            # Jobs in flight are sorted by start: as many as the hosts have slots, whatever the history.
            assert not sorts or JobState.RUNNING in (parameters or ()), (statement, plan)
            full_passes += [step for step in plan if step.startswith("SCAN") and "jobs" in step.split()[:2]]
    # ix_jobs_retrying is partial: it holds only the queued jobs that failed an attempt.
    assert sorted(full_passes) == ["SCAN jobs USING COVERING INDEX ix_jobs_rule_variant_state",
                                   "SCAN jobs USING INDEX ix_jobs_retrying"]


def test_pages_show_local_time_to_the_second(tmp_path: Path, monkeypatch: Any) -> None:
    """The database keeps UTC; the job page and history show the server's local time, without microseconds."""
    farm = Farm(tmp_path / "root")
    job = farm.finished("shop", "a.jpg")
    with farm.store.session() as s:
        row = s.get(Job, job.id)
        row.created_at = row.updated_at = datetime(2026, 12, 2, 23, 30, 15, 123456, tzinfo=UTC)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        client = TestClient(create_app(farm.settings, farm.rules, farm.store, farm.folders),
                            base_url="http://127.0.0.1")
        assert "2026-12-03 08:30:15<" in client.get(f"/jobs/{job.id}").text
        assert "2026-12-03 08:30:15<" in client.get("/history").text
        assert "123456" not in client.get(f"/jobs/{job.id}").text
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
