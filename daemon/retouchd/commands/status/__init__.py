"""`retouchd status`: one frame, a live view, or JSON."""

from __future__ import annotations

from typing import Any

from retouchd.commands.history import open_store_or_exit
from retouchd.commands.status.data import reader, status_data
from retouchd.settings import Settings


def show_status(settings: Settings, *, as_json: bool, once: bool, interval: float) -> None:
    open_store_or_exit(settings).engine.dispose()  # creates and migrates the database if needed
    engine = reader(settings.db_url)

    def collect() -> dict[str, Any]:
        return status_data(engine, settings.state)

    if as_json:
        from retouchd.commands._output import print_json

        print_json(collect())
        return
    from rich.console import Console

    from retouchd.commands.status.view import live, render

    console = Console(highlight=False)
    root = str(settings.root.absolute())
    if once or not console.is_terminal:
        if not console.is_terminal:
            console = Console(highlight=False, width=120)
        console.print(render(collect(), root=root))
        return
    live(collect, interval, root, console)
