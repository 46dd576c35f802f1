"""Reads and moves of inbox files that stay beneath the inbox root (SPEC §6.5).

Every path below the root is walked one component at a time with `dir_fd` and `O_NOFOLLOW`, so a folder
swapped for a symlink mid-job cannot send a read or a move outside the inbox. The file itself is opened with
`O_NONBLOCK | O_NOFOLLOW` and must be a regular file (`fstat`) before a byte is read: a FIFO cannot block
the daemon and a device node cannot be hashed forever. A move links the inode we hold into place and then
unlinks the inbox name only if it still names that inode; a file with more than one link is copied out, so
an archive never shares an inode with a file outside the inbox.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from retouchd.exceptions import InputError, TransientError, UnsafePathError
from retouchd.fsops import CHUNK, ensure_dir, fsync_dir, sha256_file, temp_sibling

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_LINK_FALLBACK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


class _ReadCount:
    def __init__(self) -> None:
        self.lock, self.total = threading.Lock(), 0
        self.local = threading.local()


_READS = _ReadCount()


def count_read(n: int) -> None:
    """Add `n` bytes read from an inbox file to this process's total (what `inbox_bytes_read` reports)."""
    with _READS.lock:
        _READS.total += n
    _READS.local.total = getattr(_READS.local, "total", 0) + n


def thread_bytes_read() -> int:
    """Bytes this thread has read from inbox files: a worker's job threads each count their own job's."""
    return int(getattr(_READS.local, "total", 0))


def inbox_bytes_read() -> int:
    """Bytes this process has read from inbox files (hashing, decoding, copying out): every read of an
    inbox file's contents goes through this module, so several hosts' reads of a share can be counted."""
    return _READS.total


def read_chunk(fd: int, size: int) -> bytes:
    """os.read on an inbox file, counted."""
    chunk = os.read(fd, size)
    count_read(len(chunk))
    return chunk


class NotRegularError(InputError):
    """The inbox entry is not a regular file (a symlink, FIFO, device, socket or folder)."""


def kind_of(mode: int) -> str:
    """What an inbox entry is, in words for an error message."""
    if stat.S_ISLNK(mode):
        return "a symbolic link; links are never followed in an inbox, copy the file itself"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file; write a regular file instead"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a regular file"


def relative(root: Path, path: Path) -> Path:
    """`path` relative to `root`; refuses a path outside it or one with `..` or `.` parts."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise UnsafePathError(f"{path} is not inside {root}; nothing outside an inbox is read or moved") from None
    if not rel.parts or any(part in ("..", ".", "") for part in rel.parts):
        raise UnsafePathError(f"{path} would leave {root}")
    return rel


@contextlib.contextmanager
def parent_fd(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(fd of the folder holding `path`, its name there), every folder below `root` opened without
    following a symlink: a component that is a link fails with ELOOP or ENOTDIR."""
    rel = relative(root, path)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root itself is configuration
    try:
        for part in rel.parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePathError(f"{path}: the folder {part!r} became a symlink or a file; "
                                          "nothing outside an inbox is followed") from None
                raise
            os.close(fd)
            fd = child
        yield fd, rel.name
    finally:
        os.close(fd)


def lstat(root: Path, path: Path) -> os.stat_result:
    """The entry's own stat (a link is not followed), reached beneath `root`."""
    with parent_fd(root, path) as (dfd, name):
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)


def exists(root: Path, path: Path) -> bool:
    try:
        lstat(root, path)
    except (FileNotFoundError, NotADirectoryError, UnsafePathError):
        return False
    return True


def _open_leaf(dfd: int, name: str, shown: Path) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularError(f"{shown} is {kind_of(stat.S_IFLNK)}") from None
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket (or a device without a driver)
            mode = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode
            raise NotRegularError(f"{shown} is {kind_of(mode)}") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularError(f"{shown} is {kind_of(st.st_mode)}")
    return fd, st


@contextlib.contextmanager
def open_file(root: Path | None, path: Path) -> Iterator[tuple[int, os.stat_result]]:
    """(fd, fstat) of a regular file reached beneath `root` (or `path` itself when root is None, for files
    named on the command line); raises NotRegularError before reading anything that is not a regular file."""
    if root is None:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd, st = _open_leaf(dfd, path.name, path)
        finally:
            os.close(dfd)
    else:
        with parent_fd(root, path) as (dfd, name):
            fd, st = _open_leaf(dfd, name, path)
    try:
        yield fd, st
    finally:
        os.close(fd)


