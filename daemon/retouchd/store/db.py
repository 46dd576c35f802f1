"""Engines and migrations. SQLite gets WAL, a busy timeout and writer transactions that start IMMEDIATE."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from retouchd.exceptions import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Autocommit at the driver level; transactions are opened explicitly in `_begin`.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout instead of
        # deadlocking on a read→write lock upgrade. Read-only sessions (Store.read) begin deferred: a count
        # or an idle claim poll never waits for, or blocks, a writer.
        read_only = conn.get_execution_options().get("retouchd_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}, pool_size=8,
        )
        _sqlite_setup(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        from retouchd.store.review_schema import postgresql_options

        postgresql_options()
    return create_engine(url, pool_pre_ping=True, pool_size=8)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


MIGRATION_LOCK = 0x7265746F75636864  # "retouchd": the PostgreSQL advisory lock key of migrations


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; upgrades keep every row.

    Several daemons started at once on a new database migrate one after the other: PostgreSQL holds an
    advisory lock for the transaction, SQLite's BEGIN IMMEDIATE holds the write lock; the later ones then
    find the schema at head and do nothing. A database already at head is recognised without importing
    Alembic (a quarter of a second of every start-up)."""
    try:
        if _at_head(engine):
            return
    except SQLAlchemyError:
        try:  # no version table: a new database (no table at all) is made at the head at once
            if _create_fresh(engine):
                return
        except SQLAlchemyError:
            pass  # damaged or away: Alembic says which below
    from alembic import command

    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(exc).splitlines()[0]
        if is_damaged(exc):
            raise StoreError(f"the database {where} is damaged ({reason}); {RESTORE_HINT}") from None
        raise StoreError(
            f"cannot open or migrate the database at {where}: {reason}; check database_url and that the folder "
            "is writable"
        ) from None


def _create_fresh(engine: Engine) -> bool:
    """A database without any table gets the models' schema, which is the migrations' head (tests check that
    both give the same tables, columns, indexes and keys), and the head's revision, in one transaction and
    without importing Alembic: a first start saves ~0.2 s of CPU. False when it has a table (Alembic
    upgrades it). Two daemons creating one database at once: the second finds the first's tables."""
    head = head_revision()
    if head is None:
        return False
    from retouchd.store import review_schema  # noqa: F401  (its tables belong to the schema)
    from retouchd.store.schema import Base

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        if inspect(conn).get_table_names():
            return False
        Base.metadata.create_all(conn)
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                             "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": head})
    return True


_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*(?:None|[\"']([^\"']+)[\"'])", re.MULTILINE)


def head_revision() -> str | None:
    """The one head of the migration scripts, read from their text (None if there is not exactly one)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in MIGRATIONS.joinpath("versions").glob("*.py"):
        for kind, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            if value:
                (revisions if kind == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """Whether the database's schema is at the scripts' head (its version table holds only that)."""
    head = head_revision()
    if head is None:
        return False
    with engine.execution_options(retouchd_read_only=True).connect() as conn:
        versions = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    return versions == [head]


RESTORE_HINT = ("stop retouchd and restore state/retouchd.db from a backup (or move it aside to start an empty "
                "history: files already processed would then be processed again)")
_DAMAGE = ("file is not a database", "database disk image is malformed", "malformed database schema")


def is_damaged(exc: BaseException) -> bool:
    """Whether a database error says the SQLite file itself is corrupt (not locked, not missing)."""
    text = str(exc).lower()
    return any(marker in text for marker in _DAMAGE)
