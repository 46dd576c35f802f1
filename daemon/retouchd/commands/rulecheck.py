"""`retouchd rules check`: validate rules and say what each path would get."""

from __future__ import annotations

from pathlib import Path

import click

from retouchd.daemon import rule_folders
from retouchd.exceptions import ConfigError
from retouchd.masks import is_sidecar
from retouchd.rules import load_rules
from retouchd.settings import Settings
from retouchd.settle import IgnoreMatcher


def check(settings: Settings, paths: list[Path]) -> int:
    try:
        ruleset = load_rules(settings.rule_files or None)
    except ConfigError as exc:
        click.echo(f"retouchd: {exc}", err=True)
        return 2
    folders = rule_folders(settings, ruleset)
    click.echo(f"rules OK: {', '.join(str(f) for f in ruleset.files)}")
    for rule in ruleset.rules:
        state = "" if rule.enabled else " (disabled)"
        inbox = folders[rule.name].inbox if rule.enabled else rule.inbox
        click.echo(f"  {rule.name}{state}: {inbox} [{', '.join(rule.match)}]: {rule.describe_steps()}")
    ignore = IgnoreMatcher(settings.watch.ignore)
    code = 0
    for path in paths:
        absolute = path.absolute()
        owner = next(((name, f) for name, f in folders.items() if f.inbox == absolute or f.inbox in absolute.parents),
                     None)
        if owner is None:
            click.echo(f"{path}: no rule (not under any inbox)")
            code = 1
            continue
        name, f = owner
        rule = ruleset.by_name(name)
        rel = absolute.relative_to(f.inbox)
        if ignore.ignored(rel):
            click.echo(f"{path}: ignored (partial download or system name)")
        elif is_sidecar(path.name):
            click.echo(f"{path}: sidecar mask; travels with its image")
        elif not rule.matches(path.name):
            click.echo(f"{path}: rule {name!r} does not match it ({', '.join(rule.match)})")
            code = 1
        else:
            click.echo(f"{path}: rule {name!r}: {rule.describe_steps()}")
    return code
