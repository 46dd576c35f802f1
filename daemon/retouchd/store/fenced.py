"""The per-file hot path of the store in single SQL statements (SQLAlchemy Core, not the ORM's unit of work).

Every write here is one `UPDATE … WHERE id = :id AND lease_owner = :lease AND state IN (…)`: the row's
lease is checked and the row changed in the same statement, under the transaction's write lock (SQLite's
BEGIN IMMEDIATE; on PostgreSQL the UPDATE locks the row and re-checks the WHERE after any wait). A holder
that lost its lease changes nothing and gets LeaseLost, exactly as with `Store._owned` (SPEC §6.9); the
state machine's rule (states.TRANSITIONS) is the `state IN (…)` of each statement. A commit costs ~0.4 ms
of CPU this way against ~1.3 ms through the ORM (select, lock, flush): four of them per file.

Each statement is built once per shape (which columns it sets, which state it moves to) with bind
parameters, and kept: SQLAlchemy then finds its compiled form by a cache key memoized on the statement
object, where a statement built per call (~50 expression objects, their cache key generated afresh) cost
about as much again as running it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, literal, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import configure_mappers

from retouchd.exceptions import LeaseLost, StoreError
from retouchd.store.rawsqlite import Raw
from retouchd.store.review_schema import InboxPause, step_seconds
from retouchd.store.schema import Job
from retouchd.store.states import LEASED, TRANSITIONS, JobState, utcnow

JOBS: Table = Job.__table__  # type: ignore[assignment]
_KEPT = threading.local()
"""Per thread, inside `keeping()`: its kept connection per SQLite engine."""
_BUILT: dict[tuple[Any, ...], Any] = {}
"""Statements by shape (see the module's docstring); every value travels as a bind parameter."""


@contextlib.contextmanager
def keeping() -> Iterator[None]:
    """Within this block the calling thread's write transactions on a SQLite engine run on one connection kept
    for the thread (opened at its first write, closed when the block ends), not on a pool checkout, reset and
    check-in each (~0.1 ms of a transaction's ~0.5; five per file). Each transaction still begins IMMEDIATE
    and commits, or rolls back, on its own; between them the connection holds no transaction and no lock.
    PostgreSQL keeps its pool's checkout: its pre-ping is what survives a restarted server."""
    kept: dict[Engine, Connection] = {}
    outer = getattr(_KEPT, "conns", None)
    _KEPT.conns = kept
    try:
        yield
    finally:
        _KEPT.conns = outer
        for conn in kept.values():
            with contextlib.suppress(Exception):
                conn.close()


def _kept(engine: Engine) -> Raw | None:
    """This thread's kept SQLite connection inside `keeping()` (opened on first use), else None."""
    kept: dict[Engine, Connection] | None = getattr(_KEPT, "conns", None)
    if kept is None or engine.dialect.name != "sqlite":
        return None
    conn = kept.pop(engine, None)
    if conn is not None and (conn.closed or conn.invalidated):
        with contextlib.suppress(Exception):
            conn.close()
        conn = None
    if conn is None:
        conn = engine.connect()
    kept[engine] = conn
    return Raw(conn)


@contextlib.contextmanager
def _writing(engine: Engine) -> Iterator[Any]:
    """A write transaction: on this thread's kept connection inside `keeping()` (SQLite, run on its DBAPI
    connection: store.rawsqlite), else as `engine.begin()`. Both `execute(statement, params)`."""
    raw = _kept(engine)
    if raw is None:
        with engine.begin() as fresh:
            yield fresh
        return
    with raw.transaction():
        yield raw


def _job(row: Any) -> Job:
    """A Job (transient, in no session) holding `row`'s values, built as the ORM builds a loaded object: its
    values go straight into the instance's dict. `Job(**values)` ran the attribute events of each of its ~40
    columns (~0.1 ms, three rows per file); the values are the same, and so is what a flush would insert."""
    configure_mappers()  # as the first Job() would (a check of one flag after that)
    job: Job = _NEW_JOB()
    job.__dict__.update(row._mapping)
    return job


_NEW_JOB = Job._sa_class_manager.new_instance  # type: ignore[attr-defined]


def _param(column: str) -> Any:
    """The bind parameter for a value of `column`, typed like it (path maps, UTC datetimes, JSON)."""
    return bindparam(f"v_{column}", type_=JOBS.c[column].type)


def _state_in(states: Iterable[JobState | str]) -> Any:
    """`state IN (…)` with the states as fixed parameters: an expanding list would be re-rendered into the
    SQL at every execution (~12 % of a statement's CPU)."""
    return JOBS.c.state.in_([literal(str(state), JOBS.c.state.type) for state in states])


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{column}": value for column, value in values.items()}


def _update_statement(columns: tuple[str, ...], to: JobState | None, returning: bool) -> Any:
    shape = ("fenced", columns, to, returning)
    stmt = _BUILT.get(shape)
    if stmt is None:
        states = sorted(LEASED if to is None else [s for s in LEASED if to in TRANSITIONS[s]])
        stmt = (update(JOBS).where(JOBS.c.id == bindparam("w_id"), JOBS.c.lease_owner == bindparam("w_owner"),
                                   _state_in(states))
                .values({column: _param(column) for column in columns}))
        if returning:
            stmt = stmt.returning(*JOBS.c)
        _BUILT[shape] = stmt
    return stmt


def _lost(conn: Any, job_id: int, owner: str | None, to: JobState | None) -> StoreError:
    """Why a fenced update changed no row: gone, held by another lease, or an illegal state change."""
    query = _BUILT.get(("holder",))
    if query is None:
        query = _BUILT[("holder",)] = select(JOBS.c.lease_owner, JOBS.c.state).where(JOBS.c.id == bindparam("w_id"))
    row = conn.execute(query, {"w_id": job_id}).first()
    if row is None:
        return StoreError(f"job {job_id} does not exist")
    held, state = row
    if to is not None and held == owner and state in LEASED:
        return StoreError(f"job {job_id}: illegal state change {state} → {to}")
    return LeaseLost(f"job {job_id}: lease held by {held!r} ({state}), not {owner!r}")


def fenced(conn: Any, job_id: int, owner: str, values: dict[str, Any], *,
           to: JobState | None = None, returning: bool = False) -> Any:
    """Change the job under the lease `owner` (moving it to state `to` if given); LeaseLost if that lease no
    longer holds it. With `returning`, the row as it now is (a detached Job)."""
    stmt = _update_statement(tuple(sorted(values)), to, returning)
    params = {"w_id": job_id, "w_owner": owner, **_values(values)}
    if returning:
        row = conn.execute(stmt, params).first()
        if row is None:
            raise _lost(conn, job_id, owner, to)
        return _job(row)
    if conn.execute(stmt, params).rowcount != 1:
        raise _lost(conn, job_id, owner, to)
    return None


def plan_output(engine: Engine, job_id: int, owner: str, *, output_path: str, output_sha256: str, tmp: str,
                steps: list[dict[str, Any]], lease_seconds: float) -> None:
    with _writing(engine) as conn:
        fenced(conn, job_id, owner, {
            "output_path": output_path, "output_sha256": output_sha256, "output_tmp": tmp, "steps": steps,
            "device_seconds": step_seconds(steps), "lease_expires": utcnow() + timedelta(seconds=lease_seconds)})


def finish(engine: Engine, job_id: int, owner: str, *, lease_seconds: float, archive_path: str | None,
           sidecar_archive_path: str | None) -> Job:
    """RUNNING → DONE (a review goes through the ORM: it adds its review row), with the archive plan."""
    now = utcnow()
    values: dict[str, Any] = {"state": JobState.DONE.value, "updated_at": now, "finished_at": now,
                              "current_step": None, "output_tmp": None,
                              "lease_expires": now + timedelta(seconds=lease_seconds)}
    if archive_path is not None:
        values.update(archive_path=archive_path, sidecar_archive_path=sidecar_archive_path)
    with _writing(engine) as conn:
        job: Job = fenced(conn, job_id, owner, values, to=JobState.DONE, returning=True)
    return job


def archived(engine: Engine, job_id: int, owner: str, *, moved: bool) -> None:
    now = utcnow()
    values: dict[str, Any] = {"state": JobState.ARCHIVED.value, "updated_at": now, "archived_at": now,
                              "lease_owner": None, "lease_expires": None}
    if not moved:
        values.update(archive_path=None, sidecar_archive_path=None)
    with _writing(engine) as conn:
        fenced(conn, job_id, owner, values, to=JobState.ARCHIVED)


def heartbeat(engine: Engine, job_id: int, owner: str, lease_seconds: float, *, step: str | None,
              progress: float | None) -> None:
    values: dict[str, Any] = {"lease_expires": utcnow() + timedelta(seconds=lease_seconds)}
    if step is not None:
        values["current_step"] = step
    if progress is not None:
        values["progress"] = progress
    with _writing(engine) as conn:
        fenced(conn, job_id, owner, values)


def claimable_filter(now: Any, states: list[JobState], rules: Any, *, skip_paused: bool = False) -> list[Any]:
    """Jobs in `states` of `rules` whose backoff is over; `skip_paused`: not those of an inbox a person
    paused (read in the same statement, so that a pause holds from the moment it is recorded). `now` and
    `rules` may be values or bind parameters."""
    where = [_state_in(states),
             (JOBS.c.not_before.is_(None)) | (JOBS.c.not_before <= now)]
    if rules is not None:
        where.append(JOBS.c.rule.in_(rules))
    if skip_paused:
        where.append(JOBS.c.rule.not_in(select(InboxPause.rule)))
    return where


def _now() -> Any:
    return bindparam("now", type_=JOBS.c.not_before.type)


def _rules() -> Any:
    return bindparam("rules", expanding=True)


def count_claimable(reader: Engine, rules: list[str] | None, *, queued_only: bool, skip_paused: bool = False) -> int:
    """`reader`: the engine with retouchd_read_only set (never SQLite's write lock)."""
    shape = ("count", rules is None, queued_only, skip_paused)
    stmt = _BUILT.get(shape)
    if stmt is None:
        states = [JobState.QUEUED] if queued_only else [JobState.QUEUED, JobState.RUNNING]
        where = claimable_filter(_now(), states, None if rules is None else _rules(), skip_paused=skip_paused)
        stmt = _BUILT[shape] = select(func.count()).select_from(JOBS).where(*where)
    params: dict[str, Any] = {"now": utcnow()}
    if rules is not None:
        params["rules"] = list(rules)
    with reader.begin() as conn:
        return int(conn.execute(stmt, params).scalar() or 0)


def _claim_statements(exclude: bool) -> tuple[Any, Any]:
    shape = ("claim", exclude)
    built = _BUILT.get(shape)
    if built is None:
        where = claimable_filter(_now(), [JobState.QUEUED], _rules(), skip_paused=True)
        if exclude:
            where.append(JOBS.c.id.not_in(bindparam("exclude", expanding=True)))
        pick = select(JOBS.c.id).where(*where).order_by(JOBS.c.id).limit(1).with_for_update(skip_locked=True)
        take = (update(JOBS).where(JOBS.c.id == bindparam("w_id"), JOBS.c.state == JobState.QUEUED.value)
                .values(state=JobState.RUNNING.value, attempts=JOBS.c.attempts + 1, not_before=None,
                        **{column: _param(column) for column in ("updated_at", "started_at", "lease_owner", "host",
                                                                 "device", "lease_expires")})
                .returning(*JOBS.c))
        built = _BUILT[shape] = (pick, take)
    return built


def claim(engine: Engine, owner: str, host: str, device: str, lease_seconds: float, rules: list[str],
          exclude: list[int] | None = None) -> Job | None:
    """QUEUED → RUNNING for the oldest claimable job other than those in `exclude` (skipping rows other hosts
    have locked on PostgreSQL)."""
    now = utcnow()
    pick, take = _claim_statements(bool(exclude))
    params: dict[str, Any] = {"now": now, "rules": list(rules)}
    if exclude:
        params["exclude"] = list(exclude)
    with _writing(engine) as conn:
        job_id = conn.execute(pick, params).scalar()
        if job_id is None:
            return None
        row = conn.execute(take, {"w_id": job_id, **_values({
            "updated_at": now, "started_at": now, "lease_owner": owner, "host": host, "device": device,
            "lease_expires": now + timedelta(seconds=lease_seconds)})}).first()
        return None if row is None else _job(row)


def queued_at(engine: Engine, reader: Engine, rule: str, source: str) -> Job | None:
    """The queued or running job whose file is `source` (read once per file at intake): on the thread's kept
    connection to `engine` inside `keeping()`, else on `reader`."""
    query = _BUILT.get(("queued_at",))
    if query is None:
        query = _BUILT[("queued_at",)] = (
            select(*JOBS.c).where(JOBS.c.rule == bindparam("rule"), JOBS.c.source_path == bindparam("source"),
                                  _state_in([JobState.QUEUED, JobState.RUNNING]))
            .order_by(JOBS.c.id).limit(1))
    raw = _kept(engine)
    row: Any
    if raw is not None:  # one statement in autocommit: a read snapshot of its own, never the write lock
        row = raw.execute(query, {"rule": rule, "source": source}).first()
    else:
        with reader.begin() as conn:
            row = conn.execute(query, {"rule": rule, "source": source}).first()
    return None if row is None else _job(row)


def enqueue(engine: Engine, fields: dict[str, Any]) -> Job:
    """Insert a queued job (IntegrityError if its rule and content key are taken)."""
    now = utcnow()
    values = {"state": JobState.QUEUED.value, "attempts": 0, "created_at": now, "updated_at": now, **fields}
    shape = ("enqueue", tuple(sorted(values)))
    stmt = _BUILT.get(shape)
    if stmt is None:
        stmt = _BUILT[shape] = insert(JOBS).values({column: _param(column) for column in shape[1]}).returning(*JOBS.c)
    with _writing(engine) as conn:
        row = conn.execute(stmt, _values(values)).one()
    return _job(row)
