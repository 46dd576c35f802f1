"""Several hosts, one PostgreSQL database (issue 7): real server, real daemon processes, no mocks.

The server comes from $RETOUCHD_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test); each test
creates and drops its own database.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from retouchd.store import JobState, Store, open_store
from retouchd.store.schema import Base

from conftest import DaemonProcess, cli, files_under, kill_hard, save_image, sha256, wait_for

SERVER = os.environ.get("RETOUCHD_TEST_POSTGRES_URL")
_OPENED: list[Store] = []


def _open(url: str) -> Store:
    store = open_store(url)
    _OPENED.append(store)
    return store
pytestmark = [
    pytest.mark.skipif(not SERVER, reason="set RETOUCHD_TEST_POSTGRES_URL to a PostgreSQL server to run"),
]


@pytest.fixture
def pg_url() -> Iterator[str]:
    assert SERVER is not None
    server = make_url(SERVER).set(drivername="postgresql+psycopg")
    name = f"retouchd_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    while _OPENED:
        _OPENED.pop().engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _jobs(url: str) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM jobs ORDER BY id"))]
    finally:
        engine.dispose()


def _fields(key: str) -> dict:
    return {"rule": "r", "content_key": key, "sha256": key, "source_path": f"/in/{key}", "rel_path": key,
            "sidecar_path": None, "size": 1, "mtime": 1.0, "max_attempts": 3}


def test_migrations_on_postgres(pg_url: str) -> None:
    """The Alembic migrations build exactly the ORM schema on PostgreSQL too."""
    store = _open(pg_url)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    _open(pg_url)  # a second upgrade is a no-op


def test_same_content_seen_by_two_hosts_is_one_job(pg_url: str) -> None:
    """Two hosts inserting the same (rule, sha256) at once create one job: the database decides."""
    stores = [_open(pg_url), _open(pg_url)]
    results: list[tuple[int, bool]] = []

    def add(store: Store) -> None:
        for i in range(50):
            job, created = store.enqueue(**_fields(f"k{i}"))
            results.append((job.id, created))

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for _, created in results if created) == 50
    assert len({job_id for job_id, _ in results}) == 50


def test_skip_locked_claims_never_overlap(pg_url: str) -> None:
    """Concurrent claimers on separate connections never get the same job."""
    store = _open(pg_url)
    for i in range(60):
        store.enqueue(**_fields(f"c{i}"))
    claimed: list[int] = []
    lock = threading.Lock()

    mines = [_open(pg_url) for _ in range(4)]  # alembic's upgrade is not thread-safe: migrate first

    def claim(n: int) -> None:
        mine = mines[n]
        while (job := mine.claim(f"h{n}:1:x:0", f"h{n}", "cpu", 60, ["r"])) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60


def _start(root: Path, url: str, host: str, **env: str) -> DaemonProcess:
    return DaemonProcess(root, [], {"RETOUCHD_DATABASE_URL": url, "RETOUCHD_HOST_ID": host,
                                    "RETOUCHD_WORKERS__LEASE_SECONDS": "5", **env})


def _drop(inbox: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256(save_image(inbox / name, 32, 24, seed=zlib.crc32(name.encode()))) for name in names}


def _all_done_once(root: Path, url: str, hashes: dict[str, str]) -> list[dict]:
    jobs = _jobs(url)
    assert sorted(j["rel_path"] for j in jobs) == sorted(hashes)
    assert {j["state"] for j in jobs} == {JobState.ARCHIVED}
    outputs = files_under(root / "outbox")
    assert sorted(p.name for p in outputs) == sorted(hashes), "an output is missing or was written twice"
    archived = files_under(root / "archive")
    assert sorted(sha256(p) for p in archived) == sorted(hashes.values())
    assert files_under(root / "inbox" / "upscale") == []
    return jobs


@pytest.mark.slow
def test_three_daemons_share_300_files(root: Path, pg_url: str) -> None:
    """Three daemons on one root and one database: every file processed exactly once, each did work."""
    _open(pg_url)
    daemons = [_start(root, pg_url, f"host{n}") for n in range(3)]
    try:
        hashes = _drop(root / "inbox" / "upscale", [f"f{i:03d}.png" for i in range(300)])
        wait_for(lambda: sum(1 for j in _jobs(pg_url) if j["state"] == "archived") == 300, timeout=300,
                 interval=1.0)
        status = json.loads(cli("status", "--json", "--root", str(root), "--database-url", pg_url).stdout)
        assert sorted(h["host"] for h in status["hosts"]) == ["host0", "host1", "host2"]
        assert all(h["slots"] == ["cpu"] for h in status["hosts"])
    finally:
        codes = [d.stop() for d in daemons]
    assert codes == [0, 0, 0]
    jobs = _all_done_once(root, pg_url, hashes)
    assert {j["attempts"] for j in jobs} == {1}
    assert {j["host"] for j in jobs} == {"host0", "host1", "host2"}


@pytest.mark.slow
def test_kill_9_one_host_mid_job(root: Path, pg_url: str) -> None:
    """A host killed mid-job: after its lease expires another host takes the job (the attempt counted);
    nothing is lost or doubled."""
    _open(pg_url)
    inbox = root / "inbox" / "upscale"
    doomed = _start(root, pg_url, "doomed", RETOUCHD_FAULT_POINT="hang-after-step-upscale")
    hashes = _drop(inbox, ["victim.png"])
    wait_for(lambda: any(j["state"] == "running" for j in _jobs(pg_url)))
    others = [_start(root, pg_url, f"host{n}") for n in range(2)]
    try:
        hashes |= _drop(inbox, [f"g{i:02d}.png" for i in range(40)])
        time.sleep(1)
        kill_hard(doomed)
        wait_for(lambda: sum(1 for j in _jobs(pg_url) if j["state"] == "archived") == 41, timeout=120,
                 interval=0.5)
    finally:
        codes = [d.stop() for d in others]
    assert codes == [0, 0]
    jobs = {j["rel_path"]: j for j in _all_done_once(root, pg_url, hashes)}
    assert jobs["victim.png"]["attempts"] == 2 and jobs["victim.png"]["host"] in ("host0", "host1")


@pytest.mark.slow
def test_connections_dropped_during_a_run(root: Path, pg_url: str) -> None:
    """Every backend connection is terminated several times while two hosts work: nothing lost or doubled."""
    _open(pg_url)
    daemons = [_start(root, pg_url, f"host{n}") for n in range(2)]
    name = make_url(pg_url).database
    admin = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        hashes = _drop(root / "inbox" / "upscale", [f"d{i:03d}.png" for i in range(120)])
        for _ in range(4):
            time.sleep(1.5)
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": name})
        wait_for(lambda: sum(1 for j in _jobs(pg_url) if j["state"] == "archived") == 120, timeout=240,
                 interval=1.0)
    finally:
        codes = [d.stop() for d in daemons]
        admin.dispose()
    assert codes == [0, 0]
    _all_done_once(root, pg_url, hashes)


def test_five_processes_migrate_a_new_database_at_once(pg_url: str) -> None:
    """Five processes that open a brand-new database at the same instant all succeed: migrations are
    serialised by an advisory lock, and the later ones find the schema at head."""
    import subprocess
    import sys

    start = time.time() + 4.0
    script = ("import sys, time; from retouchd.store import open_store; time.sleep(max(0, float(sys.argv[2]) - "
              "time.time())); open_store(sys.argv[1]).engine.dispose()")
    procs = [subprocess.Popen([sys.executable, "-c", script, pg_url, str(start)], stderr=subprocess.PIPE, text=True)
             for _ in range(5)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, [err[-500:] for err in errors]
    store = _open(pg_url)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_two_live_daemons_with_one_host_id_are_refused(tmp_path: Path, pg_url: str) -> None:
    """A second daemon that calls itself by a live daemon's host_id (another state folder, as on another
    machine) stops at start-up with one line."""
    _open(pg_url)
    first_root, second_root = tmp_path / "one", tmp_path / "two"
    first = _start(first_root, pg_url, "twin")
    try:
        result = cli("run", "--root", str(second_root), env={"RETOUCHD_DATABASE_URL": pg_url,
                                                             "RETOUCHD_HOST_ID": "twin"}, timeout=90)
        assert result.returncode == 3, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines() if line.startswith("retouchd:")]
        assert len(lines) == 1 and "host_id 'twin' is running" in lines[0]
        assert first.proc.poll() is None
    finally:
        assert first.stop() == 0


def test_paused_host_abandons_the_job_another_host_took_over(root: Path, pg_url: str) -> None:
    """A host paused (SIGSTOP) mid-job past its lease: another host takes the job over and finishes it; the
    paused host, resumed, finds its lease lost and abandons the job — its finished temp output is removed,
    nothing is published twice, nothing goes to failed/."""
    import signal

    _open(pg_url)
    paused = _start(root, pg_url, "paused")
    hashes = {"p.png": sha256(save_image(root / "inbox" / "upscale" / "p.png", 320, 240))}
    wait_for(lambda: any(j["state"] == "running" for j in _jobs(pg_url)), interval=0.05)
    os.kill(paused.proc.pid, signal.SIGSTOP)
    other = None
    try:
        other = _start(root, pg_url, "other")
        wait_for(lambda: [j["state"] for j in _jobs(pg_url)] == ["archived"], timeout=120, interval=0.5)
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    try:
        wait_for(lambda: any(line.get("event", "").startswith("lease lost") for line in paused.log_lines()),
                 timeout=60)
    finally:
        codes = [paused.stop()] + ([other.stop()] if other else [])
    assert codes == [0, 0]
    (job,) = _all_done_once(root, pg_url, hashes)
    assert job["host"] == "other"
    assert files_under(root / "failed") == []
    assert list((root / "state" / "work").glob("*")) == [], "the paused host left its temp output behind"
