"""The daemon's per-file and start-up savings (issue 16) keep every guarantee they touch.

Single-statement fenced writes still fence a lost lease and still respect the state machine; `finish`
announces the archive plan in its own transaction; a paused inbox is skipped inside the claim; a daemon that
alone can use its SQLite file claims no sightings; a database at head is opened without Alembic.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retouchd.exceptions import LeaseLost, StoreError
from retouchd.store import JobState, Store, open_store
from retouchd.store.db import head_revision
from retouchd.store.reviews import Reviews

from conftest import job_fields

A = "h:100:aaaa:0:lease1"
B = "h:200:bbbb:0:lease2"




@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state' / 'db.sqlite'}")


def test_finish_announces_the_archive_plan_under_the_lease(store: Store) -> None:
    """The merged finish records DONE and the archive names in one commit and returns the row as it is now;
    under a lease that was taken over it raises LeaseLost and changes nothing."""
    job, _ = store.enqueue(**job_fields())
    assert store.claim(A, "h", "cpu", 60, ["r"]) is not None
    store.plan_output(job.id, A, output_path="/out/a.png", output_sha256="o", tmp="/w/a.tmp",
                      steps=[{"op": "upscale", "seconds": 0.25}])
    assert store.take_over(job.id, A, B, 60) is not None
    with pytest.raises(LeaseLost):
        store.finish(job.id, A, review=False, archive_path="/arch/a.png", sidecar_archive_path=None)
    row = store.get(job.id)
    assert row is not None and row.state == JobState.RUNNING and row.archive_path is None
    assert row.lease_owner == B and row.output_tmp == "/w/a.tmp" and row.device_seconds == 0.25
    done = store.finish(job.id, B, review=False, archive_path="/arch/a.png", sidecar_archive_path="/arch/a.mask.png")
    assert done.state == JobState.DONE and done.lease_owner == B and done.output_tmp is None
    assert (done.archive_path, done.sidecar_archive_path) == ("/arch/a.png", "/arch/a.mask.png")
    row = store.get(job.id)
    assert row is not None and row.state == JobState.DONE and row.archive_path == "/arch/a.png"
    assert row.finished_at is not None and row.output_path == "/out/a.png"


def test_fenced_writes_keep_the_state_machine(store: Store) -> None:
    """A holder cannot finish twice or archive a job that is not finished: an illegal change, not a lost lease."""
    job, _ = store.enqueue(**job_fields())
    store.claim(A, "h", "cpu", 60, ["r"])
    with pytest.raises(StoreError, match="illegal state change"):
        store.archived(job.id, A)
    store.finish(job.id, A, review=False)
    with pytest.raises(StoreError, match="illegal state change"):
        store.finish(job.id, A, review=False)
    with pytest.raises(StoreError, match="does not exist"):
        store.heartbeat(job.id + 99, A, 60)


def test_an_original_left_in_place_keeps_no_archive_path(store: Store) -> None:
    job, _ = store.enqueue(**job_fields())
    store.claim(A, "h", "cpu", 60, ["r"])
    store.finish(job.id, A, review=False, archive_path="/arch/a.png", sidecar_archive_path=None)
    store.archived(job.id, A, moved=False)
    row = store.get(job.id)
    assert row is not None and row.state == JobState.ARCHIVED and row.archive_path is None
    assert row.lease_owner is None and row.archived_at is not None


def test_a_paused_inbox_is_skipped_inside_the_claim(store: Store) -> None:
    """The claim itself reads the pauses: a job of a paused inbox is not started, the next one is."""
    paused, _ = store.enqueue(**job_fields(rule="p", content_key="p"))
    other, _ = store.enqueue(**job_fields(content_key="o"))
    Reviews(store).pause("p")
    job = store.claim(A, "h", "cpu", 60, ["p", "r"])
    assert job is not None and job.id == other.id and job.attempts == 1 and job.state == JobState.RUNNING
    assert store.claim(B, "h", "cpu", 60, ["p", "r"]) is None
    Reviews(store).resume("p")
    again = store.claim(B, "h", "cpu", 60, ["p", "r"])
    assert again is not None and again.id == paused.id and again.lease_owner == B


def test_the_head_is_read_from_the_scripts_as_alembic_reads_it() -> None:
    from alembic.script import ScriptDirectory

    from retouchd.store.db import MIGRATIONS

    assert [head_revision()] == list(ScriptDirectory(str(MIGRATIONS)).get_heads())


def test_a_database_at_head_opens_without_alembic(tmp_path: Path) -> None:
    """A new database is created at the head without Alembic, and later starts recognise the head and never
    import it; a database from an older revision is still upgraded by Alembic."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    probe = ("import sys; from retouchd.store import open_store; open_store(sys.argv[1]); "
             "print('alembic' in sys.modules)")
    first = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True)
    assert (first.stdout.strip(), second.stdout.strip()) == ("False", "False")
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:  # any table at all: not new, so Alembic's first revision runs (and fails)
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
    upgraded = subprocess.run([sys.executable, "-c", probe, f"sqlite:///{old}"], capture_output=True, text=True,
                              check=False)
    assert upgraded.returncode != 0 and "table jobs already exists" in upgraded.stderr


