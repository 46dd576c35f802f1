"""Command line. Heavy modules (store, pool, models) are imported inside commands: `--help` stays fast."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from retouchd import __version__
from retouchd.commands._output import CommandError
from retouchd.exceptions import ConfigError, RetouchdError
from retouchd.messages import PREFIX

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED_JOBS, EXIT_CONFIG, EXIT_RUNTIME = 0, 1, 2, 3
_NO_DATABASE = frozenset({"process", "rules_check"})
"""Commands that never open the database: they skip the store's import (SQLAlchemy + Alembic, ~1 s)."""


def common_options(func: F) -> F:
    """--root, --config, --rules, --database-url on every command (SPEC §7)."""

    @click.option("--root", type=click.Path(path_type=Path), help="Folder that holds inbox/, outbox/, … [./retouch]")
    @click.option("--config", "config_file", type=click.Path(path_type=Path), envvar="RETOUCHD_CONFIG",
                  help="TOML settings file [$RETOUCHD_CONFIG, else /etc/retouchd/retouchd.toml if present]")
    @click.option("--rules", "rule_files", type=click.Path(path_type=Path), multiple=True,
                  help="Rule file (repeatable) [the shipped rules/default.toml]")
    @click.option("--database-url", help="SQLAlchemy URL [sqlite in ROOT/state/retouchd.db]")
    @click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default=None)
    @click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
    @functools.wraps(func)
    def wrapper(*args: Any, root: Path | None, config_file: Path | None, rule_files: tuple[Path, ...],
                database_url: str | None, log_format: str | None, log_level: str | None, **kwargs: Any) -> Any:
        from retouchd.logging import configure_logging
        from retouchd.settings import load_settings

        overrides: dict[str, Any] = {"root": root, "database_url": database_url}
        if rule_files:
            overrides["rule_files"] = list(rule_files)
        log_overrides = {k: v for k, v in (("format", log_format), ("level", log_level)) if v}
        try:
            settings = load_settings(config_file, **overrides)
            if log_overrides:
                settings.log = settings.log.model_copy(update=log_overrides)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        configure_logging(settings.log.format, settings.log.level)
        # `run` re-reads the settings file on SIGHUP (its rule_files), with the same flags as now.
        click.get_current_context().meta["retouchd.settings_loader"] = functools.partial(
            load_settings, config_file, **overrides)
        if func.__name__ not in _NO_DATABASE:
            from retouchd.store.schema import set_path_map

            set_path_map(settings.path_map)
        return func(*args, settings=settings, **kwargs)

    return wrapper  # type: ignore[return-value]


def _rules(settings: Any) -> Any:
    from retouchd.rules import load_rules

    try:
        return load_rules(settings.rule_files or None)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _fail(message: str, code: int) -> None:
    click.echo(f"{PREFIX}{message}", err=True)
    sys.exit(code)


click.ClickException.exit_code = EXIT_CONFIG


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="retouchd")
def main() -> None:
    """retouchd: drop images into inbox folders; get them cleaned and upscaled in the outbox."""


@main.command()
@click.option("--once", is_flag=True, help="Process what is there (waiting for files to settle), then exit.")
@common_options
def run(settings: Any, once: bool) -> None:
    """Run the daemon: create the folders, watch the inboxes, process files as they arrive."""
    from retouchd.daemon import Daemon

    rules = _rules(settings)
    loader = click.get_current_context().meta.get("retouchd.settings_loader")
    try:
        code = Daemon(settings, rules, once=once, settings_loader=loader).run()
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except RetouchdError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    except OSError as exc:  # start-up could not create or open something; shutdown already undid the rest
        _fail(f"{exc}; check the folders' permissions and free space", EXIT_RUNTIME)
    sys.exit(code)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on [web_port, else 8750]; the address is web_address [127.0.0.1].")
@common_options
def web(settings: Any, port: int | None) -> None:
    """The web interface on its own: dashboard, history, review queue, retry, pause/resume (Ctrl-C stops)."""
    from retouchd.commands.web import run_web

    rules = _rules(settings)
    try:
        run_web(settings, rules, port, click.get_current_context().meta.get("retouchd.settings_loader"))
    except RetouchdError as exc:
        _fail(str(exc), EXIT_CONFIG)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--rule", "rule_name", required=True, help="Name of the rule whose steps to run.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("-r", "--recursive", is_flag=True, help="Also take the matching files of subfolders of a FOLDER.")
@click.option("--any-name", is_flag=True, help="Run files the rule's `match` would not take.")
@common_options
def process(settings: Any, files: tuple[Path, ...], rule_name: str, out_dir: Path, recursive: bool,
            any_name: bool) -> None:
    """Run a rule's steps on FILES (or the matching files of a FOLDER) once: no watching, no archiving.

    One line per file; log lines only with --log-format or --log-level. Exit 0 only if every file succeeded.
    """
    from retouchd.commands.process import process_files
    from retouchd.logging import configure_logging

    params = click.get_current_context().params
    if params.get("log_format") is None and params.get("log_level") is None:
        # The per-file lines say what happened; the job log would repeat it between them.
        settings.log = settings.log.model_copy(update={"level": "error"})
        configure_logging(settings.log.format, settings.log.level)
    rules = _rules(settings)
    try:
        rule = rules.by_name(rule_name)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    failures = process_files(settings, rule, list(files), out_dir, recursive=recursive, any_name=any_name)
    sys.exit(EXIT_FAILED_JOBS if failures else EXIT_OK)


