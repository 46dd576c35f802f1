"""Durable file operations: no clobbering, no escaping, cross-device moves verified."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from retouchd import fsops
from retouchd.exceptions import UnsafePathError


def test_unique_path_never_overwrites(tmp_path: Path) -> None:
    """A taken name gets ' (2)', ' (3)', … before the extension."""
    (tmp_path / "a.jpg").write_bytes(b"1")
    (tmp_path / "a (2).jpg").write_bytes(b"2")
    assert fsops.unique_path(tmp_path / "a.jpg") == tmp_path / "a (3).jpg"
    assert fsops.unique_path(tmp_path / "b.jpg") == tmp_path / "b.jpg"


@pytest.mark.parametrize("rel", ["../x.jpg", "/etc/passwd", "a/../../x.jpg", ""])
def test_safe_join_refuses_escape(tmp_path: Path, rel: str) -> None:
    """Relative paths with '..' or absolute paths cannot leave the root."""
    with pytest.raises(UnsafePathError):
        fsops.safe_join(tmp_path, rel)
    assert fsops.safe_join(tmp_path, "a/b c/x.jpg") == tmp_path / "a" / "b c" / "x.jpg"


def test_publish_refuses_to_replace(tmp_path: Path) -> None:
    """publish() never replaces an existing file, and leaves the temp file for the caller."""
    tmp, dst = tmp_path / "t.tmp", tmp_path / "out" / "a.png"
    tmp.write_bytes(b"new")
    dst.parent.mkdir()
    dst.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        fsops.publish(tmp, dst)
    assert dst.read_bytes() == b"old" and tmp.exists()
    fsops.publish(tmp, tmp_path / "out" / "b.png", mode=0o640)
    assert (tmp_path / "out" / "b.png").read_bytes() == b"new" and not tmp.exists()
    assert (tmp_path / "out" / "b.png").stat().st_mode & 0o777 == 0o640


_real_link, _real_rename = os.link, os.rename


def _no_link(src: str, dst: str) -> None:
    """Pretend that different folders are on different devices."""
    if Path(src).parent != Path(dst).parent:
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    _real_link(src, dst)


def _no_rename(src: str, dst: str) -> None:
    if Path(src).parent != Path(dst).parent:
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    _real_rename(src, dst)


def test_cross_device_move_copies_verifies_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Across devices a move copies, fsyncs, checks the hash, then deletes the source."""
    src, dst = tmp_path / "in" / "a.jpg", tmp_path / "arch" / "a.jpg"
    src.parent.mkdir()
    src.write_bytes(b"original bytes")
    digest = fsops.sha256_file(src)
    monkeypatch.setattr(fsops.os, "link", _no_link)
    monkeypatch.setattr(fsops.os, "rename", _no_rename)
    fsops.move_verified(src, dst, digest)
    assert dst.read_bytes() == b"original bytes" and not src.exists()
    assert [p.name for p in dst.parent.iterdir()] == ["a.jpg"]


def test_cross_device_move_detects_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the bytes differ from the expected hash, the source stays and no copy is left behind."""
    src, dst = tmp_path / "a.jpg", tmp_path / "arch" / "a.jpg"
    src.write_bytes(b"changed")
    monkeypatch.setattr(fsops.os, "link", _no_link)
    monkeypatch.setattr(fsops.os, "rename", _no_rename)
    with pytest.raises(fsops.TransientError):
        fsops.move_verified(src, dst, "0" * 64)
    assert src.exists() and not os.path.exists(dst) and list(dst.parent.iterdir()) == []


def test_move_refuses_symlink(tmp_path: Path) -> None:
    """A source that became a symlink is never moved (its target could be anywhere)."""
    target = tmp_path / "t.jpg"
    target.write_bytes(b"x")
    os.symlink(target, tmp_path / "l.jpg")
    with pytest.raises(UnsafePathError):
        fsops.move_verified(tmp_path / "l.jpg", tmp_path / "arch" / "l.jpg", None)


def test_move_cut_short_between_link_and_unlink_is_finished(tmp_path: Path) -> None:
    """A move that stopped after the link (both names, one inode) is finished by removing the source; a
    destination with other bytes is never overwritten."""
    from retouchd.fsops import move_verified

    src, dst = tmp_path / "in" / "a.png", tmp_path / "archive" / "a.png"
    src.parent.mkdir()
    dst.parent.mkdir()
    src.write_bytes(b"photo")
    os.link(src, dst)
    move_verified(src, dst, None)
    assert not src.exists() and dst.read_bytes() == b"photo"
    src.write_bytes(b"other photo")
    with pytest.raises(FileExistsError):
        move_verified(src, dst, None)
    assert src.read_bytes() == b"other photo" and dst.read_bytes() == b"photo"
