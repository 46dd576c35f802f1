"""Settle tracking (SPEC §6.3): never too early, each stable version handed out once, system names ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retouchd.settle import IgnoreMatcher, SettleTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_growing_file_is_not_taken(tmp_path: Path) -> None:
    """A file whose size keeps changing is never ready; once still for the settle time it is."""
    clock = Clock()
    tracker = SettleTracker(2.0, clock=clock, wall=lambda: os.stat(tmp_path).st_mtime)
    path = tmp_path / "a.jpg"
    for _ in range(5):
        with open(path, "ab") as fh:
            fh.write(b"x" * 100)
        tracker.observe("r", path, os.stat(path))
        clock.now += 1.0
        assert tracker.ready() == []
    clock.now += 2.5
    ready = tracker.ready()
    assert [c.path for c in ready] == [path] and ready[0].size == 500
    tracker.mark_taken(ready[0])
    tracker.observe("r", path, os.stat(path))  # a rescan sees it again, unchanged
    clock.now += 10
    assert tracker.ready() == []


def test_closed_after_write_is_taken_at_once(tmp_path: Path) -> None:
    """A close-after-write event makes the file ready without waiting for the settle time."""
    clock = Clock()
    tracker = SettleTracker(30.0, clock=clock, wall=lambda: 0.0 + os.stat(tmp_path).st_mtime)
    path = tmp_path / "b.png"
    path.write_bytes(b"data")
    tracker.observe("r", path, os.stat(path), closed=True)
    assert [c.path for c in tracker.ready()] == [path]


def test_old_file_found_by_startup_scan_is_ready(tmp_path: Path) -> None:
    """A file last modified longer ago than the settle time is taken on the first scan."""
    clock = Clock()
    path = tmp_path / "old.png"
    path.write_bytes(b"data")
    os.utime(path, (1, 1))
    tracker = SettleTracker(5.0, clock=clock, wall=lambda: 1_000_000.0)
    tracker.observe("r", path, os.stat(path))
    assert [c.path for c in tracker.ready()] == [path]


def test_changed_between_observation_and_take(tmp_path: Path) -> None:
    """If stat changes at the moment of taking, the file waits again."""
    clock = Clock()
    path = tmp_path / "c.png"
    path.write_bytes(b"1")
    tracker = SettleTracker(1.0, clock=clock, wall=lambda: os.stat(path).st_mtime)
    tracker.observe("r", path, os.stat(path))
    path.write_bytes(b"22")
    clock.now += 5
    assert tracker.ready() == []
    clock.now += 5
    assert [c.size for c in tracker.ready()] == [2]


@pytest.mark.parametrize("name", ["a.part", "b.TMP", "c.crdownload", "~$doc.png", ".~lock.x#", ".hidden.jpg",
                                  "Thumbs.db", "@eaDir", "#recycle", ".sync", ".SyncArchive"])
def test_system_names_ignored(name: str) -> None:
    """Partial downloads and system names are ignored, also as folder parts."""
    matcher = IgnoreMatcher()
    assert matcher.ignored(Path(name)) and matcher.ignored(Path(name) / "x.jpg")
    assert not matcher.ignored(Path("photos/IMG_0001.JPG"))


def test_extra_ignore_patterns() -> None:
    """watch.ignore adds patterns to the built-in list."""
    assert IgnoreMatcher(["*.xmp"]).ignored(Path("a.XMP"))
