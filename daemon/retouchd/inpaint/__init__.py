"""Inpainting: fill masked pixels so that nobody can see where they were.

`inpaint()` serves `remove_objects` and `remove_text`. Engines load lazily by name: importing this package
imports neither numpy nor torch nor OpenCV nor onnxruntime (rule validation needs ENGINES).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from retouchd.exceptions import ConfigError, StepError

if TYPE_CHECKING:
    from retouchd.inpaint.base import InpaintEngine
    from retouchd.steps.base import StepContext
    from retouchd.typing import Mask, RGBImage

_ENGINES: dict[str, str] = {
    "patch": "retouchd.inpaint.patch:PatchEngine",
    "telea": "retouchd.inpaint.telea:TeleaEngine",
    "lama": "retouchd.inpaint.lama:LamaEngine",
    "migan": "retouchd.inpaint.migan:MiganEngine",
}

ENGINES: tuple[str, ...] = tuple(_ENGINES)
"""Engine names a rule may use; the first is the default."""

__all__ = ["ENGINES", "engine_class", "inpaint", "preflight"]


def engine_class(engine: str) -> type[InpaintEngine]:
    """The engine class for a name; ConfigError for an unknown one."""
    if engine not in _ENGINES:
        raise ConfigError(f"unknown inpaint engine {engine!r}; use one of: {', '.join(ENGINES)}")
    module_name, _, attr = _ENGINES[engine].partition(":")
    cls: type[InpaintEngine] = getattr(importlib.import_module(module_name), attr)
    return cls


def preflight(engine: str, engines: dict[str, str]) -> None:
    """Check at start-up what `engine` needs (weights file, packages); ConfigError if something is missing."""
    engine_class(engine).preflight(engines)


def inpaint(rgb: RGBImage, mask: Mask, *, engine: str, ctx: StepContext) -> RGBImage:
    """Fill the pixels where `mask` is True and return a new image; pixels away from the mask are unchanged.

    An empty mask returns `rgb` itself. The engine works on crops around the mask's components.
    """
    import numpy as np

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise StepError(f"inpaint needs an H×W×3 uint8 image, got {rgb.dtype} {rgb.shape}")
    if mask.shape != rgb.shape[:2]:
        raise StepError(f"inpaint mask {mask.shape} does not match the image {rgb.shape[:2]}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        return rgb
    return engine_class(engine)(ctx).fill(rgb, mask)
