"""Rules: TOML files of `[[rule]]` tables, validated with pydantic; which rule (and steps) a path gets."""

from __future__ import annotations

import difflib
import fnmatch
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retouchd import steps as step_registry
from retouchd.exceptions import RuleError
from retouchd.messages import explain
from retouchd.outputspec import OutputSpec
from retouchd.steps.options import StepOptions

if TYPE_CHECKING:
    from retouchd.settings import Settings

DEFAULT_MATCH = ["*.jpg", "*.jpeg", "*.png", "*.webp", "*.tif", "*.tiff", "*.heic", "*.heif", "*.avif"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Variant(BaseModel):
    """One arm of an experiment: a share of the rule's arrivals runs these steps (default: the rule's own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    share: float = Field(gt=0)
    steps: list[StepOptions] | None = None

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> list[StepOptions] | None:
        return None if value is None else Rule._steps(value)


class Rule(BaseModel):
    """One `[[rule]]` table. Steps are validated by the options model of their op."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    inbox: str
    outbox: str | None = None
    archive: str | None = None
    failed: str | None = None
    review: str | None = None
    rejected: str | None = None
    match: list[str] = Field(default_factory=lambda: list(DEFAULT_MATCH), min_length=1)
    steps: list[StepOptions] = Field(min_length=1)
    output: OutputSpec = Field(default_factory=OutputSpec)
    allow_upscale_first: bool = False
    reprocess: bool = False
    cpu_fallback: bool = True
    max_attempts: int | None = Field(None, ge=1, le=100)
    enabled: bool = True
    variants: list[Variant] = Field(default_factory=list)
    """An experiment: arrivals split between these by content hash, in proportion to their shares."""

    @field_validator("inbox", "outbox", "archive", "failed", "review", "rejected")
    @classmethod
    def _safe_folder(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or ".." in Path(value).parts):
            raise ValueError("a folder must be a non-empty path without '..' parts")
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> list[StepOptions]:
        if not isinstance(value, list):
            raise ValueError("steps must be a list of tables like { op = \"upscale\", scale = 2 }")
        parsed: list[StepOptions] = []
        for index, raw in enumerate(value, start=1):
            if isinstance(raw, StepOptions):
                parsed.append(raw)
                continue
            if not isinstance(raw, dict) or "op" not in raw:
                raise ValueError(f"step {index} has no 'op'; ops: {', '.join(step_registry.available_ops())}")
            op = raw["op"]
            if op not in step_registry.REGISTRY:
                raise ValueError(
                    f"step {index}: unknown op {op!r}; ops: {', '.join(step_registry.available_ops())}"
                )
            options_model = step_registry.options_model(op)
            try:
                parsed.append(options_model.model_validate(raw))
            except ValidationError as exc:
                err = exc.errors()[0]
                key = ".".join(str(p) for p in err["loc"])
                msg = explain(err, options_model)
                raise ValueError(f"step {index} ({op}): '{key}': {msg}") from None
        return parsed

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, value: list[Variant]) -> list[Variant]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique within a rule")
        return value

    def variant_for(self, sha256: str) -> str | None:
        """The variant a content gets: the same bytes always get the same one (None without an experiment)."""
        if not self.variants:
            return None
        point = int(sha256[:16], 16) / 16**16 * sum(v.share for v in self.variants)
        for variant in self.variants:
            point -= variant.share
            if point < 0:
                return variant.name
        return self.variants[-1].name

    def steps_for(self, variant: str | None) -> list[StepOptions]:
        """The steps a job of `variant` runs (an unknown or retired variant runs the rule's own steps)."""
        for v in self.variants:
            if v.name == variant and v.steps is not None:
                return v.steps
        return self.steps

    def removal_after_upscale(self) -> bool:
        return any(self._removal_after_upscale(steps) for steps in [self.steps, *(v.steps or [] for v in
                                                                                   self.variants)])

    def _removal_after_upscale(self, steps: list[StepOptions]) -> bool:
        seen_upscale = False
        for options in steps:
            if options.op == "upscale":
                seen_upscale = True
            elif seen_upscale and step_registry.removes_content(options):
                return True
        return False

    def matches(self, name: str) -> bool:
        lowered = name.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in self.match)

    def describe_steps(self) -> str:
        parts = []
        for options in self.steps:
            extra = ", ".join(f"{k}={v}" for k, v in options.model_dump(exclude={"op"}).items())
            parts.append(f"{options.op}({extra})" if extra else options.op)
        return " → ".join(parts)


@dataclass(frozen=True)
class RuleFolders:
    """Where one rule's files go, resolved against the settings."""

    inbox: Path
    outbox: Path
    archive: Path
    failed: Path
    review: Path


