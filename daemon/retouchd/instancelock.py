"""One daemon per state folder (SQLite) or per host_id (PostgreSQL): an flock held for the daemon's life.

Two daemons on one SQLite root would both call themselves the same host and race on every job; the lock
makes the second one stop at start-up with one line. The kernel drops the lock when the process dies, so a
daemon killed with kill -9 never blocks its restart.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from retouchd.exceptions import RetouchdError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from retouchd.store import Store


class AlreadyRunning(RetouchdError):
    """Another daemon holds this state folder (or host_id)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the service user)
        return True
    return True


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


def refuse_live_twin(store: Store, host_id: str, heartbeat: float) -> None:
    """PostgreSQL: another daemon that reports under this host_id (on another machine, or with another
    state folder) and is still alive makes this one stop: two hosts by one name would steal each other's
    jobs. A row left by a daemon that was killed stops advancing, so it is waited out, not refused."""
    window = 3 * heartbeat
    seen = {h.id: h.seen_at for h in store.hosts(seen_within=window) if h.host == host_id}
    if not seen:
        return
    time.sleep(heartbeat + 1.0)  # a live daemon touches its row every `heartbeat` seconds
    for row in store.hosts(seen_within=window):
        if row.id in seen and row.seen_at > seen[row.id]:
            raise AlreadyRunning(f"another retouchd with host_id {host_id!r} is running (pid {row.pid}); give each "
                                 "daemon its own host_id")


def sqlite_file(engine: Engine) -> Path | None:
    """The SQLite file behind `engine` (None for other databases)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(str(engine.url.database)).absolute()


def file_identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of `path`, or None if it is gone: a deleted or replaced file changes it."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
