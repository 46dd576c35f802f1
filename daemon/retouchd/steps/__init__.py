"""Step registry: op name → import string. Importing this module imports no step, no numpy and no torch.

What a rule needs before any image is processed (its options model, whether a step erases content, the
start-up check) comes from the options models in `steps.options`; the step module itself loads in the worker."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retouchd.steps.base import Step
    from retouchd.steps.options import StepOptions

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


def options_model(op: str) -> type[StepOptions]:
    """The options model of `op` (KeyError if there is none): a built-in op's without importing its step."""
    from retouchd.steps.options import OPTIONS

    return OPTIONS[op] if op in OPTIONS else step_class(op).options_model


def removes_content(options: StepOptions) -> bool:
    """True when the step erases overlays or objects (it must run before `upscale`)."""
    from retouchd.steps.options import OPTIONS

    return type(options).removes_content if options.op in OPTIONS else build_step(options).removes_content()


def preflight(options: StepOptions, engines: dict[str, str]) -> None:
    """The step's start-up check (ConfigError when something it needs is missing)."""
    from retouchd.steps.options import OPTIONS

    if options.op in OPTIONS:
        options.preflight(engines)
    else:
        build_step(options).preflight(engines)
