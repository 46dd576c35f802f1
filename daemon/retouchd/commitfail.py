"""Words for a commit that failed on the file system: "outbox not writable: …", not a traceback.

The commit (publish into the outbox or review folder, move into the archive) runs in the daemon; a folder
the service user cannot write is a setup problem with a known fix, so it is said in one line and the job is
retried later, as any other interrupted commit."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from retouchd.rules import RuleFolders

_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


def _folder_of(path: str, folders: RuleFolders) -> tuple[str, Path] | None:
    for name in ("outbox", "review", "archive", "failed"):
        root: Path = getattr(folders, name)
        if Path(path) == root or root in Path(path).parents:
            return name, root
    return None


def commit_error(exc: BaseException, folders: RuleFolders | None) -> str | None:
    """A one-line reason for a permission or read-only error inside one of the rule's folders, else None."""
    if not isinstance(exc, OSError) or exc.errno not in _ACCESS or folders is None:
        return None
    for name in (exc.filename2, exc.filename):
        where = _folder_of(os.fsdecode(name), folders) if name is not None else None
        if where is not None:
            folder, root = where
            why = "is on a read-only file system" if exc.errno == errno.EROFS else "denies the service user"
            return (f"{folder} not writable: {root} {why} ({exc.strerror}); fix its owner or mode "
                    f"(`retouchd doctor` says how); the job will be retried")
    return None
