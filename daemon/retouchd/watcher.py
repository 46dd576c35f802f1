"""Inbox watching. The watcher only reports what it sees (events and scans); it never processes.

`events` inboxes use inotify through watchdog; `poll` inboxes (network shares) are scanned every
poll_interval; every inbox is also rescanned every rescan_interval as a safety net. Each inbox folder's
identity (device, inode) is checked every CHECK_INTERVAL: an inbox that disappears is paused and logged,
never read as "all files deleted"; one that returns or is replaced (renamed away and recreated, a mount
put over it or taken off) is watched afresh and rescanned at once. An inotify overflow rescans at once.
An inbox can also be held on purpose (`hold`/`release`): a share that is not mounted, or a user's pause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from retouchd.mounts import watch_mode_for
from retouchd.settle import IgnoreMatcher
from retouchd.watchsafe import harden_watchdog, walk_fds

log = structlog.get_logger("retouchd.watcher")
CHECK_INTERVAL = 1.0
OUTAGE_GRACE = 600.0
"""Seconds after an inbox vanished or was replaced during which a job whose file is gone waits (queued)
instead of failing as "disappeared": its file may come back with its inbox."""


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
    """Why the folder is unavailable (missing, unreadable), while it is."""
    held: str | None = None
    """Why the inbox is held on purpose (a share that is not mounted, a user's pause); nothing is taken."""
    watch: Any = None
    next_scan: float = 0.0
    next_check: float = 0.0
    identity: tuple[int, int] | None = None
    changed_at: float = float("-inf")
    present: set[Path] = field(default_factory=set)


EVENTS: list[type[FileSystemEvent]] = [FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileClosedEvent,
                                       FileMovedEvent, DirMovedEvent, DirDeletedEvent]
"""The events the handler uses (DirDeletedEvent: the inbox itself went away), so that inotify is asked only
for those: every file is opened and closed unwritten twice while it is processed (intake hashes it, the
worker reads it), four events per file that watchdog's threads read, built and dispatched for nothing."""


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: Inbox, events: queue.SimpleQueue[tuple[Inbox, str, str]]) -> None:
        self.inbox, self.events = inbox, events

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind == "deleted" and os.fsdecode(event.src_path) == str(self.inbox.path):
            self.inbox.next_check = 0.0  # the inbox itself went away: notice it on the next tick
            return
        if kind not in ("created", "modified", "closed", "moved") or (event.is_directory and kind == "modified"):
            return
        target = event.dest_path if kind == "moved" else event.src_path
        self.events.put((self.inbox, kind, os.fsdecode(target)))


class _OverflowSpy(logging.Handler):
    """watchdog reports a kernel inotify overflow (events were lost) only as a log line; seeing it makes
    every events inbox rescan at once. (The line itself is printed through structlog by the root handler.)"""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.overflowed = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in str(record.msg).lower():
            self.overflowed.set()


