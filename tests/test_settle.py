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


def test_a_version_requeued_while_it_was_being_offered_is_not_offered_again(tmp_path: Path) -> None:
    """The daemon hands a ready file to intake; seen again meanwhile, it is requeued (intake still busy with
    that path). Once the first offer took it, the waiting copy of that same version is dropped: the file is
    not read a second time. A newer version waiting meanwhile is still handed out."""
    clock = Clock()
    tracker = SettleTracker(2.0, clock=clock, wall=lambda: os.stat(tmp_path).st_mtime + 100)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 100)
    tracker.observe("r", path, os.stat(path))
    first = tracker.ready()
    assert [c.path for c in first] == [path]
    tracker.requeue(first[0])  # seen again while intake was still offering it
    tracker.mark_taken(first[0])  # the first offer queued it
    clock.now += 10
    assert tracker.ready() == []
    with open(path, "ab") as fh:
        fh.write(b"more")
    tracker.observe("r", path, os.stat(path))
    newer = tracker.ready()
    tracker.requeue(newer[0])
    tracker.mark_taken(first[0])  # a late result for the old version does not drop the newer one
    clock.now += 10
    assert [c.size for c in tracker.ready()] == [104]


def test_close_is_a_hint_confirmed_by_the_settle_time(tmp_path: Path) -> None:
    """A close does not make a file ready at once: it must also hold still for the settle time."""
    clock = Clock()
    tracker = SettleTracker(2.0, clock=clock, wall=lambda: os.stat(tmp_path).st_mtime)
    path = tmp_path / "b.png"
    path.write_bytes(b"data")
    tracker.observe("r", path, os.stat(path), closed=True)
    assert tracker.ready() == []
    clock.now += 2.1
    assert [c.path for c in tracker.ready()] == [path]


def test_keep_only_forgets_files_of_a_dropped_or_moved_rule(tmp_path: Path) -> None:
    """After a reload, files seen for a rule that is gone, or outside its rule's new inbox, are never handed
    out; the others still are."""
    clock = Clock()
    tracker = SettleTracker(2.0, clock=clock, wall=lambda: os.stat(tmp_path).st_mtime)
    paths = {}
    for rule in ("kept", "gone", "moved"):
        (tmp_path / rule / "sub").mkdir(parents=True)
        paths[rule] = tmp_path / rule / "sub" / "x.png"
        paths[rule].write_bytes(b"data")
        tracker.observe(rule, paths[rule], os.stat(paths[rule]), closed=True)
    tracker.keep_only({"kept": tmp_path / "kept", "moved": tmp_path / "elsewhere"})
    clock.now += 2.1
    assert [(c.rule, c.path) for c in tracker.ready()] == [("kept", paths["kept"])]


def test_reopen_append_writer_is_taken_once_complete(tmp_path: Path) -> None:
    """A writer that reopens the file for each chunk (a close after every chunk, 0.3 s apart) is taken
    once, after its last chunk, with the full size."""
    clock = Clock()
    tracker = SettleTracker(2.0, clock=clock, wall=lambda: os.stat(tmp_path).st_mtime)
    path = tmp_path / "chunked.png"
    taken = []
    for _ in range(10):
        with open(path, "ab") as fh:
            fh.write(b"x" * 1000)
        tracker.observe("r", path, os.stat(path), written=True)
        tracker.observe("r", path, os.stat(path), closed=True)
        clock.now += 0.3
        taken += tracker.ready()
    assert taken == []
    clock.now += 2.0
    taken += tracker.ready()
    assert [(c.path, c.size) for c in taken] == [(path, 10_000)]


def test_writer_holding_the_file_open_waits_for_its_close(tmp_path: Path) -> None:
    """Written to without a close (a writer pausing 4 s, file held open): not taken after the settle time,
    only after the close; with no close at all, after the quiet time."""
    clock = Clock()
    tracker = SettleTracker(2.0, quiet_time=30.0, clock=clock, wall=lambda: os.stat(tmp_path).st_mtime)
    path, lost = tmp_path / "slow.png", tmp_path / "lost.png"
    for p in (path, lost):
        p.write_bytes(b"half")
        tracker.observe("r", p, os.stat(p), written=True)
    clock.now += 4.0
    assert tracker.ready() == [], "a paused writer's half file must not be taken"
    with open(path, "ab") as fh:
        fh.write(b" and the rest")
    tracker.observe("r", path, os.stat(path), written=True)
    tracker.observe("r", path, os.stat(path), closed=True)
    clock.now += 2.1
    assert [(c.path, c.size) for c in tracker.ready()] == [(path, 17)]
    clock.now += 30.0
    assert [c.path for c in tracker.ready()] == [lost], "a missed close falls back to the quiet time"


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
