"""The job store: state machine, once-per-content uniqueness, claiming, SQLite set-up, migrations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from retouchd.exceptions import StoreError
from retouchd.store import JobState, Store, open_store
from retouchd.store.schema import Base, Job
from retouchd.store.states import TRANSITIONS, transition

from conftest import job_fields


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state' / 'db.sqlite'}")


def test_transitions_map_is_enforced() -> None:
    """Every transition outside the map raises; allowed ones stamp attempts and times."""
    for old in JobState:
        for new in JobState:
            job = Job(id=1, state=old, attempts=0)
            if new in TRANSITIONS[old]:
                transition(job, new)
                assert job.state == new and job.updated_at is not None
            else:
                with pytest.raises(StoreError, match="illegal state change"):
                    transition(job, new)
    job = Job(id=2, state=JobState.QUEUED, attempts=0)
    transition(job, JobState.RUNNING)
    assert job.attempts == 1 and job.started_at is not None


def test_once_per_content(store: Store) -> None:
    """The same (rule, sha256) gives the same job; another rule gets its own."""
    first, created = store.enqueue(**job_fields())
    again, created_again = store.enqueue(**job_fields(source_path="/in/b.png", rel_path="b.png"))
    other, created_other = store.enqueue(**job_fields(rule="s"))
    assert created and not created_again and again.id == first.id and again.source_path == "/in/a.png"
    assert created_other and other.id != first.id


def test_refuse_records_once_and_never_takes_over_a_job(store: Store) -> None:
    """A refused entry is one running job with a lease, recorded once: the same entry again gives that job and
    False; a refusal whose key is already a queued job's gives the queued job, unchanged."""
    job, created = store.refuse(**job_fields(content_key="refused:1", max_attempts=1, lease_owner="h:refuse:1"))
    assert created and job.state == JobState.RUNNING and job.attempts == 1 and job.lease_expires is not None
    again, created_again = store.refuse(**job_fields(content_key="refused:1", source_path="/in/b.png",
                                                  lease_owner="h:refuse:2"))
    assert not created_again and again.id == job.id and again.lease_owner == "h:refuse:1"
    queued, _ = store.enqueue(**job_fields(content_key="q"))
    clash, created_clash = store.refuse(**job_fields(content_key="q", lease_owner="h:refuse:3"))
    assert not created_clash and clash.id == queued.id and clash.state == JobState.QUEUED
    assert clash.lease_owner is None
    assert store.count_by_state() == {"running": 1, "queued": 1}


def test_claim_lease_and_owner(store: Store) -> None:
    """A claim takes the oldest queued job once; only the lease owner may finish it."""
    a, _ = store.enqueue(**job_fields(content_key="a"))
    b, _ = store.enqueue(**job_fields(content_key="b"))
    got = store.claim("h:1:x:0", "h", "cpu", 60, ["r"])
    assert got is not None and got.id == a.id and got.state == JobState.RUNNING and got.attempts == 1
    assert store.claim("h:1:x:1", "h", "cpu", 60, ["r"]).id == b.id  # type: ignore[union-attr]
    assert store.claim("h:1:x:2", "h", "cpu", 60, ["r"]) is None
    with pytest.raises(StoreError, match="lease held by"):
        store.finish(a.id, "someone-else", review=False)
    store.requeue(a.id, "h:1:x:0", error="disk full", delay=3600)
    assert store.claim("h:1:x:0", "h", "cpu", 60, ["r"]) is None  # backoff not over
    assert store.get(a.id).error == "disk full"  # type: ignore[union-attr]


