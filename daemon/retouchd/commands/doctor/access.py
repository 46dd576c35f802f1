"""Whether a user (the service user, not necessarily the one asking) may write into a folder.

For the current user the kernel answers (`access(2)`: ACLs and read-only mounts included). For another
user the mode bits of the folder and of every folder above it are read as the kernel would apply them;
ACLs are not read, so a folder opened up by an ACL alone reads as closed.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "retouchd"
"""The user that systemd/retouchd.sysusers creates and retouchd.service runs as."""


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @property
    def group(self) -> str:
        return group_name(self.gid)

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def lookup_user(name: str) -> User:
    """KeyError if there is no such user."""
    entry = pwd.getpwnam(name)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid)))


def default_user() -> tuple[User, str]:
    """The user to check for, and why: the service user when root asks and it exists, else the caller."""
    if os.geteuid() == 0:
        try:
            return lookup_user(SERVICE_USER), "the service user"
        except KeyError:
            pass
    entry = pwd.getpwuid(os.geteuid())
    groups = frozenset({*os.getgroups(), os.getegid()})
    return User(entry.pw_name, entry.pw_uid, os.getegid(), groups), "the current user"


def _allows(st: os.stat_result, user: User, bits: int) -> bool:
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        granted = (st.st_mode >> 6) & 7
    elif st.st_gid in user.groups:
        granted = (st.st_mode >> 3) & 7
    else:
        granted = st.st_mode & 7
    return granted & bits == bits


def describe(path: Path) -> str:
    st = path.stat()
    return f"owner {owner_name(st.st_uid)}:{group_name(st.st_gid)}, mode {stat.S_IMODE(st.st_mode):04o}"


@dataclass(frozen=True)
class Access:
    ok: bool
    why: str = ""
    blocked_at: Path | None = None
    """The folder above that the user cannot enter, when that is the reason."""


def can_write(path: Path, user: User) -> Access:
    """Whether `user` may create and remove files in the existing folder `path`, and if not, why."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return Access(False, "is on a read-only file system")
        if user.is_current:
            if os.access(path, os.W_OK | os.X_OK):
                return Access(True)
            return Access(False, f"is not writable by {user.name} ({describe(path)})")
        for parent in reversed(path.absolute().parents):
            if not _allows(parent.stat(), user, 1):
                return Access(False, f"is out of reach: {user.name} cannot enter {parent} ({describe(parent)})",
                              parent)
        if not _allows(path.stat(), user, 7):
            return Access(False, f"is not writable by {user.name} ({describe(path)})")
    except OSError as exc:
        return Access(False, f"cannot be checked: {exc.strerror or exc}")
    return Access(True)


def file_writable(path: Path, user: User) -> bool:
    if user.is_current:
        return os.access(path, os.R_OK | os.W_OK)
    return _allows(path.stat(), user, 6)


def nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")
