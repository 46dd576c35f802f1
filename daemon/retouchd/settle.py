"""When is a file complete? When it was closed after writing, or its size and mtime held still for the
settle time. Also: which names are never taken (partial downloads, system files)."""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from retouchd.settings import BUILTIN_IGNORES


class IgnoreMatcher:
    """Case-insensitive globs applied to every part of a path relative to its inbox."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.patterns = tuple(p.lower() for p in (*BUILTIN_IGNORES, *extra))

    def name_ignored(self, name: str) -> bool:
        lowered = name.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in self.patterns)

    def ignored(self, rel: Path) -> bool:
        return any(self.name_ignored(part) for part in rel.parts)


@dataclass
class _Entry:
    rule: str
    size: int
    mtime_ns: int
    changed_at: float
    closed: bool


@dataclass(frozen=True)
class Candidate:
    rule: str
    path: Path
    size: int
    mtime_ns: int


class SettleTracker:
    """Tracks files seen in inboxes until they are stable; hands each stable version out once."""

    def __init__(self, settle_time: float, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settle_time = settle_time
        self._clock, self._wall = clock, wall
        self._pending: dict[Path, _Entry] = {}
        self._taken: dict[Path, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def observe(self, rule: str, path: Path, st: os.stat_result, *, closed: bool = False) -> None:
        """Record a sighting (from an event or a scan); `closed` = closed after writing or renamed in."""
        key = (st.st_size, st.st_mtime_ns)
        if self._taken.get(path) == key:
            return
        self._taken.pop(path, None)
        now = self._clock()
        entry = self._pending.get(path)
        if entry is None:
            # A file whose mtime is already older than the settle time has been still for that long.
            age = max(0.0, self._wall() - st.st_mtime)
            changed_at = now - min(age, self.settle_time)
            self._pending[path] = _Entry(rule, st.st_size, st.st_mtime_ns, changed_at, closed)
            return
        if (entry.size, entry.mtime_ns) != key:
            entry.size, entry.mtime_ns, entry.changed_at = st.st_size, st.st_mtime_ns, now
            entry.closed = closed
        elif closed:
            entry.closed = True

    def modified(self, path: Path) -> None:
        """A write event: the file is not closed any more and its clock restarts."""
        entry = self._pending.get(path)
        if entry is not None:
            entry.closed = False
            entry.changed_at = self._clock()

    def forget(self, path: Path) -> None:
        self._pending.pop(path, None)
        self._taken.pop(path, None)

    def forget_under(self, root: Path) -> None:
        for path in [p for p in self._pending if root in p.parents]:
            del self._pending[path]

    def prune_taken(self, still_present: set[Path]) -> None:
        """Drop 'already taken' marks for files no longer in an inbox (after a full scan)."""
        for path in [p for p in self._taken if p not in still_present]:
            del self._taken[path]

    def ready(self) -> list[Candidate]:
        """Files that are stable now, re-checked with stat; each is handed out once per (size, mtime)."""
        now = self._clock()
        out: list[Candidate] = []
        for path, entry in list(self._pending.items()):
            if not entry.closed and now - entry.changed_at < self.settle_time:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                del self._pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns, entry.changed_at, entry.closed = st.st_size, st.st_mtime_ns, now, False
                continue
            del self._pending[path]
            out.append(Candidate(entry.rule, path, entry.size, entry.mtime_ns))
        return out

    def mark_taken(self, candidate: Candidate) -> None:
        self._taken[candidate.path] = (candidate.size, candidate.mtime_ns)

    def requeue(self, candidate: Candidate) -> None:
        """Offer the same file again later (e.g. a duplicate waiting for its twin to finish)."""
        self._taken.pop(candidate.path, None)
        self._pending[candidate.path] = _Entry(candidate.rule, candidate.size, candidate.mtime_ns, self._clock(), False)
