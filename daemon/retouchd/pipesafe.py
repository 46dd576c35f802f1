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
import sys
from typing import TextIO

import structlog


class PipeSafeStream:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def _closed(self, exc: OSError) -> bool:
        if not isinstance(exc, BrokenPipeError) and exc.errno not in (errno.EPIPE, errno.EBADF):
            return False
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # later writers (warnings, C libraries) see /dev/null too
            os.close(devnull)
        return True

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            if not self._closed(exc):
                raise
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            if not self._closed(exc):
                raise

    def isatty(self) -> bool:
        return not self.broken and self._stream.isatty()


def protect_log_stream() -> None:
    """Send structlog's output (configured for stderr) through a PipeSafeStream; the rest of the set-up
    stays as `configure_logging` made it."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(PipeSafeStream(sys.stderr)))  # type: ignore[arg-type]
