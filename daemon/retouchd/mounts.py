"""Which filesystem a path lives on, from the mount table: network and FUSE mounts get polled. Also which
folders may be created (only those under the root) and how an inbox folder is created."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "davfs", "lustre", "gpfs",
    "beegfs", "ocfs2", "gfs2", "virtiofs", "vboxsf", "vmhgfs", "prl_fs",
})


@dataclass(frozen=True)
class Mount:
    point: Path
    fstype: str
    source: str

    @property
    def is_network(self) -> bool:
        return self.fstype in NETWORK_TYPES or self.fstype.startswith("fuse")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.encode().decode("unicode_escape") if "\\" in field else field


def read_mounts(text: str | None = None) -> list[Mount]:
    if text is None:
        try:
            text = MOUNTINFO.read_text()
        except OSError:
            return []
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(Path(_unescape(fields[4])), tail[0], _unescape(tail[1])))
    return mounts


def mount_of(path: Path, mounts: list[Mount] | None = None) -> Mount | None:
    """The mount that holds `path` (the longest mount point that is a prefix of it)."""
    resolved = Path(os.path.realpath(path))
    best: Mount | None = None
    for mount in mounts if mounts is not None else read_mounts():
        inside = resolved == mount.point or mount.point in resolved.parents
        if inside and (best is None or len(mount.point.parts) >= len(best.point.parts)):
            best = mount
    return best


def watch_mode_for(path: Path, configured: str, mounts: list[Mount] | None = None) -> str:
    """`events` or `poll`: auto polls network/FUSE mounts, where inotify misses other hosts' writes."""
    if configured != "auto":
        return configured
    mount = mount_of(path, mounts)
    return "poll" if mount is not None and mount.is_network else "events"


def missing_share(root: Path, paths: Iterable[Path]) -> Path | None:
    """The first folder outside `root` that does not exist. Only folders under the root are ever created:
    an absolute one that is missing is a share that is not mounted, and creating it would hide files under
    the mount point on the local disk."""
    base = root.absolute()
    for path in paths:
        if not path.absolute().is_relative_to(base) and not path.is_dir():
            return path
    return None


def ensure_inbox_dir(path: Path) -> None:
    """Create an inbox folder and its missing parents, each with its parent's group and permission bits
    (setgid kept), so that a group-writable inbox (2775) stays writable for the group that drops files."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        parent = os.stat(folder.parent)
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        with contextlib.suppress(OSError):  # not a member of the parent's group: keep ours
            os.chown(folder, -1, parent.st_gid)
        os.chmod(folder, stat.S_IMODE(parent.st_mode))