def _schema(path: Path) -> dict[str, Any]:
    """Every table's columns, indexes (with their columns) and foreign keys, and the DDL, as SQLite has them."""
    with sqlite3.connect(path) as conn:
        out: dict[str, Any] = {}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            columns = sorted(row[1:] for row in conn.execute(f"PRAGMA table_info('{table}')"))
            indexes = sorted((row[1], row[2], row[3], [i[2] for i in conn.execute(f"PRAGMA index_info('{row[1]}')")])
                             for row in conn.execute(f"PRAGMA index_list('{table}')"))
            keys = sorted(row[2:] for row in conn.execute(f"PRAGMA foreign_key_list('{table}')"))
            out[table] = (columns, indexes, keys)
        out["ddl"] = sorted("".join((sql or "").split()) for (sql,) in conn.execute("SELECT sql FROM sqlite_master"))
        return out


def test_a_new_database_gets_exactly_the_migrations_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema made without Alembic for a new database is the one the migrations make, table by table."""
    from retouchd.store import db

    open_store(f"sqlite:///{tmp_path / 'fresh.sqlite'}").engine.dispose()
    monkeypatch.setattr(db, "_create_fresh", lambda engine: False)
    open_store(f"sqlite:///{tmp_path / 'migrated.sqlite'}").engine.dispose()
    fresh, migrated = _schema(tmp_path / "fresh.sqlite"), _schema(tmp_path / "migrated.sqlite")
    assert "jobs" in fresh and "reviews" in fresh and "alembic_version" in fresh
    assert fresh == migrated


def _wired(root: Path, **settings: Any) -> Any:
    from retouchd.daemon import Daemon
    from retouchd.instancelock import sqlite_file
    from retouchd.rules import load_rules
    from retouchd.settings import load_settings

    d = Daemon(load_settings(root=root, env=False, **settings), load_rules())
    d.settings.state.mkdir(parents=True, exist_ok=True)
    d.store = open_store(d.settings.db_url)
    d._db_file = sqlite_file(d.store.engine)
    d._wire(load_rules())
    d.store.engine.dispose()
    return d


def test_only_a_database_others_may_share_gets_sighting_claims(root: Path, tmp_path: Path) -> None:
    """SQLite in the locked state folder: this daemon alone can use it, a sighting claim (one write per
    file) decides nothing. A SQLite file elsewhere may be shared: claims stay."""
    assert _wired(root).intake.claim_sightings is False
    shared = _wired(root, database_url=f"sqlite:///{tmp_path / 'shared' / 'db.sqlite'}")
    assert shared.intake.claim_sightings is True


def test_an_idle_poll_takes_no_write_lock(store: Store) -> None:
    """A slot whose last claim found a job claims straight away (the queue is busy); once a claim finds
    nothing, its polls only read until a job is there again (SQLite's write lock stays free)."""
    from sqlalchemy import event

    writes: list[int] = []

    @event.listens_for(store.engine, "begin")
    def _count(conn: Any) -> None:
        if not conn.get_execution_options().get("retouchd_read_only", False):
            writes.append(1)

    store.enqueue(**job_fields())

    def claim(owner: str) -> tuple[bool, int]:
        before = len(writes)
        return store.claim(owner, "h", "cpu", 60, ["r"]) is not None, len(writes) - before

    assert [claim(A), claim(B), claim(B), claim(B)] == [(True, 1), (False, 1), (False, 0), (False, 0)]
    store.enqueue(**job_fields(content_key="k2"))
    assert claim(B) == (True, 1)


def test_queued_at_finds_the_files_open_job(store: Store) -> None:
    job, _ = store.enqueue(**job_fields())
    found = store.queued_at("r", "/in/a.png")
    assert found is not None and found.id == job.id and found.sha256 == "k" and found.state == JobState.QUEUED
    assert store.queued_at("r", "/in/other.png") is None and store.queued_at("x", "/in/a.png") is None
    store.claim(A, "h", "cpu", 60, ["r"])
    running = store.queued_at("r", "/in/a.png")
    assert running is not None and running.state == JobState.RUNNING
    store.finish(job.id, A, review=False)
    assert store.queued_at("r", "/in/a.png") is None


def _one_file(store: Store, n: int, lease: str, exclude: tuple[int, ...] = ()) -> Any:
    """One file's store calls from intake to archived; returns the job as claimed."""
    source = f"/in/{n}.png"
    assert store.queued_at("r", source) is None
    store.enqueue(**job_fields(content_key=f"k{n}", sha256=f"k{n}", source_path=source, rel_path=f"{n}.png"))
    job = store.claim(lease, "h", "cpu", 60, ["r"], exclude=exclude)
    assert job is not None and store.queued_at("r", source) is not None
    store.heartbeat(job.id, lease, 60, step="upscale", progress=0.5)
    store.plan_output(job.id, lease, output_path=f"/out/{n}.png", output_sha256="o", tmp=f"/w/{n}.tmp",
                      steps=[{"op": "upscale", "seconds": 0.5}])
    store.finish(job.id, lease, review=False, archive_path=f"/arch/{n}.png", sidecar_archive_path=None)
    store.archived(job.id, lease)
    return job


def test_per_file_statements_are_built_once_and_keep_their_meaning(store: Store, monkeypatch: Any) -> None:
    """The per-file statements are built on first use and reused (building one cost about as much as
    running it): a second file builds none. Their values still pass through the column types (the path map,
    UTC datetimes, JSON) and the claim still skips excluded ids and keeps its order."""
    from retouchd.store import fenced
    from retouchd.store.schema import set_path_map

    first = _one_file(store, 0, A)
    built = dict(fenced._BUILT)
    made: list[str] = []
    for name in ("select", "update", "insert", "bindparam"):
        real = getattr(fenced, name)
        monkeypatch.setattr(fenced, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    second = _one_file(store, 1, B)
    assert made == [] and built == fenced._BUILT
    assert second.id == first.id + 1 and second.attempts == 1 and second.lease_owner == B
    row = store.get(second.id)
    assert row is not None and row.state == JobState.ARCHIVED and row.lease_owner is None
    assert row.archive_path == "/arch/1.png" and row.steps == [{"op": "upscale", "seconds": 0.5}]
    assert row.device_seconds == 0.5 and row.current_step is None and row.progress == 0.5
    assert row.finished_at is not None and row.finished_at.tzinfo is not None
    # The claim skips excluded ids (a shape of its own) and takes the oldest other job.
    monkeypatch.undo()
    for n in (2, 3):
        store.enqueue(**job_fields(content_key=f"k{n}", sha256=f"k{n}", source_path=f"/in/{n}.png",
                                   rel_path=f"{n}.png"))
    picked = store.claim("h:1:x:0:l3", "h", "cpu", 60, ["r"], exclude=[first.id + 2])
    assert picked is not None and picked.id == first.id + 3
    # Paths go through the path map on the way in and out (the typed bind parameters).
    try:
        set_path_map({"/canonical": "/in"})
        store.enqueue(**job_fields(content_key="k9", sha256="k9", source_path="/in/9.png", rel_path="9.png"))
        with store.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT source_path FROM jobs WHERE content_key = 'k9'").scalar()
        assert stored == "/canonical/9.png"
        found = store.queued_at("r", "/in/9.png")
        assert found is not None and found.source_path == "/in/9.png"
    finally:
        set_path_map({})


def test_a_stopped_worker_exits_cleanly_at_once() -> None:
    """`stop` ends an idle worker with exit code 0 (it leaves without the interpreter's teardown), not by
    the kill that follows a worker that does not exit."""
    from retouchd.worker import Worker

    worker = Worker("cpu", "json", "warning")
    worker.start()
    proc = worker._proc
    worker.stop(timeout=60)
    assert proc is not None and proc.exitcode == 0 and worker.pid is None


def test_sqlite_loads_no_postgresql_dialect_and_postgresql_keeps_the_partial_index(tmp_path: Path) -> None:
    """A SQLite daemon never imports SQLAlchemy's PostgreSQL dialect (the partial index's PostgreSQL WHERE is
    given only when a PostgreSQL engine is made), and on PostgreSQL that index is still partial."""
    probe = ("import sys; import retouchd.daemon; from retouchd.store import open_store; "
             "open_store(sys.argv[1]).engine.dispose(); print(sorted(m for m in sys.modules if 'postgres' in m))")
    out = subprocess.run([sys.executable, "-c", probe, f"sqlite:///{tmp_path / 'db.sqlite'}"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
    pg = ("from sqlalchemy.schema import CreateIndex; from retouchd.store.db import make_engine; "
          "from retouchd.store.review_schema import RETRYING_INDEX; "
          "engine = make_engine('postgresql+psycopg://u@127.0.0.1:1/none'); "
          "print(CreateIndex(RETRYING_INDEX).compile(dialect=engine.dialect))")
    ddl = subprocess.run([sys.executable, "-c", pg], capture_output=True, text=True, check=True).stdout
    assert "ON jobs (updated_at, id) WHERE state = 'queued' AND error IS NOT NULL" in " ".join(ddl.split())


def test_jobs_returned_by_the_fenced_writes_hold_the_rows_values(store: Store) -> None:
    """enqueue, claim and finish hand back Jobs built from their RETURNING rows: every column as the database
    has it (as the ORM reads it), in no session, and still an ordinary Job to change or add."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import Session

    from retouchd.store.schema import Job

    columns = [c.key for c in Job.__table__.columns]
    queued, _ = store.enqueue(**job_fields())
    claimed = store.claim(A, "h", "cpu", 60, ["r"])
    done = store.finish(queued.id, A, review=False, archive_path="/arch/a.png", sidecar_archive_path=None)
    for returned, state in ((queued, JobState.QUEUED), (claimed, JobState.RUNNING), (done, JobState.DONE)):
        assert returned is not None and returned.state == state and inspect(returned).transient
    row = store.get(queued.id)
    assert row is not None and {c: getattr(done, c) for c in columns} == {c: getattr(row, c) for c in columns}
    assert done.finished_at is not None and done.lease_owner == A and claimed is not None and claimed.attempts == 1
    done.steps = [{"op": "upscale", "seconds": 2.0}]  # the attribute events still run on a later change
    assert done.device_seconds == 2.0
    done.id, done.content_key = None, "k2"
    with Session(store.engine) as s, s.begin():
        s.add(done)
    copy = store.find("r", "k2")
    assert copy is not None and copy.archive_path == "/arch/a.png" and copy.device_seconds == 2.0


def test_a_kept_connection_is_reused_and_still_fenced(store: Store) -> None:
    """Inside `keeping()` a thread's fenced writes share one pool checkout, closed when the block ends; a lease
    taken over on another connection meanwhile is seen by the next write on the kept one (LeaseLost, nothing
    changed), and the kept connection goes on working after that rolled-back transaction."""
    from sqlalchemy import event

    from retouchd.store.fenced import keeping

    checkouts: list[object] = []
    event.listen(store.engine.pool, "checkout", lambda *args: checkouts.append(args[0]))
    first, _ = store.enqueue(**job_fields())
    second, _ = store.enqueue(**job_fields(content_key="k2", source_path="/in/b.png", rel_path="b.png"))
    checkouts.clear()
    with keeping():
        assert store.claim(A, "h", "cpu", 60, ["r"]) is not None
        store.plan_output(first.id, A, output_path="/out/a.png", output_sha256="o", tmp="/w/a.tmp", steps=[])
        assert len(checkouts) == 2  # the claim's look (a read) and the kept one
        assert store.take_over(first.id, A, B, 60) is not None  # an ORM session: a connection of its own
        with pytest.raises(LeaseLost):
            store.finish(first.id, A, review=False)
        assert store.claim(A, "h", "cpu", 60, ["r"]) is not None and store.finish(second.id, A, review=False)
        store.archived(second.id, A)
        assert len(checkouts) == 3 and store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    lost, done = store.get(first.id), store.get(second.id)
    assert lost is not None and lost.state == JobState.RUNNING and lost.lease_owner == B and lost.finished_at is None
    assert done is not None and done.state == JobState.ARCHIVED and done.lease_owner is None
    checkouts.clear()
    store.heartbeat(first.id, B, 60)
    store.heartbeat(first.id, B, 60)
    assert len(checkouts) == 2  # outside the block: a checkout per transaction, as before


def test_kept_writes_run_on_the_dbapi_connection_with_the_same_values_and_errors(store: Store, tmp_path: Path) -> None:
    """Inside `keeping()` on SQLite the per-file statements skip SQLAlchemy's transaction (no begin event
    fires) and leave the rows exactly as outside it (path map, UTC datetimes, JSON, excluded ids); a locked
    database is still SQLAlchemy's OperationalError, a taken content key still finds the existing job, a lost
    lease still changes nothing, and the kept connection goes on working after each."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    from retouchd.store import fenced
    from retouchd.store.schema import set_path_map

    columns = [c.key for c in fenced.JOBS.columns if c.key not in ("id", "created_at", "updated_at", "started_at",
                                                                   "finished_at", "archived_at", "lease_expires")]
    begins: list[int] = []
    event.listen(store.engine, "begin", lambda conn: begins.append(1))
    try:
        set_path_map({"/canonical": "/in"})
        outside = _one_file(store, 0, A)
        begins.clear()
        with fenced.keeping():
            inside = _one_file(store, 1, B)
            assert begins == []  # every write and the queued_at reads went past SQLAlchemy's transaction
            again, created = store.enqueue(**job_fields(content_key="k1", sha256="k1", source_path="/in/1.png"))
            assert not created and again.id == inside.id
            store.enqueue(**job_fields(content_key="k2", sha256="k2", source_path="/in/2.png", rel_path="2.png"))
            store.enqueue(**job_fields(content_key="k3", sha256="k3", source_path="/in/3.png", rel_path="3.png"))
            picked = store.claim("h:1:x:0:l3", "h", "cpu", 60, ["r"], exclude=[inside.id + 1])
            assert picked is not None and picked.id == inside.id + 2 and picked.source_path == "/in/3.png"
            with pytest.raises(LeaseLost):
                store.finish(picked.id, A, review=False)
            blocker = sqlite3.connect(tmp_path / "state" / "db.sqlite", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            fenced._KEPT.conns[store.engine].connection.driver_connection.execute("PRAGMA busy_timeout = 50")
            with pytest.raises(OperationalError):
                store.heartbeat(picked.id, "h:1:x:0:l3", 60, step="upscale")
            blocker.execute("ROLLBACK")
            blocker.close()
            store.heartbeat(picked.id, "h:1:x:0:l3", 60, step="upscale", progress=0.25)
        with store.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT source_path FROM jobs WHERE id = ?", (inside.id,)).scalar()
    finally:
        set_path_map({})
    assert stored == "/canonical/1.png"
    first, second, third = store.get(outside.id), store.get(inside.id), store.get(picked.id)
    assert first is not None and second is not None and third is not None
    differ = {c for c in columns if getattr(first, c) != getattr(second, c)}
    assert differ == {"content_key", "sha256", "source_path", "rel_path", "output_path", "archive_path"}
    assert second.finished_at is not None and second.finished_at.tzinfo is not None
    assert second.steps == [{"op": "upscale", "seconds": 0.5}]
    assert third.state == JobState.RUNNING and third.current_step == "upscale" and third.progress == 0.25
