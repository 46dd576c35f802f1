"""`retouchd process`: a rule's steps on given files, in this process; no watching, no archiving.

On a terminal, progress bars (overall files, and the current file's step with its tiles) are drawn on
stderr; otherwise each file gets one plain line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from retouchd.commands.process_inputs import collect
from retouchd.devices import prefer_passive_openmp, resolve_devices
from retouchd.fsops import unique_path
from retouchd.pipeline import run_task
from retouchd.rules import Rule
from retouchd.settings import Settings
from retouchd.settle import IgnoreMatcher
from retouchd.sidecars import find_sidecar
from retouchd.steps.base import DictCache
from retouchd.task import Task


class _Plain:
    """Progress for pipes and logs: one line per file."""

    def start(self, path: Path) -> None:
        """No line until the file is done."""

    def step(self, name: str) -> None:
        """Steps are not reported line by line."""

    def tiles(self, done: int, total: int) -> None:
        """Tiles are not reported line by line."""

    def done(self, line: str, *, ok: bool) -> None:
        click.echo(line, err=not ok)


class _Bars(_Plain):
    """rich progress bars on stderr: files done / total, and the current file's step and tiles."""

    def __init__(self, progress: Any, total: int) -> None:
        self.progress = progress
        self.overall = progress.add_task("files", total=total)
        self.current = progress.add_task("", total=None, visible=False)
        self.name = ""

    def start(self, path: Path) -> None:
        self.name = path.name
        self.progress.update(self.current, description=self.name, total=None, completed=0, visible=True)

    def step(self, name: str) -> None:
        self.progress.update(self.current, description=f"{self.name} · {name}", total=None, completed=0)

    def tiles(self, done: int, total: int) -> None:
        self.progress.update(self.current, total=total, completed=done, refresh=True)

    def done(self, line: str, *, ok: bool) -> None:
        super().done(line, ok=ok)  # rich prints redirected output above the bars
        self.progress.advance(self.overall)
        self.progress.update(self.current, visible=False)


@contextmanager
def _reporter(total: int, settings: Settings) -> Iterator[_Plain]:
    if not sys.stderr.isatty():
        yield _Plain()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from retouchd.logging import configure_logging

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Result lines stay on stdout when stdout is a pipe; on the terminal they print above the bars.
    with Progress(*columns, console=console, transient=True, redirect_stdout=sys.stdout.isatty()) as progress:
        # Log lines go through rich's stand-in for stderr, so that they print above the bars, not across them.
        configure_logging(settings.log.format, settings.log.level)
        try:
            yield _Bars(progress, total)
        finally:
            progress.stop()
            configure_logging(settings.log.format, settings.log.level)


def process_files(settings: Settings, rule: Rule, files: list[Path], out_dir: Path, *, recursive: bool = False,
                  any_name: bool = False) -> int:
    """Returns the number of files that failed (or were refused)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefer_passive_openmp()
    inputs = collect(files, rule, IgnoreMatcher(settings.watch.ignore), recursive=recursive, any_name=any_name)
    written: set[Path] = set()
    device = resolve_devices(settings.workers.devices)[0]
    failures = 0
    cache = DictCache()

    with _reporter(len(inputs), settings) as report:
        for item in inputs:
            path = item.path
            report.start(path)
            if not path.is_file():
                report.done(f"FAILED {path}: not a file", ok=False)
                failures += 1
                continue
            if item.refused:
                report.done(f"SKIPPED {path}: {item.refused}", ok=False)
                failures += 1
                continue
            sidecar = find_sidecar(path)
            task = Task.build(rule, settings, source=str(path), work_dir=str(out_dir), device=device,
                              cpu_threads=settings.workers.cpu_threads, sidecar=str(sidecar) if sidecar else None)
            result = run_task(task, models=cache, progress=report.tiles, on_step=report.step)
            if not result.ok or result.tmp_path is None or result.output_name is None:
                report.done(f"FAILED {path}: {result.error} (step {result.error_step})", ok=False)
                failures += 1
                continue
            target = out_dir / item.out_rel.parent / result.output_name
            if target in written:  # two inputs with one name: the second gets "name (2)", never overwrites
                target = unique_path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(result.tmp_path, settings.file_mode)
            os.replace(result.tmp_path, target)
            written.add(target)
            seconds = sum(float(record["seconds"]) for record in result.steps)
            report.done(f"{path} → {target} ({seconds:.2f} s)", ok=True)
    return failures
