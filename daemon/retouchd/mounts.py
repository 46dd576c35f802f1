"""Which filesystem a path lives on, from the mount table: network and FUSE mounts get polled."""

from __future__ import annotations

import os
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
