"""`retouchd process`: a rule's steps on given files, in this process; no watching, no archiving."""

from __future__ import annotations

import os
from pathlib import Path

import click

from retouchd.masks import find_sidecar
from retouchd.pipeline import Task, run_task
from retouchd.pool import resolve_devices
from retouchd.rules import Rule
from retouchd.settings import Settings


def process_files(settings: Settings, rule: Rule, files: list[Path], out_dir: Path) -> int:
    """Returns the number of files that failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_devices(settings.workers.devices)[0]
    failures = 0
    cache: dict[str, object] = {}

    class _Cache:
        def get(self, key: str, load: object) -> object:
            if key not in cache:
                cache[key] = load()  # type: ignore[operator]
            return cache[key]

    for path in files:
        if not path.is_file():
            click.echo(f"FAILED {path}: not a file", err=True)
            failures += 1
            continue
        sidecar = find_sidecar(path)
        task = Task(
            rule=rule.name, source=str(path), sidecar=str(sidecar) if sidecar else None,
            steps=[options.model_dump() for options in rule.steps], output=rule.output.model_dump(),
            work_dir=str(out_dir), device=device, allow_cpu_fallback=rule.cpu_fallback,
            cpu_threads=settings.workers.cpu_threads, max_input_pixels=settings.limits.max_input_pixels,
            max_dimension=settings.limits.max_dimension, max_file_bytes=settings.limits.max_file_bytes,
            max_output_pixels=settings.limits.max_output_pixels, engines=dict(settings.engines),
        )
        result = run_task(task, models=_Cache())
        if not result.ok or result.tmp_path is None or result.output_name is None:
            click.echo(f"FAILED {path}: {result.error} (step {result.error_step})", err=True)
            failures += 1
            continue
        target = out_dir / result.output_name
        os.chmod(result.tmp_path, settings.file_mode)
        os.replace(result.tmp_path, target)
        seconds = sum(float(record["seconds"]) for record in result.steps)
        click.echo(f"{path} → {target} ({seconds:.2f} s)")
    return failures
