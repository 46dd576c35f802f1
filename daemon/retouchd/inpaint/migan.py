"""`migan`: an MI-GAN ONNX pipeline at the configured path, run with onnxruntime.

Signature (the pipeline exported by MI-GAN's `create_onnx_pipeline.py`): inputs `image`, 1×3×H×W uint8
RGB, and `mask`, 1×1×H×W uint8 with 255 = keep and 0 = fill; output 1×3×H×W uint8 RGB, composited.
The pipeline crops and resizes internally, so any crop size works. No weights ship with retouchd.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from retouchd.exceptions import ConfigError, ModelError
from retouchd.inpaint.base import InpaintEngine, require_model_file
from retouchd.models import onnxrt
from retouchd.typing import Mask, RGBImage

_WHAT = "an MI-GAN ONNX pipeline file (migan_pipeline_v2.onnx)"


class MiganEngine(InpaintEngine):
    """MI-GAN via onnxruntime; one session per file and device, kept in the worker's model cache."""

    name: ClassVar[str] = "migan"
    min_margin: ClassVar[int] = 128
    max_margin: ClassVar[int] = 384
    margin_factor: ClassVar[float] = 0.5
    max_solve_pixels: ClassVar[int | None] = 2048 * 2048
    feather: ClassVar[int] = 2

    @classmethod
    def preflight(cls, engines: dict[str, str]) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError("inpaint engine 'migan' needs the onnxruntime package; pip install onnxruntime")
        require_model_file(cls.name, engines, _WHAT)

    def solve(self, rgb: RGBImage, hole: Mask) -> RGBImage:
        path = require_model_file(self.name, self.ctx.engines, _WHAT)
        providers = [name for name, _ in onnxrt.providers_for(self.device)]
        session: Any = self.ctx.models.get(
            f"inpaint.migan:{path}:{self.device}:{','.join(providers)}",
            lambda: open_session(path, self.device, self.ctx.cpu_threads),
        )
        image_name, mask_name = _input_names(session, path)
        # The pipeline blends a blurred mask edge; a smooth guess in the hole keeps masked pixels out of it.
        guess = cv2.inpaint(np.ascontiguousarray(rgb), hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
        feeds = {
            image_name: np.ascontiguousarray(guess.transpose(2, 0, 1)[None]),
            mask_name: np.where(hole, 0, 255).astype(np.uint8)[None, None],
        }
        try:
            out = session.run(None, feeds)[0]
        except Exception as exc:
            raise ModelError(f"MI-GAN file {path} failed on a {rgb.shape[1]}×{rgb.shape[0]} crop: {exc}") from exc
        expected = (1, 3, *hole.shape)
        if getattr(out, "shape", None) != expected or out.dtype != np.uint8:
            raise ModelError(
                f"MI-GAN file {path} returned {getattr(out, 'shape', None)} {getattr(out, 'dtype', None)}, "
                f"expected {expected} uint8; it should be {_WHAT}"
            )
        return np.ascontiguousarray(out[0].transpose(1, 2, 0))


def open_session(path: Path, device: str, threads: int) -> Any:
    """An onnxruntime session for the file; ModelError when it cannot be read."""
    return onnxrt.open_session(path, device, threads, label=f"{path} as {_WHAT}", fix="check the file (re-download it)")


def _input_names(session: Any, path: Path) -> tuple[str, str]:
    """Names of the image and mask inputs: by name when they say so, else by order."""
    inputs = session.get_inputs()
    if len(inputs) != 2 or any(i.type != "tensor(uint8)" for i in inputs):
        found = ", ".join(f"{i.name}: {i.type}" for i in inputs)
        raise ModelError(f"{path} takes ({found}); {_WHAT} takes two uint8 tensors, image and mask")
    names = [i.name for i in inputs]
    if "image" in names and "mask" in names:
        return "image", "mask"
    return names[0], names[1]
