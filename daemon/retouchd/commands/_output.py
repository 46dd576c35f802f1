"""Output helpers shared by the commands (so that no command imports cli.py)."""

from __future__ import annotations

import json
from typing import Any

import click


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