def _folder(base: Path, override: str | None, rule: str) -> Path:
    if override is None:
        return base / rule
    path = Path(override)
    return path if path.is_absolute() else base / path


def folders_for(rule: Rule, *, inbox: Path, outbox: Path, archive: Path, failed: Path, review: Path) -> RuleFolders:
    inbox_path = Path(rule.inbox)
    return RuleFolders(
        inbox=(inbox_path if inbox_path.is_absolute() else inbox / inbox_path).absolute(),
        outbox=_folder(outbox, rule.outbox, rule.name).absolute(),
        archive=_folder(archive, rule.archive, rule.name).absolute(),
        failed=_folder(failed, rule.failed, rule.name).absolute(),
        review=_folder(review, rule.review, rule.name).absolute(),
    )


def rule_folders(settings: Settings, rules: RuleSet) -> dict[str, RuleFolders]:
    """Every enabled rule's folders under these settings."""
    return {
        rule.name: folders_for(rule, inbox=settings.inbox, outbox=settings.outbox, archive=settings.archive,
                               failed=settings.failed, review=settings.review)
        for rule in rules.rules if rule.enabled
    }


def default_rule_file() -> Path:
    """The shipped rules/default.toml: inside the wheel, or in the source checkout."""
    packaged = resources.files("retouchd").joinpath("_rules", "default.toml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "rules" / "default.toml"


def _unknown_rule_key_hint(key: str, table: dict[str, Any]) -> str:
    """What a rule-level key nobody knows was probably meant as: a step's option (`mask` belongs inside the
    remove_objects step's table), or a rule key spelt differently."""
    from retouchd.steps.options import OPTIONS

    ops = [op for op, model in OPTIONS.items() if key in model.model_fields and key != "op"]
    if ops:
        own = [s.get("op") for s in table.get("steps", []) if isinstance(s, dict) and s.get("op") in ops]
        op = own[0] if own else ops[0]
        value = table[key]
        shown = f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
        return (
            f"; '{key}' is an option of the {' / '.join(ops)} step: put it in the step's table, "
            f'e.g. steps = [{{ op = "{op}", {key} = {shown} }}]'
        )
    close = difflib.get_close_matches(key, list(Rule.model_fields), n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


def _load_file(path: Path) -> list[Rule]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuleError(f"{path}: rule file not found; pass an existing file to --rules") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: not valid TOML ({exc}); fix the syntax and try again") from None
    unknown = set(data) - {"rule"}
    if unknown:
        keys = ", ".join(sorted(unknown))
        raise RuleError(f"{path}: unknown top-level key(s) {keys}; a rule file holds [[rule]] tables")
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not tables:
        raise RuleError(f"{path}: no [[rule]] tables found")
    rules = []
    for index, table in enumerate(tables, start=1):
        label = f"rule {table.get('name', index)!r}" if isinstance(table, dict) else f"rule {index}"
        try:
            rule = Rule.model_validate(table)
        except ValidationError as exc:
            # A misspelt key also makes the real one "missing": report the unknown key first.
            err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
            key = ".".join(str(p) for p in err["loc"]) or "rule"
            msg = explain(err, Rule)
            if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
                msg += _unknown_rule_key_hint(str(err["loc"][0]), table)
            raise RuleError(f"{path}: {label}: '{key}': {msg}") from None
        if rule.removal_after_upscale() and not rule.allow_upscale_first:
            raise RuleError(
                f"{path}: {label}: a removal step comes after 'upscale'; clean first, then enlarge "
                "(reorder the steps, or set allow_upscale_first = true)"
            )
        rules.append(rule)
    return rules


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    files: tuple[Path, ...]

    def by_name(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise RuleError(f"no rule named {name!r}; rules: {', '.join(r.name for r in self.rules)}")


def load_rules(files: Sequence[Path] | None = None) -> RuleSet:
    """Load and cross-check rule files (unique names, inboxes that do not overlap)."""
    paths = tuple(files) if files else (default_rule_file(),)
    rules: list[Rule] = []
    for path in paths:
        rules.extend(_load_file(path))
    names: dict[str, Path] = {}
    for rule in rules:
        if rule.name in names:
            raise RuleError(f"rule name {rule.name!r} is defined twice; names must be unique across rule files")
        names[rule.name] = Path(rule.inbox)
    inboxes = [(rule.name, Path(rule.inbox)) for rule in rules if rule.enabled]
    for i, (name_a, a) in enumerate(inboxes):
        for name_b, b in inboxes[i + 1 :]:
            if a == b or a in b.parents or b in a.parents:
                raise RuleError(
                    f"rules {name_a!r} and {name_b!r} watch overlapping inboxes ({a}, {b}); give each its own"
                )
    return RuleSet(tuple(rules), paths)