def test_sqlite_wal_and_busy_timeout(store: Store) -> None:
    """SQLite runs in WAL mode with a busy timeout."""
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_migrations_match_models(store: Store) -> None:
    """Alembic's head schema is exactly the ORM schema (no drift)."""
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _old_value(column: Any, table: str, i: int) -> Any:
    """A value for `column` of row `i`, valid for the head schema's type (so the store can read it back)."""
    from datetime import UTC, datetime

    from sqlalchemy import JSON, BigInteger, Float, Integer

    from retouchd.store.schema import UTCDateTime

    if column.name == "job_id" or (table == "jobs" and column.name == "id"):
        return i
    if table == "jobs" and column.name == "state":
        return ["queued", "running", "done", "review", "archived", "failed"][i - 1]
    if table == "jobs" and column.name == "steps":
        return [{"op": "upscale", "seconds": 0.5 * i}]
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return datetime(2026, 11, i, 12, i, tzinfo=UTC)
    if isinstance(kind, JSON):
        return [f"cpu{i}"]
    if isinstance(kind, BigInteger):
        return 10**10 + i
    if isinstance(kind, Integer):
        return i
    if isinstance(kind, Float):
        return i + 0.25
    return f"{table}.{column.name} {i} caf\u00e9"


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0005", "0006"])
def test_migrate_keeps_rows(tmp_path: Path, revision: str) -> None:
    """A database left at an older revision, with rows in every table it has, upgrades to head with every
    row and every value intact, and the store reads its jobs."""
    from alembic import command
    from sqlalchemy import MetaData, select

    from retouchd.store.db import alembic_config, make_engine

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    old = MetaData()
    old.reflect(engine)
    tables = [t for t in Base.metadata.sorted_tables if t.name in old.tables]
    assert {t.name for t in tables} == set(old.tables) - {"alembic_version"}
    with engine.begin() as conn:
        for table in tables:
            present = [c for c in table.c if c.name in old.tables[table.name].c]
            count = 1 if table.name == "inbox_pauses" else 6
            rows = [{c.name: _old_value(c, table.name, i) for c in present} for i in range(1, count + 1)]
            conn.execute(table.insert(), rows)
    with engine.connect() as conn:
        before = {name: conn.execute(select(t).order_by(*t.primary_key.columns)).all()
                  for name, t in old.tables.items() if name != "alembic_version"}
    engine.dispose()

    store = open_store(url)
    assert store.count_by_state() == dict.fromkeys(["queued", "running", "done", "review", "archived", "failed"], 1)
    assert store.get(1) is not None and store.get(1).source_path == "jobs.source_path 1 caf\u00e9"
    with store.engine.connect() as conn:
        for name, rows in before.items():
            table = old.tables[name]
            after = conn.execute(select(*table.c).order_by(*table.primary_key.columns)).all()
            assert after == rows, name


@pytest.mark.parametrize("name", ["plain.jpg", "new\nline.jpg", "back\\slash.jpg", "caf\u00e9.png",
                                  os.fsdecode(b"bad\xffbyte.png"), "\uf8ffb64:looks-like-the-marker.png"])
def test_any_linux_file_name_round_trips(store: Store, name: str) -> None:
    """Paths with newlines, backslashes or invalid UTF-8 bytes are stored and read back exactly."""
    key = os.fsencode(name).hex()[:100]
    job, _ = store.enqueue(**job_fields(source_path=f"/in/{name}", rel_path=name, content_key=key))
    again = store.get(job.id)
    assert again is not None and again.source_path == f"/in/{name}" and again.rel_path == name


def test_reads_and_idle_claims_do_not_wait_for_the_write_lock(store: Store, tmp_path: Path) -> None:
    """While another connection holds SQLite's write lock, counts, history and an idle claim poll answer at
    once (they begin deferred, not IMMEDIATE); a real write still waits for the lock."""
    import sqlite3
    import time

    store.enqueue(**job_fields(content_key="a", rule="other"))
    conn = sqlite3.connect(tmp_path / "state" / "db.sqlite", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert store.count_by_state() == {"queued": 1}
        assert store.count_claimable(["r"]) == 0
        assert store.claim("h:1:x:0:t", "h", "cpu", 60, ["r"]) is None
        assert len(store.history()) == 1
        assert time.monotonic() - started < 5
    finally:
        conn.execute("COMMIT")
        conn.close()
