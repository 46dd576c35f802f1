"""watchdog's inotify walks a new folder by path (`os.walk`) to watch and report what is already in it; a
folder swapped for a symlink to an outside folder in that instant is then listed, outside the inbox, with
every folder below it. Here those two walks open each folder from its parent's descriptor without following
a link (like `beneath.py`), so a swapped folder is skipped: nothing outside an inbox is listed. The inbox
root itself may be configured through a link and is walked as before.

The patch applies to the watchdog versions whose recursive watch group has these two methods (checked at
import; any other version is left as it is and a warning names the gap).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("retouchd.watchsafe")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
P = TypeVar("P", bytes, Path)


def _open_top(top: bytes, root: bytes | None, follow_top: bool) -> int:
    """`top` opened as a folder: beneath `root` every component from `root` down is opened from its parent
    without following a link (a folder above `top` swapped for a link fails: OSError or UnsafePathError)."""
    if root is None or top == root:
        return os.open(top, _DIR_FLAGS & ~os.O_NOFOLLOW if follow_top else _DIR_FLAGS)
    from pathlib import Path

    from retouchd import beneath

    with beneath.parent_fd(Path(os.fsdecode(root)), Path(os.fsdecode(top))) as (dfd, name):
        return os.open(name, _DIR_FLAGS, dir_fd=dfd)


def walk_beneath(top: bytes, *, follow_top: bool = False,
                 root: bytes | None = None) -> Iterator[tuple[bytes, list[bytes], list[bytes]]]:
    """(folder, subfolder names, other names) for `top` and every folder below it, like `os.walk`, but each
    folder is opened from its parent's descriptor with O_NOFOLLOW; `top` itself only when `follow_top`. With
    `root` (the watched inbox, `top` beneath it), the folders between `root` and `top` are opened the same way:
    a path string is never resolved through a link."""
    from retouchd.exceptions import UnsafePathError

    try:
        first = _open_top(top, root, follow_top)
    except (OSError, UnsafePathError):
        return
    for folder, entries in walk_fds(first, top, lambda parent, name: os.path.join(parent, os.fsencode(name))):
        folders: list[bytes] = []
        others: list[bytes] = []
        for entry in entries:
            try:
                (folders if entry.is_dir(follow_symlinks=False) else others).append(os.fsencode(entry.name))
            except OSError:
                continue
        yield folder, folders, others


def walk_fds(first: int, top: P, join: Callable[[P, str], P],
             keep: Callable[[str], bool] | None = None) -> Iterator[tuple[P, list[os.DirEntry[str]]]]:
    """(folder, its entries that `keep` accepts) for the folder open at `first` (named `top`; the descriptor is
    closed here) and every accepted folder below it, each opened from its parent's descriptor with O_NOFOLLOW:
    a folder that became a link or a file since it was listed is skipped, nothing outside is listed. A folder's
    descriptor stays open while its entries are handled (their `stat` reads through it)."""
    stack = [(first, top)]
    try:
        while stack:
            fd, folder = stack.pop()
            try:
                with os.scandir(fd) as listing:
                    entries = [entry for entry in listing if keep is None or keep(entry.name)]
                yield folder, entries
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((os.open(entry.name, _DIR_FLAGS, dir_fd=fd), join(folder, entry.name)))
                    except OSError:
                        continue  # ELOOP / ENOTDIR: it became a link or a file since it was listed
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)


def harden_watchdog() -> bool:
    """Replace the recursive watch group's two path walks; False (and a warning) if this watchdog differs."""
    try:
        from watchdog.observers import inotify as wd_inotify
        from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, Mask
    except ImportError:
        return False
    group: Any = getattr(wd_inotify, "InotifyWatchGroup", None)
    if group is None or not all(hasattr(group, name) for name in ("_add_all_callbacks", "_recursive_simulate",
                                                                       "_add_callback")):
        log.warning("this watchdog version walks new inbox folders by path; a folder swapped for a link "
                    "in that instant could be listed", version=getattr(wd_inotify, "__name__", "?"))
        return False
    if getattr(group, "_retouchd_hardened", False):
        return True

    add_all_original, simulate_original = group._add_all_callbacks, group._recursive_simulate

    def add_all_callbacks(self: Any, path: bytes) -> None:
        if path == self.path or not self.is_recursive:
            add_all_original(self, path)  # the inbox itself (which may be configured through a link)
            return
        for folder, _, _ in walk_beneath(path, root=self.path):
            self._add_callback(folder)

    def recursive_simulate(self: Any, src_path: bytes) -> list[Any]:
        if src_path == self.path:
            return list(simulate_original(self, src_path))
        events = []
        for folder, folders, others in walk_beneath(src_path, root=self.path):
            wd = self._active_callbacks_by_path.get(folder)
            if wd is None:
                continue
            created_folder = Mask(InotifyConstants.IN_CREATE | InotifyConstants.IN_ISDIR)
            events += [InotifyEvent(wd, created_folder, 0, name) for name in folders]
            events += [InotifyEvent(wd, InotifyConstants.IN_CREATE, 0, name) for name in others]
        return events

    group._add_all_callbacks = add_all_callbacks
    group._recursive_simulate = recursive_simulate
    group._retouchd_hardened = True
    return True
