"""One voice for validation errors of settings and rules: pydantic's message, reworded so that it names the key
and, for a number out of range, both ends of the range (`1 < scale ≤ 8`, not "less than or equal to 8")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

PREFIX = "retouchd: "
"""Every configuration error the command line prints starts with this (settings, rules, engines)."""

_RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _field(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The FieldInfo at `loc` inside `model` (through nested models), or None."""
    current: Any = model
    info = None
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not isinstance(part, str) or not fields or part not in fields:
            return None
        info = fields[part]
        current = info.annotation
    return info


def value_range(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The allowed range of a numeric field as `low < key ≤ high`, from its constraints."""
    info = _field(model, loc)
    if info is None:
        return None
    low = high = ""
    for meta in info.metadata:  # annotated_types' Gt, Ge, Lt, Le, as pydantic's Field(gt=…) stores them
        for attr, text in (("gt", "{} < "), ("ge", "{} ≤ "), ("lt", " < {}"), ("le", " ≤ {}")):
            bound = getattr(meta, attr, None)
            if bound is None:
                continue
            if attr in ("gt", "ge"):
                low = text.format(_number(bound))
            else:
                high = text.format(_number(bound))
    if not low and not high:
        return None
    return f"{low}{loc[-1]}{high}"


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def explain(error: Any, model: type[BaseModel] | None = None) -> str:
    """The reason of one pydantic error (without the key), reworded where pydantic's is unhelpful."""
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "missing (required)"
    if error["type"] in _RANGE_ERRORS and model is not None:
        allowed = value_range(model, tuple(error["loc"]))
        if allowed:
            return f"{error.get('input')!r} is out of range; it must be {allowed}"
    return msg
