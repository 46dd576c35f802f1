"""`retouchd history` and `retry`: read (and for retry, requeue) jobs in the database."""

from __future__ import annotations

import contextlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from retouchd.archive import error_json_path
from retouchd.exceptions import RetouchdError
from retouchd.fsops import move_verified, unique_path
from retouchd.settings import Settings
from retouchd.store import Job, JobState, Store, open_store, utcnow
from retouchd.store.states import printable

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not a period; use e.g. 30m, 12h, 1d, 2w", param_hint="--since")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class NoRoot(click.ClickException):
    exit_code = 2


def open_store_or_exit(settings: Settings) -> Store:
    """The store of an existing root; commands that only read never create one (exit 2 instead)."""
    if not settings.database_url and not (settings.state / "retouchd.db").is_file():
        raise NoRoot(f"no retouchd root at {settings.root.absolute()} (no database {settings.state / 'retouchd.db'}); "
                     "pass --root or --config for the daemon's root, or start `retouchd run` there first")
    try:
        return open_store(settings.db_url)
    except RetouchdError as exc:
        raise click.ClickException(str(exc)) from None


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "rule": job.rule, "state": job.state, "source": job.source_path, "rel_path": job.rel_path,
        "sha256": job.sha256, "size": job.size, "attempts": job.attempts, "device": job.device, "host": job.host,
        "step": job.current_step, "progress": job.progress, "steps": job.steps, "output": job.output_path,
        "archive": job.archive_path, "failed_path": job.failed_path, "error": job.error,
        "error_step": job.error_step, "created_at": job.created_at, "updated_at": job.updated_at,
        "started_at": job.started_at, "finished_at": job.finished_at,
    }


def show_history(settings: Settings, *, only_failed: bool, since: str | None, limit: int, as_json: bool) -> None:
    from retouchd.cli import print_json

    store = open_store_or_exit(settings)
    cutoff = utcnow() - parse_since(since) if since else None
    jobs = store.history(since=cutoff, states=[JobState.FAILED] if only_failed else None, limit=limit)
    if as_json:
        print_json([job_dict(j) for j in jobs])
        return
    for j in jobs:
        when = j.updated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        seconds = sum(float(s.get("seconds", 0)) for s in j.steps or [])
        detail = j.error if j.state == JobState.FAILED else (j.output_path or "")
        name = printable(j.rel_path).replace("\n", "\\n")
        click.echo(f"#{j.id:<6} {when} {j.rule:<14} {j.state:<9} {seconds:6.2f}s {name}  {printable(detail or '')}")
    if not jobs:
        click.echo("no jobs match")


def retry_jobs(settings: Settings, ids: list[int], *, all_failed: bool) -> int:
    store = open_store_or_exit(settings)
    jobs = store.in_states([JobState.FAILED]) if all_failed else [store.get(i) for i in ids]
    code = 0
    for job_id, job in zip(ids or [j.id for j in jobs if j], jobs, strict=False):
        if job is None or job.state != JobState.FAILED:
            click.echo(f"#{job_id}: not a failed job; nothing to retry", err=True)
            code = 1
            continue
        if not job.failed_path or not Path(job.failed_path).exists():
            click.echo(f"#{job.id}: the file is no longer in failed/ ({job.failed_path}); drop it in the inbox again",
                       err=True)
            code = 1
            continue
        failed = Path(job.failed_path)
        dest = unique_path(Path(job.source_path))
        move_verified(failed, dest, job.sha256)
        if job.sidecar_path:
            sidecar = failed.with_name(Path(job.sidecar_path).name)
            if sidecar.exists():
                move_verified(sidecar, unique_path(Path(job.sidecar_path)), None)
        with contextlib.suppress(OSError):
            error_json_path(failed).unlink()
        store.retry(job.id, str(dest), str(Path(job.rel_path).parent / dest.name))
        click.echo(f"#{job.id}: back in the inbox as {dest}")
    return code
