"""The slot's per-file store writes on SQLite (claim, plan_output, finish, archived), in CPU ms per file:
as the daemon runs them (`kept`: on the slot thread's kept connection, store.fenced.keeping, whose
statements run on its DBAPI connection: store/rawsqlite.py; `core`: through SQLAlchemy Core with a pool
checkout per transaction, as outside it), and (`dbapi`) with the same
statements executed on the DBAPI cursor of the same connection inside the same `engine.begin()` transaction
(BEGIN IMMEDIATE … COMMIT), the bind and result processors applied by hand: a measurement only, the daemon
does not use it.

    python bench/store_writes.py [--files 300] [--repeat 3]

Modes alternate per round on fresh databases; reported: min and median per write over the rounds. Also the
floor: the same UPDATE three times per file in plain sqlite3, without SQLAlchemy at all.
Prints a table, then one JSON object. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retouchd.store import Job, fenced, open_store
from retouchd.store.jobs import Store

WRITES = ("claim", "plan_output", "finish", "archived")
OWNER = "bench:1:abc"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Prepared:
    """One statement compiled for the dialect: its SQL, the order and processors of its parameters, and the
    result processors of its RETURNING columns."""

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        processors = compiled._bind_processors
        self.order = [(name, compiled.binds[name].required, compiled.binds[name].value, processors.get(name))
                      for name in compiled.positiontup]
        columns = [entry[2][0] for entry in compiled._result_columns]
        self.keys = [entry[0] for entry in compiled._result_columns]
        self.result = [column.type._cached_result_processor(dialect, None) for column in columns]


_PREPARED: dict[int, Prepared] = {}


def dbapi_fenced(conn: Any, job_id: int, owner: str, values: dict[str, Any], *, to: Any = None,
                 returning: bool = False) -> Any:
    """fenced.fenced with the statement run on the DBAPI cursor of `conn` (SQLite's qmark style only)."""
    stmt = fenced._update_statement(tuple(sorted(values)), to, returning)
    prepared = _PREPARED.get(id(stmt))
    if prepared is None:
        prepared = _PREPARED[id(stmt)] = Prepared(stmt, conn.dialect)
    params = {"w_id": job_id, "w_owner": owner, **fenced._values(values)}
    args = []
    for name, required, fixed, process in prepared.order:
        value = params[name] if required else fixed
        args.append(process(value) if process is not None and value is not None else value)
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(prepared.sql, args)
    if returning:
        row = cursor.fetchone()
        if row is None:
            raise fenced._lost(conn, job_id, owner, to)
        return Job(**{key: process(value) if process else value
                      for key, value, process in zip(prepared.keys, row, prepared.result, strict=True)})
    if cursor.rowcount != 1:
        raise fenced._lost(conn, job_id, owner, to)
    return None


def one_file(store: Store, index: int, spent: dict[str, float]) -> None:
    calls: list[tuple[str, Callable[[], Any]]] = []
    job: Any = None

    def claim() -> None:
        nonlocal job
        job = fenced.claim(store.engine, OWNER, "host", "cpu", 60, ["r"])

    calls.append(("claim", claim))
    calls.append(("plan_output", lambda: fenced.plan_output(
        store.engine, job.id, OWNER, output_path=f"/out/r/a{index}.png", output_sha256="1" * 64,
        tmp=f"/out/r/.a{index}.tmp", steps=[{"op": "upscale", "seconds": 0.01, "metrics": {"scale": 2}}],
        lease_seconds=60)))
    calls.append(("finish", lambda: fenced.finish(store.engine, job.id, OWNER, lease_seconds=60,
                                                  archive_path=f"/archive/r/a{index}.png", sidecar_archive_path=None)))
    calls.append(("archived", lambda: fenced.archived(store.engine, job.id, OWNER, moved=True)))
    for name, call in calls:
        start = cpu()
        call()
        spent[name] += cpu() - start


def run_mode(mode: str, files: int) -> dict[str, float]:
    original = fenced.fenced
    if mode == "dbapi":
        fenced.fenced = dbapi_fenced
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(f"sqlite:///{tmp}/bench.db")
            for i in range(files):
                store.enqueue(rule="r", content_key=f"k{i}", sha256="0" * 64, source_path=f"/in/r/a{i}.png",
                              rel_path=f"a{i}.png", sidecar_path=None, size=100, mtime=1.0, max_attempts=3)
            spent = dict.fromkeys(WRITES, 0.0)
            with fenced.keeping() if mode == "kept" else contextlib.nullcontext():
                for i in range(files):
                    one_file(store, i, spent)
            with store.read() as session:
                last = session.get(Job, files)
                assert last is not None and last.state == "archived" and last.output_path == f"/out/r/a{files - 1}.png"
            store.engine.dispose()
    finally:
        fenced.fenced = original
    return {name: 1000 * seconds / files for name, seconds in spent.items()}


def floor(files: int) -> float:
    """CPU ms per file of three BEGIN IMMEDIATE / UPDATE / COMMIT in plain sqlite3."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT, lease_owner TEXT, output_path TEXT, "
                     "steps TEXT, lease_expires TEXT)")
        conn.executemany("INSERT INTO jobs (state, lease_owner) VALUES ('running', ?)", [(OWNER,)] * files)
        start = cpu()
        for job_id in range(1, files + 1):
            for _ in range(3):
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.execute(
                    "UPDATE jobs SET output_path = ?, steps = ?, lease_expires = ? WHERE id = ? AND lease_owner = ? "
                    "AND state IN ('running', 'done')",
                    (f"/out/{job_id}", json.dumps([{"op": "upscale"}]), "2026-01-01 00:00:00.000000", job_id, OWNER))
                assert cursor.rowcount == 1
                conn.execute("COMMIT")
        spent = cpu() - start
        conn.close()
    return 1000 * spent / files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"kept": [], "core": [], "dbapi": []}
    floors = []
    for _ in range(args.repeat):
        for mode, rounds in results.items():
            rounds.append(run_mode(mode, args.files))
        floors.append(floor(args.files))
    rows = {}
    for mode, rounds in results.items():
        row = {}
        for name in (*WRITES, "total"):
            values = sorted(sum(r.values()) if name == "total" else r[name] for r in rounds)
            row[name] = (round(values[0], 3), round(values[len(values) // 2], 3))
        rows[mode] = row
    print(f"{args.files} files × {args.repeat} rounds on SQLite; CPU ms per file, min / median")
    print(f"{'mode':>6} " + " ".join(f"{name:>13}" for name in (*WRITES, "total")))
    for mode, row in rows.items():
        print(f"{mode:>6} " + " ".join(f"{lo:>6.3f}/{mid:<6.3f}" for lo, mid in row.values()))
    floors.sort()
    print(f"floor (plain sqlite3, 3 write transactions per file): {floors[0]:.3f} ms")
    print(json.dumps({"benchmark": "store_writes", "files": args.files, "rounds": args.repeat,
                      "ms_per_file": {mode: {k: {"min": v[0], "median": v[1]} for k, v in row.items()}
                                      for mode, row in rows.items()},
                      "floor_ms_per_file": round(floors[0], 3)}))


if __name__ == "__main__":
    main()
