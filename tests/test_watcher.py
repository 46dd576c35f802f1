"""The watcher: mount detection, scans that never follow symlinks, inboxes that vanish and come back."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from retouchd.logging import configure_logging
from retouchd.mounts import ensure_inbox_dir, missing_share, mount_of, read_mounts, watch_mode_for
from retouchd.settle import IgnoreMatcher
from retouchd.watcher import Watcher

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /mnt/nas rw,relatime shared:2 - nfs4 nas:/export rw
41 22 0:41 / /mnt/smb\\040share rw - cifs //srv/photos rw
42 22 0:42 / /mnt/fuse rw - fuse.sshfs host:/x rw
43 40 0:43 / /mnt/nas/local rw - ext4 /dev/sdb1 rw
"""


def test_mount_table_and_auto_mode() -> None:
    """auto polls NFS, CIFS (escaped names) and FUSE mounts and uses events on local disks."""
    mounts = read_mounts(MOUNTINFO)
    assert mount_of(Path("/mnt/nas/inbox"), mounts).fstype == "nfs4"  # type: ignore[union-attr]
    assert mount_of(Path("/mnt/nas/local/in"), mounts).fstype == "ext4"  # type: ignore[union-attr]
    assert watch_mode_for(Path("/mnt/nas/inbox"), "auto", mounts) == "poll"
    assert watch_mode_for(Path("/mnt/smb share/in"), "auto", mounts) == "poll"
    assert watch_mode_for(Path("/mnt/fuse/in"), "auto", mounts) == "poll"
    assert watch_mode_for(Path("/home/x/in"), "auto", mounts) == "events"
    assert watch_mode_for(Path("/mnt/nas/inbox"), "events", mounts) == "events"


def _watcher(inbox: Path) -> Watcher:
    return Watcher([("r", inbox)], mode="poll", poll_interval=0.0, rescan_interval=60, ignore=IgnoreMatcher())


def test_scan_reports_links_without_following_them(tmp_path: Path) -> None:
    """Symlinks and FIFOs are reported as themselves (intake refuses them), never followed; ignored names
    are not reported."""
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    (inbox / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    (inbox / "ok.jpg").write_bytes(b"x")
    (inbox / "sub" / "deep.jpg").write_bytes(b"x")
    (inbox / "x.part").write_bytes(b"x")
    os.symlink(outside / "secret.jpg", inbox / "link.jpg")
    os.symlink(outside, inbox / "linkdir")
    (inbox / "dir.jpg").mkdir()
    os.mkfifo(inbox / "pipe.jpg")
    seen, present = _watcher(inbox).poll(now=0)
    names = ["link.jpg", "linkdir", "ok.jpg", "pipe.jpg", "sub/deep.jpg"]
    assert sorted(s.path.relative_to(inbox).as_posix() for s in seen) == names
    assert {s.path.name: stat.S_IFMT(s.st.st_mode) for s in seen if s.path.name.startswith("link")} == {
        "link.jpg": stat.S_IFLNK, "linkdir": stat.S_IFLNK}
    assert present == {inbox / name for name in names}


def test_folder_swapped_for_a_link_during_a_scan_is_not_listed(tmp_path: Path) -> None:
    """A folder that becomes a symlink to an outside folder after the scan listed its parent is not
    descended into: nothing outside the inbox is listed or reported."""
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "sub" / "in.jpg").write_bytes(b"x")
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")

    class SwapAfterListing(IgnoreMatcher):
        def name_ignored(self, name: str) -> bool:
            if name == "sub" and (inbox / "sub").is_dir() and not (inbox / "sub").is_symlink():
                shutil.rmtree(inbox / "sub")  # the listing said "folder"; now it is a link
                os.symlink(outside, inbox / "sub")
            return super().name_ignored(name)

    watcher = Watcher([("r", inbox)], mode="poll", poll_interval=0.0, rescan_interval=60, ignore=SwapAfterListing())
    seen, _ = watcher.poll(now=0)
    assert [s.path.relative_to(inbox).as_posix() for s in seen] == []


