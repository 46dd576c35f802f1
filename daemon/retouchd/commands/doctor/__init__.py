"""`retouchd doctor`: is this installation ready to run? Folders, mounts and watch modes, the database,
devices, models and the daemon itself; each problem comes with a fix. Exit 1 if any check fails.

Checks never change anything: no folder is created, no database migrated, no file written outside a
temporary folder (the sidecar mask for a model test).
"""

from __future__ import annotations

import os
import socket
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import click

from retouchd.commands.doctor.access import Access, User, can_write, describe, file_writable, nearest_existing
from retouchd.exceptions import ConfigError
from retouchd.mounts import Mount, mount_of, read_mounts, watch_mode_for
from retouchd.rules import RuleSet, load_rules, rule_folders
from retouchd.settings import Settings
from retouchd.statusfile import read_statuses

Level = Literal["ok", "warn", "fail"]
LOW_SPACE = 1 << 30
INOTIFY_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")


@dataclass
class Check:
    section: str
    label: str
    level: Level
    detail: str
    fix: str | None = None


class Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, section: str, label: str, level: Level, detail: str, fix: str | None = None) -> None:
        self.checks.append(Check(section, label, level, detail, fix))

    @property
    def failed(self) -> bool:
        return any(c.level == "fail" for c in self.checks)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_folder(report: Report, label: str, path: Path, user: User, root: Path | None = None) -> None:
    if root is not None and not path.exists() and not path.absolute().is_relative_to(root.absolute()):
        report.add("folders", label, "warn", f"{path} does not exist; is the share mounted? (only folders under "
                   "the root are created: its rule stays paused until it appears)", f"mount the share at {path}")
        return
    if path.exists() and not path.is_dir():
        report.add("folders", label, "fail", f"{path} is a file, not a folder",
                   f"move {path} away, or point this folder elsewhere in the settings or rule")
        return
    if not path.exists():
        base = nearest_existing(path.parent)
        access = can_write(base, user)
        if access.ok:
            report.add("folders", label, "ok", f"{path} (missing; created at start)")
        else:
            report.add("folders", label, "fail", f"{path} is missing and {user.name} cannot create it: {base} "
                       f"{access.why}", _access_fix(access, user, path, missing=True))
        return
    access = can_write(path, user)
    if not access.ok:
        report.add("folders", label, "fail", f"{path} {access.why}", _access_fix(access, user, path, missing=False))
        return
    free = _free(path)
    gib = f"{free / (1 << 30):.1f} GiB free"
    if free < LOW_SPACE:
        report.add("folders", label, "warn", f"{path} writable, only {gib}",
                   "free some space: a full disk makes every job wait and retry")
    else:
        report.add("folders", label, "ok", f"{path} writable, {gib}")


def _access_fix(access: Access, user: User, path: Path, *, missing: bool) -> str:
    if access.blocked_at is not None:
        return (f"sudo chmod o+x {access.blocked_at}   (or move the folder somewhere {user.name} can reach)")
    if "read-only" in access.why:
        return "mount the file system read-write, or point this folder at a writable disk"
    if missing:
        return f"sudo install -d -o {user.name} -g {user.group} {path}"
    st = path.stat()
    if user.uid in (st.st_uid, 0):
        # chown would change nothing: the owner already is the user (or root, who ignores mode bits).
        if user.uid != 0 and st.st_mode & 0o300 != 0o300:
            return f"chmod u+wx {path}"
        return (f"owner and mode already let {user.name} write, so something else blocks it: an immutable "
                f"flag (lsattr -d {path}; sudo chattr -i {path}), an ACL (getfacl {path}) or SELinux/AppArmor")
    return f"sudo chown -R {user.name}:{user.group} {path}   (or give {user.name} write access another way)"


def check_folders(report: Report, settings: Settings, rules: RuleSet | None, user: User) -> None:
    seen: set[Path] = set()
    wanted = [("state", settings.state), ("work", settings.work)]
    if rules is not None:
        for name, folders in rule_folders(settings, rules).items():
            wanted += [(f"{name}: {kind}", getattr(folders, kind))
                       for kind in ("inbox", "outbox", "archive", "failed", "review")]
    for label, path in wanted:
        if path not in seen:
            seen.add(path)
            check_folder(report, label, path, user, settings.root if ":" in label else None)


def _count_dirs(root: Path, limit: int) -> int:
    count = 0
    for _dirpath, dirnames, _files in os.walk(root):
        count += 1
        if count > limit:
            break
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return count


