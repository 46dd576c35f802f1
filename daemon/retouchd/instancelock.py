"""One daemon per state folder (SQLite) or per host_id (PostgreSQL): an flock held for the daemon's life.

Two daemons on one SQLite root would both call themselves the same host and race on every job; the lock
makes the second one stop at start-up with one line. The kernel drops the lock when the process dies, so a
daemon killed with kill -9 never blocks its restart.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from retouchd.exceptions import RetouchdError


class AlreadyRunning(RetouchdError):
    """Another daemon holds this state folder (or host_id)."""


def lock_path(state_dir: Path, host_id: str | None) -> Path:
    """`state/retouchd.lock` for SQLite; one per host_id when several hosts share a PostgreSQL database."""
    if host_id is None:
        return state_dir / "retouchd.lock"
    return state_dir / f"retouchd-{re.sub(r'[^A-Za-z0-9._-]', '_', host_id)}.lock"


def acquire(path: Path) -> int:
    """Hold an exclusive flock on `path`; return its descriptor (kept open for the daemon's life)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
        os.close(fd)
        raise AlreadyRunning(f"another retouchd (pid {holder}) is already running on {path.parent}; stop it "
                             "first, or give this one its own state_dir (and host_id)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
