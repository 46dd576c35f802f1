"""retouchd: a watch-folder daemon for text removal, object removal and upscaling."""

import sys


def _structlog_without_rich() -> None:
    """Import structlog while `rich` cannot be imported: structlog's dev module otherwise loads rich (and with
    it pygments) for the console renderer's tracebacks, ~35 ms of CPU in the daemon and again in each worker,
    which log JSON. `retouchd.logging` reloads that module with rich when a console renderer is configured."""
    if "structlog" in sys.modules:
        return
    blocked = "rich" not in sys.modules
    if blocked:
        sys.modules["rich"] = None  # type: ignore[assignment]  # import rich -> ImportError
    try:
        import structlog  # noqa: F401
    finally:
        if blocked:
            del sys.modules["rich"]


_structlog_without_rich()

__version__ = "0.1.0"