def check_mounts(report: Report, settings: Settings, rules: RuleSet | None, mounts: list[Mount] | None = None) -> None:
    mounts = read_mounts() if mounts is None else mounts
    configured = settings.watch.mode
    watches_left = _max_watches()
    for name, folders in rule_folders(settings, rules).items() if rules is not None else []:
        inbox = folders.inbox
        mount = mount_of(inbox, mounts)
        mode = watch_mode_for(inbox, configured, mounts)
        where = f"{mount.fstype} ({mount.source})" if mount else "an unknown file system"
        network = mount is not None and mount.is_network
        how = (f"poll every {settings.watch.poll_interval:g} s" if mode == "poll"
               else f"events (inotify), rescan every {settings.watch.rescan_interval:g} s")
        why = "forced by watch.mode" if configured != "auto" else ("network mount" if network else "local disk")
        detail = f"{inbox} on {where}: {how} ({why})"
        if mode == "events" and network:
            report.add("mounts", name, "warn", detail, 'set watch.mode = "auto" (or "poll"): inotify does not see '
                       "files that other hosts write to a network share")
            continue
        if mode == "events" and watches_left is not None and inbox.is_dir():
            dirs = _count_dirs(inbox, watches_left)
            watches_left -= dirs
            if watches_left < 0:
                report.add("mounts", name, "fail", f"{detail}; more folders than fs.inotify.max_user_watches allows",
                           "sudo sysctl fs.inotify.max_user_watches=524288 (and set it in /etc/sysctl.d/), "
                           'or set watch.mode = "poll"')
                continue
        report.add("mounts", name, "ok", detail)


def _max_watches() -> int | None:
    try:
        return int(INOTIFY_WATCHES.read_text().strip())
    except (OSError, ValueError):
        return None


def check_database(report: Report, settings: Settings, user: User, mounts: list[Mount] | None = None) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from retouchd.store.db import MIGRATIONS, RESTORE_HINT, is_damaged

    url = make_url(settings.db_url)
    shown = url.render_as_string(hide_password=True)
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite and url.database and url.database != ":memory:":
        path = Path(url.database).absolute()
        mount = mount_of(path, read_mounts() if mounts is None else mounts)
        if mount is not None and mount.is_network:
            report.add("database", "location", "fail", f"{path} is on a network mount ({mount.fstype})",
                       "put the state folder (state_dir) on a local disk: SQLite locking is unreliable on network "
                       "shares; use PostgreSQL (database_url) to share work between hosts")
        if not path.exists():
            report.add("database", "schema", "ok", f"{shown}: not created yet; the daemon creates it at start")
            return
        if not file_writable(path, user):
            report.add("database", "file", "fail", f"{path} is not writable by {user.name} ({describe(path)})",
                       f"sudo chown {user.name}:{user.group} {path}*")
        url = url.set(database=f"file:{path}?mode=ro", query={"uri": "true"})
    script = ScriptDirectory(str(MIGRATIONS))
    heads = script.get_heads()
    try:
        args = {"connect_timeout": 5} if url.get_backend_name().startswith("postgresql") else {}
        engine = create_engine(url, connect_args=args)
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            tables = set(engine.dialect.get_table_names(conn))
            jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar() if "jobs" in tables else None
            integrity = conn.execute(text("PRAGMA quick_check")).scalar() if sqlite else "ok"
        engine.dispose()
    except Exception as exc:  # any driver, any failure: report it, do not crash the doctor
        if is_damaged(exc):
            report.add("database", "file", "fail", f"{shown} is damaged ({str(exc).splitlines()[0]})", RESTORE_HINT)
            return
        report.add("database", "connection", "fail", f"{shown}: cannot connect ({str(exc).splitlines()[0]})",
                   "check database_url, that the server is up and that the driver is installed "
                   "(PostgreSQL: pip install 'psycopg[binary]')")
        return
    if integrity != "ok":
        report.add("database", "file", "fail", f"{shown} is damaged (integrity check: {integrity})", RESTORE_HINT)
        return
    known = {rev.revision for rev in script.walk_revisions()}
    if current in heads:
        report.add("database", "schema", "ok", f"{shown}: reachable, schema {current} (newest), {jobs} job(s)")
    elif current is None and tables - {"alembic_version"}:
        report.add("database", "schema", "fail", f"{shown} holds tables but no retouchd schema version",
                   "point database_url at a database of its own")
    elif current is None or current in known:
        report.add("database", "schema", "warn", f"{shown}: schema {current or 'empty'}, newest {', '.join(heads)}",
                   "nothing to do: the daemon upgrades the schema when it starts (history is kept)")
    else:
        report.add("database", "schema", "fail", f"{shown}: schema {current} is newer than this retouchd knows",
                   "upgrade retouchd to the version that wrote this database")


