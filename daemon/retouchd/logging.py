"""structlog set-up: JSON lines under systemd or when piped, readable console output on a TTY.

Each record reaches the stream in one `write` call, newline included. The daemon and its worker processes
share one stderr; `print` (structlog's PrintLogger) writes a long record in several pieces, and a piece
from another process could land in between: two JSON objects merged on one line, lost to journald or a
log shipper. On a pipe one write is indivisible up to PIPE_BUF (4 KiB) and on an O_APPEND file at any size.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
from typing import Any, TextIO

import structlog

from retouchd.pipesafe import reader_gone, silence

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_LOCK = threading.Lock()


class OneWriteLogger:
    """A structlog logger that hands each rendered record to the OS in a single write.

    `pipe_safe`: when the reader has gone (EPIPE: `retouchd run | tee` and Ctrl-C), stderr is pointed at
    /dev/null and the record dropped instead of raising (retouchd.pipesafe)."""

    def __init__(self, file: TextIO, pipe_safe: bool = False) -> None:
        self._file = file
        self._pipe_safe = pipe_safe

    def msg(self, message: str) -> None:
        data = (message + "\n").encode("utf-8", "replace")
        with _LOCK:  # threads of one process: the rest of a short write must follow its start
            try:
                self._write(data)
            except OSError as exc:
                if not (self._pipe_safe and reader_gone(exc)):
                    raise
                silence(self._file)

    def _write(self, data: bytes) -> None:
        try:
            fd = self._file.fileno()
        except (AttributeError, OSError, ValueError):  # a stand-in for stderr (rich's progress, tests)
            self._file.write(data.decode("utf-8"))
            self._file.flush()
            return
        self._file.flush()  # anything print()ed earlier goes first
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


def _factory(*_args: Any) -> OneWriteLogger:
    return OneWriteLogger(sys.stderr)


def _pipe_safe_factory(*_args: Any) -> OneWriteLogger:
    return OneWriteLogger(sys.stderr, pipe_safe=True)


def protect_log_stream() -> None:
    """Log records that meet a closed pipe are dropped (retouchd.pipesafe); each record still reaches the
    stream in one write. The rest of the set-up stays as `configure_logging` made it."""
    structlog.configure(logger_factory=_pipe_safe_factory)


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        _console_with_rich()
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_factory,
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (watchdog, alembic) print through structlog too;
    # their chatter below warning stays quiet.
    logging.basicConfig(handlers=[StdlibToStructlog()], level=max(LEVELS[level], logging.WARNING), force=True)


def _console_with_rich() -> None:
    """structlog was imported without rich (retouchd/__init__.py: JSON logging never needs it); a console
    renderer gets rich's tracebacks as before, by loading structlog's dev module again now that rich may load."""
    if getattr(structlog.dev, "rich", None) is None and importlib.util.find_spec("rich") is not None:
        importlib.reload(structlog.dev)


class StdlibToStructlog(logging.Handler):
    """Forwards standard-library log records to structlog, so that every printed line has one format."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = structlog.get_logger(record.name)
        method = getattr(logger, record.levelname.lower(), logger.info)
        try:
            method(record.getMessage(), logger=record.name)
        except Exception:
            self.handleError(record)
