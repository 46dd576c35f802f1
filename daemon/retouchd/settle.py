"""When is a file complete? A close is a hint, not proof: a file is taken once its size and mtime held still
for the settle time (the confirm interval), whether or not a close was seen; a file written to without a
close since (events mode: a writer still holds it open) waits for its close or for the longer quiet time.
Also: which names are never taken (partial downloads, system files)."""

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
    writing: bool
    """A write was seen after the last close: someone still holds the file open for writing."""


@dataclass(frozen=True)
class Candidate:
    rule: str
    path: Path
    size: int
    mtime_ns: int


class SettleTracker:
    """Tracks files seen in inboxes until they are stable; hands each stable version out once."""

    def __init__(self, settle_time: float, *, quiet_time: float | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settle_time = settle_time
        self.quiet_time = max(settle_time, quiet_time if quiet_time is not None else 60.0)
        self._clock, self._wall = clock, wall
        self._pending: dict[Path, _Entry] = {}
        self._taken: dict[Path, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def observe(self, rule: str, path: Path, st: os.stat_result, *, closed: bool = False,
                written: bool = False) -> None:
        """Record a sighting (from an event or a scan): `closed` = closed after writing or renamed in,
        `written` = a write event (the writer may still hold the file open)."""
        key = (st.st_size, st.st_mtime_ns)
        if self._taken.get(path) == key and not written:
            return
        self._taken.pop(path, None)
        now = self._clock()
        entry = self._pending.get(path)
        if entry is None:
            # A file whose mtime is already older than the settle time has been still for that long.
            age = 0.0 if written else max(0.0, self._wall() - st.st_mtime)
            changed_at = now - min(age, self.settle_time)
            self._pending[path] = _Entry(rule, st.st_size, st.st_mtime_ns, changed_at, written and not closed)
            return
        if written or (entry.size, entry.mtime_ns) != key:
            entry.size, entry.mtime_ns, entry.changed_at = st.st_size, st.st_mtime_ns, now
        if written:
            entry.writing = True
        if closed:
            entry.writing = False

    def keep_only(self, inboxes: dict[str, Path]) -> None:
        """After a reload: forget files seen for a rule that is gone, or outside its rule's (new) inbox."""
        for path, entry in list(self._pending.items()):
            inbox = inboxes.get(entry.rule)
            if inbox is None or inbox not in path.parents:
                del self._pending[path]

    def forget_under(self, root: Path) -> None:
        """Drop what is known under `root` (pending and taken): its folder came back or was replaced."""
        for known in (self._pending, self._taken):
            for path in [p for p in known if root in p.parents]:
                del known[path]

    def prune_taken(self, still_present: set[Path]) -> None:
        """Drop 'already taken' marks for files no longer in an inbox (after a full scan)."""
        for path in [p for p in self._taken if p not in still_present]:
            del self._taken[path]

    def ready(self) -> list[Candidate]:
        """Files that are stable now, re-checked with stat; each is handed out once per (size, mtime)."""
        now = self._clock()
        out: list[Candidate] = []
        for path, entry in list(self._pending.items()):
            if now - entry.changed_at < (self.quiet_time if entry.writing else self.settle_time):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                del self._pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns, entry.changed_at = st.st_size, st.st_mtime_ns, now
                continue
            del self._pending[path]
            out.append(Candidate(entry.rule, path, entry.size, entry.mtime_ns))
        return out

    def mark_taken(self, candidate: Candidate) -> None:
        """This version is dealt with; a second sighting of the very same version that waited meanwhile
        (seen again while the first was being offered) is dropped: it would only be read again."""
        key = (candidate.size, candidate.mtime_ns)
        self._taken[candidate.path] = key
        entry = self._pending.get(candidate.path)
        if entry is not None and (entry.size, entry.mtime_ns) == key and not entry.writing:
            del self._pending[candidate.path]

    def requeue(self, candidate: Candidate) -> None:
        """Offer the same file again later (e.g. a duplicate waiting for its twin to finish)."""
        self._taken.pop(candidate.path, None)
        self._pending[candidate.path] = _Entry(candidate.rule, candidate.size, candidate.mtime_ns, self._clock(), False)
