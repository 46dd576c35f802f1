"""Inbox watching. The watcher only reports what it sees (events and scans); it never processes.

`events` inboxes use inotify through watchdog; `poll` inboxes (network shares) are scanned every
poll_interval; every inbox is also rescanned every rescan_interval as a safety net. An inbox that
disappears is paused and logged, never read as "all files deleted".
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from retouchd.mounts import watch_mode_for
from retouchd.settle import IgnoreMatcher

log = structlog.get_logger("retouchd.watcher")


@dataclass(frozen=True)
class Sighting:
    rule: str
    path: Path
    st: os.stat_result
    closed: bool = False
    written: bool = False


@dataclass
class Inbox:
    rule: str
    path: Path
    mode: str
    paused: str | None = None
    watch: Any = None
    next_scan: float = 0.0
    present: set[Path] = field(default_factory=set)


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: Inbox, events: queue.SimpleQueue[tuple[Inbox, str, str]]) -> None:
        self.inbox, self.events = inbox, events

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind not in ("created", "modified", "closed", "moved") or (event.is_directory and kind == "modified"):
            return
        target = event.dest_path if kind == "moved" else event.src_path
        self.events.put((self.inbox, kind, os.fsdecode(target)))


class Watcher:
    def __init__(self, inboxes: list[tuple[str, Path]], *, mode: str, poll_interval: float, rescan_interval: float,
                 ignore: IgnoreMatcher) -> None:
        self.inboxes = [Inbox(rule, path, watch_mode_for(path, mode)) for rule, path in inboxes]
        self.poll_interval, self.rescan_interval, self.ignore = poll_interval, rescan_interval, ignore
        self._events: queue.SimpleQueue[tuple[Inbox, str, str]] = queue.SimpleQueue()
        self._observer: Any = None

    def start(self) -> None:
        self._observer = Observer()
        self._observer.start()
        for inbox in self.inboxes:
            log.info("watching inbox", rule=inbox.rule, path=str(inbox.path), mode=inbox.mode)
            self._attach(inbox)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)

    def _attach(self, inbox: Inbox) -> None:
        if inbox.mode != "events" or self._observer is None or inbox.watch is not None:
            return
        try:
            inbox.watch = self._observer.schedule(_Handler(inbox, self._events), str(inbox.path), recursive=True)
        except OSError as exc:
            log.warning("cannot watch inbox with events; scanning instead", rule=inbox.rule, error=str(exc))

    def _detach(self, inbox: Inbox) -> None:
        if inbox.watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError, ValueError):
                self._observer.unschedule(inbox.watch)
        inbox.watch = None

    def _available(self, inbox: Inbox) -> bool:
        """False (and paused, logged once) while the inbox folder is missing or unreadable."""
        try:
            st = os.stat(inbox.path)
            ok = stat.S_ISDIR(st.st_mode) and os.access(inbox.path, os.R_OK | os.X_OK)
            reason = None if ok else "not a readable folder"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        if reason is not None:
            if inbox.paused is None:
                log.warning("inbox unavailable; paused (no file is treated as deleted)", rule=inbox.rule,
                            path=str(inbox.path), reason=reason)
                self._detach(inbox)
            inbox.paused = reason
            return False
        if inbox.paused is not None:
            log.info("inbox back; resuming", rule=inbox.rule, path=str(inbox.path))
            inbox.paused = None
            inbox.next_scan = 0.0
            self._attach(inbox)
        return True

    def _stat_ok(self, inbox: Inbox, path: Path) -> os.stat_result | None:
        try:
            rel = path.relative_to(inbox.path)
        except ValueError:
            return None
        if not rel.parts or self.ignore.ignored(rel):
            return None
        try:
            st = os.lstat(path)
        except OSError:
            return None
        # Links, FIFOs and devices are reported too (intake refuses them with a reason); never folders.
        return None if stat.S_ISDIR(st.st_mode) else st

    def _scan(self, inbox: Inbox) -> Iterator[Sighting]:
        present: set[Path] = set()
        stack = [inbox.path]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if self.ignore.name_ignored(entry.name):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        # A link is reported, never followed (it could lead outside the inbox); intake
                        # refuses links, FIFOs and devices with a reason.
                        path = Path(entry.path)
                        present.add(path)
                        yield Sighting(inbox.rule, path, entry.stat(follow_symlinks=False))
                except OSError:
                    continue
        inbox.present = present

    def poll(self, now: float | None = None) -> tuple[list[Sighting], set[Path] | None]:
        """Everything seen since the last call. The second value is the full set of files present when a
        complete scan of every inbox ran in this call (for pruning), else None."""
        now = time.monotonic() if now is None else now
        seen: list[Sighting] = []
        while True:
            try:
                inbox, kind, raw = self._events.get_nowait()
            except queue.Empty:
                break
            path = Path(raw)
            if kind == "created" and path.is_dir() and not path.is_symlink():
                # A folder moved or created with files already inside: inotify reports only the folder.
                inbox.next_scan = 0.0
                continue
            st = self._stat_ok(inbox, path)
            if st is not None:
                seen.append(Sighting(inbox.rule, path, st, closed=kind in ("closed", "moved"),
                                     written=kind == "modified"))
        full = True
        for inbox in self.inboxes:
            if now < inbox.next_scan:
                full = False
                continue
            if not self._available(inbox):
                inbox.next_scan = now + self.poll_interval
                full = False
                continue
            seen.extend(self._scan(inbox))
            interval = self.poll_interval if inbox.mode == "poll" or inbox.watch is None else self.rescan_interval
            inbox.next_scan = now + interval
        present = set().union(*(inbox.present for inbox in self.inboxes)) if full else None
        return seen, present

    def paused(self) -> dict[str, str]:
        return {inbox.rule: inbox.paused for inbox in self.inboxes if inbox.paused}
