"""structlog set-up: JSON lines under systemd or when piped, readable console output on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (watchdog, alembic) print through structlog too;
    # their chatter below warning stays quiet.
    logging.basicConfig(handlers=[StdlibToStructlog()], level=max(LEVELS[level], logging.WARNING), force=True)


class StdlibToStructlog(logging.Handler):
    """Forwards standard-library log records to structlog, so that every printed line has one format."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = structlog.get_logger(record.name)
        method = getattr(logger, record.levelname.lower(), logger.info)
        try:
            method(record.getMessage(), logger=record.name)
        except Exception:
            self.handleError(record)
