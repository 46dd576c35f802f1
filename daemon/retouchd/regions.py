"""Regions in rule options ([x, y, w, h] in pixels or percentages): their types and validation, in plain
Python so that validating rules imports no numpy."""

from __future__ import annotations

import math
import re
from typing import TypeAlias

Length: TypeAlias = int | float | str
"""Pixels (a number ≥ 0) or a percentage of the image side ("10%", "12.5%")."""

Region: TypeAlias = tuple[Length, Length, Length, Length]
"""[x, y, w, h]; x and w are measured along the width, y and h along the height."""

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


def parse_length(value: Length) -> tuple[float, bool]:
    """(number, is_percent) for a region length; ValueError with the reason when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a length; use pixels (e.g. 40) or a percentage (e.g. \"10%\")")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not a length ≥ 0 in pixels")
        return float(value), False
    match = _PERCENT.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a length; use pixels (e.g. 40) or a percentage (e.g. \"10%\")")
    percent = float(match.group(1))
    if percent > 100:
        raise ValueError(f"{value!r} is more than 100%")
    return percent, True


def validate_region(region: Region | list[Length]) -> Region:
    """The region as a 4-tuple after checking every length; ValueError says what is wrong."""
    if len(region) != 4:
        raise ValueError(f"a region is [x, y, w, h], got {list(region)!r}")
    for value in region:
        parse_length(value)
    x, y, w, h = region
    return (x, y, w, h)
