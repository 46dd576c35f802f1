"""`retouchd models list|verify`: the bundled models, where their weights come from, and whether they load."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from retouchd.models.registry import ModelInfo, list_models, verify_models


def _row(info: ModelInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["files"] = [str(f) for f in info.files]
    return data


def _print(infos: list[ModelInfo], *, verified: bool) -> None:
    for info in infos:
        status = ("OK" if info.ok else f"FAILED: {info.error}") if verified else ("available" if info.ok else
                                                                                  f"missing: {info.error}")
        scales = ", ".join(f"×{s}" for s in info.scales) or "any"
        params = ", ".join(f"{p:,}" for p in info.parameters) or "-"
        click.echo(f"{info.name:<8} {info.description}")
        click.echo(f"         scales {scales}; parameters {params}; source {info.source}"
                   f"{' ' + info.version if info.version else ''}; licence: {info.licence}")
        for path, digest in zip(info.files, info.sha256, strict=False):
            click.echo(f"         {digest[:16]}…  {path}")
        click.echo(f"         {status}")


def _report(infos: list[ModelInfo], *, as_json: bool, verified: bool) -> int:
    if as_json:
        from retouchd.commands._output import print_json

        print_json([_row(i) for i in infos])
    else:
        _print(infos, verified=verified)
    return 0 if all(i.ok for i in infos) else 1


def list_command(*, as_json: bool) -> int:
    return _report(list_models(), as_json=as_json, verified=False)


def verify_command(*, as_json: bool) -> int:
    return _report(verify_models(), as_json=as_json, verified=True)
