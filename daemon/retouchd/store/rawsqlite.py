"""The per-file statements of a thread inside `fenced.keeping()` on SQLite, run on the DBAPI connection.

Each is still the statement SQLAlchemy compiled, its parameters still pass through the columns' bind
processors (path maps, UTC datetimes, JSON) and its rows through their result processors; each write still
begins IMMEDIATE and commits, or rolls back, on its own. What is left out is SQLAlchemy's bookkeeping around
them: the Transaction object, the begin event running BEGIN IMMEDIATE through a whole execution, the cursor
result machinery — ~0.07 ms of a ~0.1 ms write, three to five per file (`python bench/store_writes.py`).
A DBAPI error is raised as SQLAlchemy's (a locked database is an OperationalError, a taken content key an
IntegrityError), which is what the callers wait on or handle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


class Row(tuple[Any, ...]):
    """A result row: by position, or by column key through `_mapping` (as SQLAlchemy's Row)."""

    _keys: tuple[str, ...]

    def __new__(cls, values: Any, keys: tuple[str, ...]) -> Row:
        row = super().__new__(cls, values)
        row._keys = keys
        return row

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._keys, self, strict=True))


class Result:
    """What `Raw.execute` returns: the rows (all fetched) and the row count."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def first(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Row:
        if len(self._rows) != 1:
            raise ValueError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


class _Prepared:
    """A statement compiled once: its SQL and bind processors, its result columns' keys and processors."""

    def __init__(self, stmt: Any, dialect: Any) -> None:
        self.stmt = stmt
        self.compiled = stmt.compile(dialect=dialect)
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                      for name, bind in self.compiled.binds.items()}
        self.processors = {name: process for name, process in processors.items() if process is not None}
        columns = list(stmt.exported_columns)
        self.keys = tuple(column.key for column in columns)
        self.results = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]


_PREPARED: dict[int, _Prepared] = {}
"""By id of the statement (kept alive by fenced._BUILT, and by the entry itself)."""


class Raw:
    """Statements on the DBAPI connection of `conn` (SQLite's, in autocommit: transactions are explicit)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.dbapi: Any = conn.connection.driver_connection
        self._error: Any = self.dialect.loaded_dbapi.Error

    def _prepared(self, stmt: Any) -> _Prepared:
        prepared = _PREPARED.get(id(stmt))
        if prepared is None or prepared.stmt is not stmt:
            prepared = _PREPARED[id(stmt)] = _Prepared(stmt, self.dialect)
        return prepared

    def _raw(self, sql: str, args: Any = ()) -> Any:
        try:
            return self.dbapi.execute(sql, args)
        except self._error as exc:
            if self.dialect.is_disconnect(exc, self.dbapi, None):
                self.conn.invalidate(exc)  # fenced._writing opens a new one next time
            raise DBAPIError.instance(sql, args, exc, self._error, dialect=self.dialect) from exc

    def execute(self, stmt: Any, params: dict[str, Any]) -> Result:
        prepared = self._prepared(stmt)
        state = prepared.compiled.construct_expanded_state(params)
        processors = {**prepared.processors, **state.processors} if state.processors else prepared.processors
        values = state.parameters
        args = [processors[key](values[key]) if key in processors else values[key]
                for key in state.positiontup or ()]
        cursor = self._raw(state.statement, args)
        rows = []
        if prepared.keys:
            for raw in cursor.fetchall():
                rows.append(Row([value if process is None else process(value)
                                 for value, process in zip(raw, prepared.results, strict=True)], prepared.keys))
        return Result(rows, cursor.rowcount)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Raw]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK if the block raises."""
        self._raw("BEGIN IMMEDIATE")
        try:
            yield self
            self._raw("COMMIT")
        except BaseException:  # the block's error or the commit's
            with contextlib.suppress(Exception):
                self.dbapi.execute("ROLLBACK")
            raise
