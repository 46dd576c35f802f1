"""SQLAlchemy models. Alembic migrations under migrations/ must produce exactly this schema."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_B64 = "\uf8ffb64:"
_PATH_MAP: list[tuple[str, str]] = []
"""(canonical prefix, local prefix) pairs: hosts that mount a share at different places agree in the DB."""


def set_path_map(mapping: dict[str, str]) -> None:
    """Install this host's path map (canonical → local); longest prefixes first."""
    _PATH_MAP[:] = sorted(((c.rstrip("/"), loc.rstrip("/")) for c, loc in mapping.items()),
                          key=lambda pair: -len(pair[1]))


def _swap(value: str, to_canonical: bool) -> str:
    for canonical, local in _PATH_MAP:
        src, dst = (local, canonical) if to_canonical else (canonical, local)
        if value == src or value.startswith(src + "/"):
            return dst + value[len(src):]
    return value
"""Marks a path stored as base64: names that are not valid UTF-8 (or that start with the marker)."""


class FsPath(TypeDecorator[str]):
    """A file-system path as text, reversible for any name Linux allows (invalid UTF-8 bytes included)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        raw = os.fsencode(_swap(value, to_canonical=True))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or text.startswith(_B64):
            return _B64 + base64.b64encode(raw).decode("ascii")
        return text

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if value.startswith(_B64):
            value = os.fsdecode(base64.b64decode(value[len(_B64):]))
        return _swap(value, to_canonical=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("rule", "content_key", name="uq_jobs_rule_content"),
        Index("ix_jobs_state_not_before", "state", "not_before"),
        Index("ix_jobs_rule_state", "rule", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64))
    content_key: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    source_path: Mapped[str] = mapped_column(FsPath)
    rel_path: Mapped[str] = mapped_column(FsPath)
    sidecar_path: Mapped[str | None] = mapped_column(FsPath)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    host: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(32))
    current_step: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float | None] = mapped_column(Float)
    steps: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """Per-step records: op, seconds, metrics."""
    output_path: Mapped[str | None] = mapped_column(FsPath)
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    output_tmp: Mapped[str | None] = mapped_column(FsPath)
    archive_path: Mapped[str | None] = mapped_column(FsPath)
    sidecar_archive_path: Mapped[str | None] = mapped_column(FsPath)
    failed_path: Mapped[str | None] = mapped_column(FsPath)
    error: Mapped[str | None] = mapped_column(Text)
    error_step: Mapped[str | None] = mapped_column(String(32))
    traceback_id: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    variant: Mapped[str | None] = mapped_column(String(64))
    """The experiment variant whose steps ran (None: the rule's own steps)."""
    device_seconds: Mapped[float | None] = mapped_column(Float)
    """Sum of the step times in `steps` (kept by an attribute event in review_schema), for cost queries."""


class Duplicate(Base):
    """A second copy of content a rule already has: archived, never processed again (SPEC §6.2)."""

    __tablename__ = "duplicates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    source_path: Mapped[str] = mapped_column(FsPath)
    archive_path: Mapped[str] = mapped_column(FsPath)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Host(Base):
    """A running daemon: what `retouchd status` shows for every host sharing the database."""

    __tablename__ = "hosts"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    """host_id:pid:instance — one row per daemon run."""
    host: Mapped[str] = mapped_column(String(255), index=True)
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    slots: Mapped[list[str]] = mapped_column(JSON)
    """The device of each slot, e.g. ["cuda:0", "cuda:0", "cpu"]."""
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SightingClaim(Base):
    """One host's claim on a (rule, path, size, mtime) sighting: only the claimant reads the file to hash it."""

    __tablename__ = "sighting_claims"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    """sha256 of rule, path, size and mtime_ns."""
    owner: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
