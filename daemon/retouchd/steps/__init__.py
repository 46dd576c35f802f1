"""Step registry: op name → import string. Importing this module imports no step and no torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retouchd.steps.base import Step, StepOptions

# New ops plug in here and nowhere else in the core.
REGISTRY: dict[str, str] = {
    "upscale": "retouchd.steps.upscale:UpscaleStep",
    "remove_objects": "retouchd.steps.remove_objects:RemoveObjectsStep",
    "remove_text": "retouchd.steps.remove_text:RemoveTextStep",
}


def available_ops() -> list[str]:
    return sorted(REGISTRY)


def step_class(op: str) -> type[Step[StepOptions]]:
    """The Step class registered for `op`; KeyError if there is none."""
    module_name, _, attr = REGISTRY[op].partition(":")
    cls: type[Step[StepOptions]] = getattr(importlib.import_module(module_name), attr)
    return cls


def build_step(options: StepOptions) -> Step[StepOptions]:
    return step_class(options.op)(options)
