"""A log stream that survives its reader going away.

`retouchd run 2>&1 | tee run.log` and Ctrl-C: the terminal sends SIGINT to the whole pipeline, `tee` exits,
and every later log line meets a closed pipe (EPIPE). A log call that raises there would end the drain half
way (or a slot thread), leaving the daemon stuck or its status file behind. After the first EPIPE the
stream points fd 2 at /dev/null and drops what it is given: stopping cleanly matters more than the lines
nobody can read any more.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import TextIO


def reader_gone(exc: OSError) -> bool:
    return isinstance(exc, BrokenPipeError) or exc.errno in (errno.EPIPE, errno.EBADF)


def silence(stream: TextIO) -> None:
    """Point the stream's descriptor at /dev/null: later writers (warnings, C libraries) see it too."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