class Watcher:
    def __init__(self, inboxes: list[tuple[str, Path]], *, mode: str, poll_interval: float, rescan_interval: float,
                 ignore: IgnoreMatcher) -> None:
        self.inboxes = [Inbox(rule, path, watch_mode_for(path, mode)) for rule, path in inboxes]
        self.poll_interval, self.rescan_interval, self.ignore = poll_interval, rescan_interval, ignore
        self._events: queue.SimpleQueue[tuple[Inbox, str, str]] = queue.SimpleQueue()
        self._observer: Any = None
        self._renewed: list[Path] = []
        self._spy = _OverflowSpy()

    def start(self) -> None:
        logging.getLogger("watchdog.observers").addHandler(self._spy)
        harden_watchdog()
        self._observer = Observer()
        self._observer.start()
        for inbox in self.inboxes:
            log.info("watching inbox", rule=inbox.rule, path=str(inbox.path), mode=inbox.mode)
            self._attach(inbox)

    def stop(self) -> None:
        logging.getLogger("watchdog.observers").removeHandler(self._spy)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)

    def _attach(self, inbox: Inbox) -> None:
        if inbox.mode != "events" or self._observer is None or inbox.watch is not None or inbox.held:
            return
        try:
            inbox.watch = self._observer.schedule(_Handler(inbox, self._events), str(inbox.path), recursive=True,
                                                  event_filter=EVENTS)
        except OSError as exc:
            log.warning("cannot watch inbox with events; scanning instead", rule=inbox.rule, error=str(exc))

    def _detach(self, inbox: Inbox) -> None:
        if inbox.watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError, ValueError):
                self._observer.unschedule(inbox.watch)
        inbox.watch = None

    def _available(self, inbox: Inbox, now: float) -> bool:
        """False (and paused, logged once) while the inbox folder is missing or unreadable; a folder that
        came back, or another folder now at the inbox's path, is watched afresh and rescanned at once."""
        try:
            st = os.stat(inbox.path)
            ok = stat.S_ISDIR(st.st_mode) and os.access(inbox.path, os.R_OK | os.X_OK)
            reason = None if ok else "not a readable folder"
        except OSError as exc:
            st, reason = None, exc.strerror or str(exc)
        if reason is not None or st is None:
            if inbox.paused is None:
                log.warning("inbox unavailable; paused (no file is treated as deleted)", rule=inbox.rule,
                            path=str(inbox.path), reason=reason)
                self._detach(inbox)
                inbox.changed_at = now
            inbox.paused = reason
            return False
        identity = (st.st_dev, st.st_ino)
        replaced = inbox.identity is not None and identity != inbox.identity
        if inbox.paused is not None or replaced:
            log.info("inbox replaced; rescanning" if inbox.paused is None else "inbox back; resuming",
                     rule=inbox.rule, path=str(inbox.path), rescan=True)
            inbox.paused = None
            inbox.next_scan = 0.0
            inbox.changed_at = now
            self._detach(inbox)
            self._attach(inbox)
            self._renewed.append(inbox.path)
        inbox.identity = identity
        return True

    def hold(self, rule: str, reason: str) -> None:
        """Pause an inbox on purpose (a share that is not mounted, a user's pause): nothing is taken from it
        until release(rule). Idempotent; logged once."""
        for inbox in self.inboxes:
            if inbox.rule == rule and inbox.held != reason:
                log.warning("inbox paused", rule=rule, path=str(inbox.path), reason=reason)
                inbox.held = reason
                self._detach(inbox)

    def release(self, rule: str) -> None:
        for inbox in self.inboxes:
            if inbox.rule == rule and inbox.held is not None:
                log.info("inbox resumed; rescanning", rule=rule, path=str(inbox.path))
                inbox.held, inbox.next_scan, inbox.next_check = None, 0.0, 0.0
                self._attach(inbox)

    def outage(self, rule: str, now: float | None = None) -> bool:
        """Whether the rule's inbox is unavailable or vanished/was replaced within OUTAGE_GRACE: a job
        whose file is gone then waits for it instead of failing."""
        now = time.monotonic() if now is None else now
        return any(inbox.rule == rule and (inbox.paused is not None or now - inbox.changed_at < OUTAGE_GRACE)
                   for inbox in self.inboxes)

    def take_renewed(self) -> list[Path]:
        """Inbox folders that came back or were replaced since the last call (their 'taken' marks are stale)."""
        renewed, self._renewed = self._renewed, []
        return renewed

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
        """Every entry under the inbox. Each folder is opened from its parent's descriptor without following
        a link, so a folder swapped for a symlink between two looks is never listed (nothing outside)."""
        present: set[Path] = set()
        try:
            first = os.open(inbox.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            inbox.present = present
            return
        for folder, entries in walk_fds(first, inbox.path, lambda parent, name: parent / name,
                                        keep=lambda name: not self.ignore.name_ignored(name)):
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        continue
                    # A link is reported, never followed (it could lead outside the inbox); intake refuses
                    # links, FIFOs and devices with a reason.
                    path = folder / entry.name
                    st = entry.stat(follow_symlinks=False)
                    present.add(path)
                    yield Sighting(inbox.rule, path, st)
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
            if inbox.held is not None or inbox.paused is not None:
                continue
            path = Path(raw)
            if kind == "created" and path.is_dir() and not path.is_symlink():
                # A folder moved or created with files already inside: inotify reports only the folder.
                inbox.next_scan = 0.0
                continue
            st = self._stat_ok(inbox, path)
            if st is not None:
                seen.append(Sighting(inbox.rule, path, st, closed=kind in ("closed", "moved"),
                                     written=kind == "modified"))
        if self._spy.overflowed.is_set():
            self._spy.overflowed.clear()
            log.warning("inotify queue overflowed; rescanning every inbox now")
            for inbox in self.inboxes:
                inbox.next_scan = 0.0
        full = True
        for inbox in self.inboxes:
            if inbox.held is not None:
                full = False
                continue
            if now >= inbox.next_check or now >= inbox.next_scan:
                inbox.next_check = now + CHECK_INTERVAL
                if not self._available(inbox, now):
                    inbox.next_scan = now + self.poll_interval
                    full = False
                    continue
            if now < inbox.next_scan:
                full = False
                continue
            seen.extend(self._scan(inbox))
            interval = self.poll_interval if inbox.mode == "poll" or inbox.watch is None else self.rescan_interval
            inbox.next_scan = now + interval
        present = set().union(*(inbox.present for inbox in self.inboxes)) if full else None
        return seen, present

    def paused(self) -> dict[str, str]:
        return {inbox.rule: inbox.held or inbox.paused or "" for inbox in self.inboxes if inbox.held or inbox.paused}