def test_new_folders_are_watched_without_listing_a_swapped_link(tmp_path: Path) -> None:
    """Events mode: files in a new nested folder, and files written there later, are reported by events
    (the rescan is an hour away); a new folder that is a symlink to an outside folder is not walked, and
    walk_beneath never lists a folder reached through a link."""
    from retouchd.watchsafe import walk_beneath

    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "secret.jpg").write_bytes(b"x")
    watcher = Watcher([("r", inbox)], mode="events", poll_interval=3600, rescan_interval=3600, ignore=IgnoreMatcher())
    watcher.start()
    try:
        watcher.poll(now=0)
        (inbox / "x" / "y").mkdir(parents=True)
        (inbox / "x" / "y" / "first.jpg").write_bytes(b"x")
        os.symlink(outside, inbox / "link")
        seen: set[str] = set()
        for tick in range(1, 60):
            time.sleep(0.1)
            seen |= {s.path.relative_to(inbox).as_posix() for s in watcher.poll(now=tick)[0]}
            if tick == 20:
                (inbox / "x" / "y" / "later.jpg").write_bytes(b"x")
            if {"x/y/first.jpg", "x/y/later.jpg"} <= seen:
                break
        assert {"x/y/first.jpg", "x/y/later.jpg", "link"} <= seen
        assert not any("secret" in name for name in seen)
    finally:
        watcher.stop()
    assert [f for f, _, _ in walk_beneath(os.fsencode(inbox / "link"))] == []
    assert sorted(f for f, _, _ in walk_beneath(os.fsencode(inbox))) == [
        os.fsencode(p) for p in (inbox, inbox / "x", inbox / "x" / "y")]
    # A folder *above* the one walked swapped for a link: the path through it is never resolved.
    assert [f for f, _, _ in walk_beneath(os.fsencode(inbox / "link" / "deep"), root=os.fsencode(inbox))] == []
    assert [f for f, _, _ in walk_beneath(os.fsencode(inbox / "x" / "y"), root=os.fsencode(inbox))] == [
        os.fsencode(inbox / "x" / "y")]


def test_vanished_inbox_is_paused_not_emptied(tmp_path: Path) -> None:
    """An inbox that disappears is paused (reported, no full scan result), and resumes when it returns."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jpg").write_bytes(b"x")
    watcher = _watcher(inbox)
    seen, present = watcher.poll(now=0)
    assert len(seen) == 1 and present == {inbox / "a.jpg"}
    shutil.move(inbox, tmp_path / "gone")
    seen, present = watcher.poll(now=1)
    assert seen == [] and present is None, "a missing inbox must not look like an empty one"
    assert "r" in watcher.paused()
    shutil.move(tmp_path / "gone", inbox)
    seen, present = watcher.poll(now=2)
    assert watcher.paused() == {} and [s.path for s in seen] == [inbox / "a.jpg"]


def test_removed_or_replaced_inbox_is_noticed_within_seconds(tmp_path: Path) -> None:
    """With a rescan hours away, an inbox renamed away is paused within a check interval, and a new folder
    at its path is watched afresh and rescanned at once (its files are seen without waiting)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = Watcher([("r", inbox)], mode="poll", poll_interval=3600, rescan_interval=3600, ignore=IgnoreMatcher())
    watcher.poll(now=0)
    os.rename(inbox, tmp_path / "away")
    assert watcher.poll(now=1.5) == ([], None) and "r" in watcher.paused()
    assert watcher.outage("r", now=2.0)
    inbox.mkdir()
    (inbox / "new.jpg").write_bytes(b"x")
    seen, _ = watcher.poll(now=3.0)
    assert [s.path.name for s in seen] == ["new.jpg"] and watcher.paused() == {}
    assert watcher.take_renewed() == [inbox]
    shutil.rmtree(inbox)
    os.rename(tmp_path / "away", inbox)  # replaced while we were not looking: another inode
    (inbox / "back.jpg").write_bytes(b"x")
    seen, _ = watcher.poll(now=4.5)
    assert [s.path.name for s in seen] == ["back.jpg"] and watcher.take_renewed() == [inbox]
    assert not watcher.outage("r", now=4.5 + 601)