@main.command()
@click.option("--once", is_flag=True, help="Print one frame and exit (also what happens when not on a terminal).")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes of the live view.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def status(settings: Any, once: bool, interval: float, as_json: bool) -> None:
    """Live view of the queue by rule, jobs in flight, throughput, devices and recent failures (q quits)."""
    from retouchd.commands.status import show_status

    show_status(settings, as_json=as_json, once=once, interval=interval)


@main.command()
@click.option("--failed", "only_failed", is_flag=True, help="Only failed jobs.")
@click.option("--since", default=None, help="Only jobs changed within this period, e.g. 30m, 12h, 1d, 2w.")
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def history(settings: Any, only_failed: bool, since: str | None, limit: int, as_json: bool) -> None:
    """Past jobs, newest first."""
    from retouchd.commands.history import show_history

    show_history(settings, only_failed=only_failed, since=since, limit=limit, as_json=as_json)


@main.command()
@click.option("--since", default="1d", show_default=True, help="Jobs finished within this period (30m, 12h, 1d, "
              "2w), or 'all'.")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path, dir_okay=False), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
@click.option("--rule", "rule_names", multiple=True, help="Only this rule (repeatable).")
@click.option("--outcome", "outcomes", multiple=True, type=click.Choice(["done", "review", "failed"]),
              help="Only this outcome (repeatable).")
@click.option("--limit", type=click.IntRange(1), default=500, show_default=True, help="Newest jobs to include.")
@click.option("--thumb-size", type=click.IntRange(64, 2048), default=360, show_default=True,
              help="Longest side of each preview, in pixels.")
@click.option("--external-images", is_flag=True, help="Write previews into OUTPUT_files/ beside the page "
              "instead of embedding them.")
@common_options
def report(settings: Any, since: str, out: Path, rule_names: tuple[str, ...], outcomes: tuple[str, ...], limit: int,
           thumb_size: int, external_images: bool) -> None:
    """A before/after HTML gallery of finished jobs with their steps, timings and metrics; failures with reasons."""
    from retouchd.commands.history import open_store_or_exit, parse_since
    from retouchd.commands.report import write_report

    period = None if since.strip().lower() == "all" else parse_since(since)
    summary = write_report(settings, open_store_or_exit(settings), out, since=period,
                           since_text=None if period is None else since, rules=list(rule_names),
                           outcomes=list(outcomes), limit=limit, box=thumb_size, external=external_images)
    click.echo(f"wrote {summary['path']}: {summary['jobs']} job(s) ({summary['done']} done, {summary['review']} "
               f"review, {summary['failed']} failed), {summary['previews']} preview(s)"
               + (f"; {summary['pending']} still queued or running" if summary["pending"] else ""))


@main.command()
@click.argument("job_ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job.")
@common_options
def retry(settings: Any, job_ids: tuple[int, ...], all_failed: bool) -> None:
    """Send failed files back to their inbox for another try."""
    from retouchd.commands.history import retry_jobs

    if not job_ids and not all_failed:
        raise click.UsageError("give job IDs or --failed")
    sys.exit(retry_jobs(settings, list(job_ids), all_failed=all_failed))


@main.group()
def rules() -> None:
    """Inspect rule files."""


@rules.command("check")
@click.argument("args", nargs=-1, type=click.Path(path_type=Path))
@common_options
def rules_check(settings: Any, args: tuple[Path, ...]) -> None:
    """Validate rules ([FILE.toml]) and say which rule and steps each PATH would get."""
    from retouchd.commands.rulecheck import check

    files = [a for a in args if a.suffix == ".toml" and not _under_inbox(settings, a)]
    paths = [a for a in args if a not in files]
    if files:
        settings.rule_files = files
    sys.exit(check(settings, paths))


def _under_inbox(settings: Any, path: Path) -> bool:
    return settings.inbox in path.absolute().parents


@main.command()
@click.option("--user", "user_name", help="Check folders for this user [the service user 'retouchd' when run as "
              "root and it exists, else you].")
@click.option("--no-models", is_flag=True, help="Skip loading and running the models (faster).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--systemd", "systemd_unit", is_flag=True, help="Print retouchd.service for this installation "
              "(ExecStart at this retouchd) instead of checking.")
@common_options
def doctor(settings: Any, user_name: str | None, no_models: bool, as_json: bool, systemd_unit: bool) -> None:
    """Check folders, permissions, mounts and watch modes, the database, devices and models; print fixes.

    Exit 1 if any check fails.
    """
    from retouchd.commands.doctor import doctor as run_doctor

    if systemd_unit:
        from retouchd.commands.systemd_unit import unit_for_this_install

        config = click.get_current_context().params.get("config_file")
        click.echo(unit_for_this_install(config), nl=False)
        sys.exit(EXIT_OK)

    sys.exit(run_doctor(settings, user_name=user_name, models=not no_models, as_json=as_json))


@main.group()
def models() -> None:
    """Super-resolution and inpainting models: what is installed, and whether it loads."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json: bool) -> None:
    """Models available offline, their source, parameter count and checksum."""
    from retouchd.commands.modelcmd import list_command

    sys.exit(list_command(as_json=as_json))


@models.command("verify")
@click.option("--json", "as_json", is_flag=True)
def models_verify(as_json: bool) -> None:
    """Load every bundled model and check its weights; exit 1 if any fails."""
    from retouchd.commands.modelcmd import verify_command

    sys.exit(verify_command(as_json=as_json))
