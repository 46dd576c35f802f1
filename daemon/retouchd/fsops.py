"""Durable file operations: no-clobber names, fsync'd publishes and moves, paths that cannot escape a root."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from retouchd.exceptions import TransientError, UnsafePathError

CHUNK = 1 << 20
TEMP_PREFIX = ".retouchd-"
TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EBUSY,
                    errno.ETIMEDOUT, errno.ENOTCONN, errno.EHOSTDOWN, errno.ENODEV}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def safe_join(root: Path, rel: str | Path) -> Path:
    """`root / rel`, refusing absolute parts and `..` so that the result stays under `root`."""
    rel_path = Path(rel)
    if rel_path.is_absolute() or any(part in ("..", "") for part in rel_path.parts) or not rel_path.parts:
        raise UnsafePathError(f"path {str(rel)!r} would leave {root}; files must stay inside their folder")
    joined = root / rel_path
    if os.path.commonpath([root, joined]) != str(root):
        raise UnsafePathError(f"path {str(rel)!r} would leave {root}")
    return joined


NAME_MAX = 255


def fit_name(stem: str, tail: str) -> str:
    """`stem + tail`, with the stem shortened so that the name fits in NAME_MAX bytes."""
    budget = NAME_MAX - len(os.fsencode(tail))
    raw = os.fsencode(stem)
    if len(raw) <= budget:
        return stem + tail
    for cut in range(budget, max(0, budget - 4), -1):  # do not split a UTF-8 character
        try:
            return raw[:cut].decode("utf-8") + tail
        except UnicodeDecodeError:
            continue
    return os.fsdecode(raw[:budget]) + tail


def temp_sibling(target: Path, tail: str = ".tmp") -> Path:
    """The hidden temp name beside `target` (shortened so that a 255-byte name still has one)."""
    return target.with_name(fit_name(f"{TEMP_PREFIX}{target.name}", tail))


def unique_path(target: Path) -> Path:
    """`target`, or `name (2).ext`, `name (3).ext`, … : the first name that does not exist yet (shortened
    if needed to stay a legal file name)."""
    stem, suffix = target.stem, target.suffix
    first = target.with_name(fit_name(stem, suffix))
    if not os.path.lexists(first):
        return first
    n = 2
    while True:
        candidate = target.with_name(fit_name(stem, f" ({n}){suffix}"))
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def ensure_dir(path: Path, mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=mode)


def same_content(a: Path, b: Path, expected_sha256: str | None) -> bool:
    """`a` and `b` are one file (same inode) or hold the same bytes (`expected_sha256`, when given)."""
    try:
        if os.path.samefile(a, b):
            return True
        want = expected_sha256 or sha256_file(a)
        return sha256_file(b) == want and (expected_sha256 is None or sha256_file(a) == want)
    except OSError:
        return False


def _no_fault(point: str) -> None:
    """Production: no fault injection."""


def _link_into_place(src: Path, dst: Path, fault: Callable[[str], None] = _no_fault) -> None:
    """Atomically give `src`'s inode the name `dst` without ever replacing an existing `dst`."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
        os.rename(src, dst)
        return
    fault("after-link")
    os.unlink(src)


def _copy_durably(src: Path, dst: Path, mode: int | None) -> str:
    """Copy `src` to a hidden sibling of `dst`, fsync it, rename into place; return the copy's sha256."""
    tmp = temp_sibling(dst)
    digest = hashlib.sha256()
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        with os.fdopen(src_fd, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        shutil.copystat(src, tmp, follow_symlinks=False)
        _link_into_place(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return digest.hexdigest()


def publish(tmp: Path, dst: Path, *, mode: int | None = None) -> None:
    """Move a finished, fsync'd temp file to `dst` (which must not exist); durable when this returns."""
    ensure_dir(dst.parent)
    if mode is not None:
        os.chmod(tmp, mode)
    try:
        _link_into_place(tmp, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_durably(tmp, dst, mode)
        tmp.unlink()
    fsync_dir(dst.parent)


def move_verified(src: Path, dst: Path, expected_sha256: str | None,
                  fault: Callable[[str], None] = _no_fault) -> None:
    """Move `src` to `dst` (no clobber); across devices copy + fsync + verify + delete.

    Idempotent: a move cut short after `dst` was written (same inode, or the same bytes) is finished by
    removing `src`; a `src` that is already gone with `dst` in place is a move that completed."""
    ensure_dir(dst.parent)
    if os.path.lexists(dst) and (not os.path.lexists(src) or same_content(src, dst, expected_sha256)):
        if os.path.lexists(src):
            os.unlink(src)
            fsync_dir(src.parent)
        return
    if os.path.islink(src):
        raise UnsafePathError(f"{src} became a symlink; refusing to move it")
    try:
        _link_into_place(src, dst, fault)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        digest = _copy_durably(src, dst, None)
        if expected_sha256 is not None and digest != expected_sha256:
            dst.unlink()
            raise TransientError(f"{src} changed while being moved (hash mismatch); will retry") from None
        fsync_dir(dst.parent)
        src.unlink()
        fsync_dir(src.parent)
        return
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def as_transient(exc: OSError) -> bool:
    return exc.errno in TRANSIENT_ERRNOS