def test_held_inbox_takes_nothing_until_released(tmp_path: Path) -> None:
    """hold() (a share not mounted, a user's pause) reports its reason and yields no sightings; release()
    rescans at once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jpg").write_bytes(b"x")
    watcher = _watcher(inbox)
    watcher.hold("r", "paused by a user")
    assert watcher.poll(now=0) == ([], None) and watcher.paused() == {"r": "paused by a user"}
    watcher.release("r")
    assert [s.path.name for s in watcher.poll(now=1)[0]] == ["a.jpg"] and watcher.paused() == {}


def test_inbox_folders_take_the_parent_group_and_mode(tmp_path: Path) -> None:
    """A rule inbox created under a group-writable, setgid inbox folder (2775) gets the same mode and group."""
    parent = tmp_path / "inbox"
    parent.mkdir()
    os.chmod(parent, 0o2775)
    gid = os.stat(parent).st_gid
    ensure_inbox_dir(parent / "rule" / "sub")
    for folder in (parent / "rule", parent / "rule" / "sub"):
        st = os.stat(folder)
        assert stat.S_IMODE(st.st_mode) == 0o2775 and st.st_gid == gid


def test_only_folders_under_the_root_may_be_created(tmp_path: Path) -> None:
    """An absolute folder outside the root that does not exist is reported as an unmounted share."""
    root, share = tmp_path / "root", tmp_path / "nas" / "photos"
    assert missing_share(root, [root / "inbox" / "x", share]) == share
    share.mkdir(parents=True)
    assert missing_share(root, [root / "inbox" / "x", share]) is None


def test_inotify_overflow_rescans_at_once(tmp_path: Path) -> None:
    """When watchdog reports that the kernel dropped events, every inbox is rescanned on the next poll
    instead of at the next periodic rescan."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = Watcher([("r", inbox)], mode="poll", poll_interval=3600, rescan_interval=3600, ignore=IgnoreMatcher())
    watcher.start()
    try:
        watcher.poll(now=0)
        (inbox / "missed.jpg").write_bytes(b"x")
        assert watcher.poll(now=1)[0] == []
        lost = "Inotify queue overflowed; filesystem events were lost"
        logging.getLogger("watchdog.observers.inotify_c").warning(lost)
        assert [s.path.name for s in watcher.poll(now=2)[0]] == ["missed.jpg"]
    finally:
        watcher.stop()


def test_library_log_lines_go_through_structlog(capsys: pytest.CaptureFixture[str]) -> None:
    """A standard-library log line (watchdog's overflow warning) is printed as a structlog JSON line."""
    configure_logging("json", "info")
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; events were lost")
    [line] = [json.loads(raw) for raw in capsys.readouterr().err.splitlines() if raw.strip()]
    assert line["event"].startswith("Inotify queue overflowed") and line["level"] == "warning"
    assert line["logger"] == "watchdog.observers.inotify_c"


def test_reading_a_file_wakes_no_watcher_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events mode asks inotify only for the events the watcher uses: the daemon's own reads of a file
    (intake hashes it, the worker reads it) deliver nothing, while a write, a rename and the inbox going
    away still do."""
    from retouchd import watcher as watcher_module

    kinds: list[str] = []
    real = watcher_module._Handler.on_any_event

    def spy(self: object, event: object) -> None:
        kinds.append(event.event_type)  # type: ignore[attr-defined]
        real(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(watcher_module._Handler, "on_any_event", spy)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = Watcher([("r", inbox)], mode="events", poll_interval=3600, rescan_interval=3600, ignore=IgnoreMatcher())
    watcher.start()
    try:
        watcher.poll(now=0)
        (inbox / "a.jpg").write_bytes(b"x")
        for _ in range(50):
            if "closed" in kinds:
                break
            time.sleep(0.05)
        kinds.clear()
        for _ in range(5):
            assert (inbox / "a.jpg").read_bytes() == b"x"
        os.rename(inbox / "a.jpg", inbox / "b.jpg")
        for _ in range(50):
            if "moved" in kinds:
                break
            time.sleep(0.05)
        time.sleep(0.2)
        assert kinds == ["moved"], "reads must not reach the watcher's threads"
        shutil.rmtree(inbox)
        for _ in range(50):
            if "deleted" in kinds:
                break
            time.sleep(0.05)
        assert "deleted" in kinds and "opened" not in kinds
    finally:
        watcher.stop()
