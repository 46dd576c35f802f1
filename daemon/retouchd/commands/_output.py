"""Output helpers shared by the commands (so that no command imports cli.py)."""

from __future__ import annotations

import json
from typing import Any

import click

from retouchd.messages import PREFIX


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


class CommandError(click.ClickException):
    """A configuration or start-up error: printed as `retouchd: message` (like every other error of ours,
    instead of click's `Error: `), exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"{PREFIX}{self.format_message()}", err=True)
