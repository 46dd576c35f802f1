"""`retouchd rules check`: validate rules and say what each path would get."""

from __future__ import annotations

from pathlib import Path

import click

from retouchd.exceptions import ConfigError
from retouchd.messages import PREFIX
from retouchd.rules import Rule, RuleSet, load_rules, rule_folders
from retouchd.settings import Settings
from retouchd.settle import IgnoreMatcher
from retouchd.sidecars import is_sidecar
from retouchd.sidecarwait import needs_sidecar
from retouchd.steps import preflight


def preflight_problems(settings: Settings, ruleset: RuleSet) -> list[str]:
    """What `run` would refuse at start-up beyond the rule files themselves (missing model weights, packages)."""
    problems = []
    for rule in ruleset.rules:
        for options in rule.steps:
            try:
                preflight(options, dict(settings.engines))
            except ConfigError as exc:
                problems.append(f"rule {rule.name!r}, step {options.op}: {exc}")
    return problems


def rule_details(settings: Settings, rule: Rule) -> str:
    """What a rule delivers and how hard it tries: output format, quality, suffix, attempts, reprocess."""
    out = rule.output
    attempts = (f"max_attempts {rule.max_attempts}" if rule.max_attempts
                else f"max_attempts {settings.workers.max_attempts} (workers.max_attempts)")
    parts = [f"output {out.format}", f"quality {out.quality}", f"suffix {out.suffix!r}" if out.suffix else "no suffix",
             attempts, "reprocess: every arrival" if rule.reprocess else "reprocess: no (once per content)"]
    if needs_sidecar(rule):
        parts.append(f"waits {settings.watch.sidecar_wait:g} s for a late .mask.png")
    return "; ".join(parts)


def check(settings: Settings, paths: list[Path]) -> int:
    try:
        ruleset = load_rules(settings.rule_files or None)
    except ConfigError as exc:
        click.echo(f"{PREFIX}{exc}", err=True)
        return 2
    problems = preflight_problems(settings, ruleset)
    for problem in problems:
        click.echo(f"{PREFIX}{problem}", err=True)
    folders = rule_folders(settings, ruleset)
    files = ", ".join(str(f) for f in ruleset.files)
    click.echo(f"rules NOT OK (`retouchd run` would refuse them): {files}" if problems else f"rules OK: {files}")
    for rule in ruleset.rules:
        state = "" if rule.enabled else " (disabled)"
        inbox = folders[rule.name].inbox if rule.enabled else rule.inbox
        click.echo(f"  {rule.name}{state}: {inbox} [{', '.join(rule.match)}]: {rule.describe_steps()}")
        click.echo(f"      {rule_details(settings, rule)}")
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
    return 2 if problems else code