def check_daemon(report: Report, settings: Settings) -> None:
    statuses = read_statuses(settings.state)
    running = [s for s in statuses if s["running"]]
    for s in statuses:
        if s["running"]:
            report.add("daemon", s["host"], "ok", f"running, pid {s['pid']}, {len(s.get('slots', []))} slot(s)")
        elif s.get("hostname", s["host"]) == socket.gethostname():
            report.add("daemon", s["host"], "warn", f"pid {s['pid']} stopped without cleaning up (killed or crashed)",
                       "look at its last log lines: journalctl -u retouchd -n 50")
    if not statuses:
        report.add("daemon", "status", "ok", "not running")
    port = settings.metrics_port
    if not port:
        return
    local = [s for s in running if s.get("hostname", s["host"]) == socket.gethostname()]
    if local and local[0].get("metrics_url"):
        url = local[0]["metrics_url"]
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # our own endpoint, on this host
                ok = b"retouchd_queue_depth" in response.read()
            report.add("daemon", "metrics", "ok" if ok else "fail", f"{url} {'answers' if ok else 'has no metrics'}")
        except OSError as exc:
            report.add("daemon", "metrics", "fail", f"{url} does not answer ({exc})",
                       "check the daemon's log for 'serving metrics'")
        return
    if not local:
        try:
            with socket.create_server((settings.metrics_address, port)):
                pass
            report.add("daemon", "metrics", "ok", f"port {settings.metrics_address}:{port} is free")
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            report.add("daemon", "metrics", "fail", f"{settings.metrics_address}:{port} is not available ({reason})",
                       "choose another metrics_port, or stop the program that uses it")


def run_checks(settings: Settings, user: User, *, models: bool) -> Report:
    from retouchd.commands.doctor.runtime import check_devices, check_models

    report = Report()
    rules: RuleSet | None = None
    try:
        rules = load_rules(settings.rule_files or None)
    except ConfigError as exc:
        report.add("rules", "rule files", "fail", str(exc))
    if rules is not None:
        enabled = [r.name for r in rules.rules if r.enabled]
        report.add("rules", "rule files", "ok", f"{', '.join(map(str, rules.files))}: {', '.join(enabled)}")
    mounts = read_mounts()
    check_folders(report, settings, rules, user)
    check_mounts(report, settings, rules, mounts)
    check_database(report, settings, user, mounts)
    devices = check_devices(report, settings)
    if models and rules is not None:
        check_models(report, settings, rules, devices)
    check_daemon(report, settings)
    return report


COLOURS = {"ok": "green", "warn": "yellow", "fail": "red"}


def print_report(report: Report, user: User, why: str) -> None:
    click.echo(f"retouchd doctor: checking as {user.name} ({why})")
    width = max((len(c.label) for c in report.checks), default=10)
    section = None
    for check in report.checks:
        if check.section != section:
            section = check.section
            click.echo(f"\n{section}")
        tag = click.style(f"{check.level.upper():<4}", fg=COLOURS[check.level], bold=check.level != "ok")
        click.echo(f"  {tag}  {check.label:<{width}}  {check.detail}")
        if check.fix:
            click.echo(f"        {'':<{width}}  fix: {check.fix}")
    fails = sum(1 for c in report.checks if c.level == "fail")
    warns = sum(1 for c in report.checks if c.level == "warn")
    summary = "all good" if not fails and not warns else f"{fails} problem(s), {warns} warning(s)"
    click.echo("\n" + click.style(summary, fg="red" if fails else ("yellow" if warns else "green"), bold=True))


def doctor(settings: Settings, *, user_name: str | None, models: bool, as_json: bool) -> int:
    from retouchd.commands.doctor.access import default_user, lookup_user

    if user_name:
        try:
            user, why = lookup_user(user_name), "given by --user"
        except KeyError:
            raise click.BadParameter(f"no user named {user_name!r} on this machine", param_hint="--user") from None
    else:
        user, why = default_user()
        why += "; --user NAME checks for another"
    report = run_checks(settings, user, models=models)
    if as_json:
        from retouchd.commands._output import print_json

        print_json({"user": user.name, "ok": not report.failed, "checks": [asdict(c) for c in report.checks]})
    else:
        print_report(report, user, why)
    return 1 if report.failed else 0
