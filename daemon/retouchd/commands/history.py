"""`retouchd history` and `retry`: read (and for retry, requeue) jobs in the database."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from retouchd.archive import return_companions
from retouchd.commands._output import CommandError
from retouchd.exceptions import RetouchdError
from retouchd.fsops import TEMP_PREFIX, move_verified, sha256_file, unique_path
from retouchd.settings import Settings
from retouchd.statusfile import read_statuses
from retouchd.store import Duplicate, Job, JobState, Store, open_store, utcnow
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
        raise CommandError(str(exc)) from None


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
    from retouchd.commands._output import print_json

    store = open_store_or_exit(settings)
    cutoff = utcnow() - parse_since(since) if since else None
    jobs = store.history(since=cutoff, states=[JobState.FAILED] if only_failed else None, limit=limit)
    if as_json:
        print_json([job_dict(j) for j in jobs])
        return
    for line in history_lines(jobs, _duplicates(store, [j.id for j in jobs])):
        click.echo(line)
    for line in orphan_lines(read_statuses(settings.state)):
        click.echo(line)


def _duplicates(store: Store, ids: list[int]) -> dict[int, list[Duplicate]]:
    """The second copies archived instead of processed, by the job whose content they repeat."""
    found: dict[int, list[Duplicate]] = {}
    if not ids:
        return found
    with store.session() as s:
        rows = s.scalars(select(Duplicate).where(Duplicate.job_id.in_(ids)).order_by(Duplicate.id)).all()
    for row in rows:
        found.setdefault(row.job_id, []).append(row)
    return found


def history_lines(jobs: list[Job], duplicates: dict[int, list[Duplicate]]) -> list[str]:
    """A header, one line per job and one more per duplicate of it (archived, not processed again)."""
    if not jobs:
        return ["no jobs match"]
    rule_width = max(4, *(len(j.rule) for j in jobs))
    lines = [f"{'ID':<7} {'UPDATED':<19} {'RULE':<{rule_width}} {'STATE':<9} {'TIME':>7}  FILE  (OUTPUT or REASON)"]
    for j in jobs:
        when = j.updated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        seconds = sum(float(s.get("seconds", 0)) for s in j.steps or [])
        detail = j.error if j.state == JobState.FAILED else (j.output_path or "")
        name = _one_line(j.rel_path)
        lines.append(f"#{j.id:<6} {when} {j.rule:<{rule_width}} {j.state:<9} {seconds:6.2f}s  {name}"
                     + (f"  ({_one_line(detail)})" if detail else ""))
        for d in duplicates.get(j.id, []):
            at = d.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{'':7} {at} {'':{rule_width}} {'duplicate':<9} {'':>7}  "
                         f"{_one_line(Path(d.source_path).name)}  (same content as #{j.id}; archived as "
                         f"{_one_line(d.archive_path)}, not processed again)")
    return lines


def orphan_lines(daemons: list[dict[str, Any]]) -> list[str]:
    """Masks in an inbox whose image never arrived, as the running daemons report them."""
    orphans = [o for d in daemons if d.get("running") for o in d.get("orphan_masks") or []]
    if not orphans:
        return []
    return ["", f"{len(orphans)} mask(s) without an image (not processed; drop the image beside it or remove it):",
            *(f"  {_one_line(o['path'])}  (rule {o['rule']})" for o in orphans)]


def _one_line(text: str) -> str:
    return printable(text).replace("\n", "\\n")


def _content(job: Job, failed: Path) -> dict[str, Any] | None:
    """The new identity of a file the user changed in failed/ (None if unchanged). The key is built as
    intake builds it (the mask's bytes count; a `reprocess` rule's key is unique per drop)."""
    digest = sha256_file(failed)
    if digest == job.sha256:
        return None
    content = digest
    sidecar = failed.with_name(Path(job.sidecar_path).name) if job.sidecar_path else None
    if sidecar is not None and sidecar.exists():
        content = hashlib.sha256(f"{digest}+{sha256_file(sidecar)}".encode()).hexdigest()
    key = f"{content}/{uuid.uuid4().hex}" if "/" in job.content_key else content
    st = failed.stat()
    return {"sha256": digest, "content_key": key, "size": st.st_size, "mtime": st.st_mtime}


def retry_jobs(settings: Settings, ids: list[int], *, all_failed: bool) -> int:
    """Send failed jobs back: the given IDs (with or without --failed), else with --failed every failed job."""
    store = open_store_or_exit(settings)
    targets = [(i, store.get(i)) for i in ids] if ids else [(j.id, j) for j in store.in_states([JobState.FAILED])]
    code = 0
    for job_id, job in targets:
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
        content = _content(job, failed)
        # The file comes back under a hidden name (the watcher ignores it), then the row, then the real name:
        # a running daemon's intake finds this job for the file (one job per file), and a slot that claims
        # the job finds its file.
        hidden = dest.with_name(f"{TEMP_PREFIX}retry-{dest.name}")
        move_verified(failed, hidden, content["sha256"] if content else job.sha256)
        try:
            store.retry(job.id, str(dest), str(Path(job.rel_path).parent / dest.name), content=content)
        except IntegrityError:
            move_verified(hidden, failed, None)
            click.echo(f"#{job.id}: the changed file in failed/ has the content of another job of rule "
                       f"{job.rule!r}; it was processed already. Remove {failed} or drop it in the inbox", err=True)
            code = 1
            continue
        os.rename(hidden, dest)
        return_companions(failed, job.sidecar_path)
        changed = " (changed since it failed: processed as its new content)" if content else ""
        click.echo(f"#{job.id}: back in the inbox as {dest}{changed}")
    return code