def hash_file(root: Path | None, path: Path) -> tuple[str, os.stat_result]:
    """sha256 of a regular inbox file and its fstat; a change while hashing raises TransientError."""
    with open_file(root, path) as (fd, st):
        digest = hashlib.sha256()
        while chunk := read_chunk(fd, CHUNK):
            digest.update(chunk)
        after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise TransientError(f"{path} changed while it was being read; it is still being written")
    return digest.hexdigest(), after


def read_file(root: Path | None, path: Path, limit: int) -> tuple[bytes, os.stat_result]:
    """Up to `limit` + 1 bytes of a regular inbox file, and its fstat at open."""
    with open_file(root, path) as (fd, st):
        parts, left = [], limit + 1
        while left > 0 and (chunk := read_chunk(fd, min(CHUNK, left))):
            parts.append(chunk)
            left -= len(chunk)
    return b"".join(parts), st


def _unlink_if_same(dfd: int, name: str, held: os.stat_result) -> bool:
    """Remove the inbox name only if it still names the inode that was moved; False if it was swapped."""
    try:
        now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
        return False
    os.unlink(name, dir_fd=dfd)
    return True


def _copy_out(fd: int, dst: Path, expected_sha256: str | None, mode: int) -> None:
    """Copy the open file to a hidden sibling of `dst`, fsync, verify, and link it into place (no clobber)."""
    tmp = temp_sibling(dst)
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            os.lseek(fd, 0, os.SEEK_SET)
            while chunk := read_chunk(fd, CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            raise TransientError(f"{dst.name}: the inbox file changed while being moved (hash mismatch); will retry")
        os.chmod(tmp, stat.S_IMODE(mode))
        os.link(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _no_fault(point: str) -> None:
    """Production: no fault injection."""


def same_as(root: Path, src: Path, dst: Path, expected_sha256: str | None) -> bool:
    """The inbox entry `src` and `dst` are one inode, or hold the same bytes (`expected_sha256` when given):
    `dst` is then a move of `src` cut short between link and unlink (or a copy that finished)."""
    try:
        st, dst_st = lstat(root, src), os.lstat(dst)
    except (OSError, UnsafePathError):
        return False
    if (st.st_dev, st.st_ino) == (dst_st.st_dev, dst_st.st_ino):
        return True
    if not (stat.S_ISREG(st.st_mode) and stat.S_ISREG(dst_st.st_mode)) or st.st_size != dst_st.st_size:
        return False
    try:
        here = hash_file(root, src)[0]
        return here == sha256_file(dst) and (expected_sha256 is None or here == expected_sha256)
    except (OSError, InputError, UnsafePathError):
        return False


def finish_move(root: Path, src: Path) -> None:
    """Remove the inbox entry `src` whose move to an existing, identical destination was cut short."""
    with parent_fd(root, src) as (dfd, name):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dfd)
        with contextlib.suppress(OSError):
            os.fsync(dfd)


def move_out(root: Path, src: Path, dst: Path, expected_sha256: str | None = None,
             fault: Callable[[str], None] = _no_fault) -> str:
    """Move the inbox entry `src` to `dst` (outside the inbox, must not exist) without following a link.

    Returns how: "moved" (same inode), "copied" (more than one link, or across filesystems: the archive
    gets its own inode) or "link moved" (a symlink, FIFO or device node itself, never its target).
    """
    ensure_dir(dst.parent)
    with parent_fd(root, src) as (dfd, name):
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            how = _move_special(dfd, name, st, dst)
        elif st.st_nlink == 1 and _try_link(dfd, name, dst):
            how = "moved"
        else:
            fd, held = _open_leaf(dfd, name, src)
            try:
                _copy_out(fd, dst, expected_sha256, held.st_mode)
            finally:
                os.close(fd)
            st, how = held, "copied"
        fsync_dir(dst.parent)
        fault("after-link")
        if not _unlink_if_same(dfd, name, st):
            raise TransientError(f"{src} was replaced while being moved; the new file stays in the inbox")
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    return how


def _try_link(dfd: int, name: str, dst: Path) -> bool:
    try:
        os.link(name, dst, src_dir_fd=dfd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _LINK_FALLBACK:
            return False
        raise
    return True


def _move_special(dfd: int, name: str, st: os.stat_result, dst: Path) -> str:
    """Move a link, FIFO or device node itself (never opened, never followed)."""
    try:
        os.link(name, dst, src_dir_fd=dfd, follow_symlinks=False)
        return "link moved"
    except OSError as exc:
        if exc.errno not in _LINK_FALLBACK:
            raise
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=dfd), dst)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dst, stat.S_IMODE(st.st_mode))
    else:
        raise UnsafePathError(f"{dst.name} is {kind_of(st.st_mode)} on another filesystem; remove it by hand")
    return "link moved"
