"""`lama`: a TorchScript LaMa file at the configured path, called the way IOPaint calls big-lama.pt.

Signature: `model(image, mask) -> image`, where image is 1×3×H×W float RGB in [0, 1], mask is 1×1×H×W
float with 1 = fill, H and W multiples of 8, and the output is 1×3×H×W RGB in [0, 1]. No weights ship with
retouchd; users bring the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from retouchd.exceptions import ModelError
from retouchd.inpaint.base import InpaintEngine, require_model_file
from retouchd.typing import Mask, RGBImage

_WHAT = "a TorchScript LaMa file (IOPaint's big-lama.pt)"


class LamaEngine(InpaintEngine):
    """LaMa via TorchScript; one loaded model per file and device, kept in the worker's model cache."""

    name: ClassVar[str] = "lama"
    min_margin: ClassVar[int] = 128
    max_margin: ClassVar[int] = 384
    margin_factor: ClassVar[float] = 0.5
    max_solve_pixels: ClassVar[int | None] = 1024 * 1024
    feather: ClassVar[int] = 2
    pad_mod: ClassVar[int] = 8

    @classmethod
    def preflight(cls, engines: dict[str, str]) -> None:
        require_model_file(cls.name, engines, _WHAT)

    def solve(self, rgb: RGBImage, hole: Mask) -> RGBImage:
        path = require_model_file(self.name, self.ctx.engines, _WHAT)
        device = self.torch_device()
        model: Any = self.ctx.models.get(f"inpaint.lama:{path}:{device}", lambda: load_torchscript(path, device))
        height, width = hole.shape
        pad = ((0, -height % self.pad_mod), (0, -width % self.pad_mod))
        image = np.pad(rgb, (*pad, (0, 0)), mode="symmetric")
        mask = np.pad(hole, pad, mode="symmetric")
        with torch.inference_mode():
            t_mask = torch.from_numpy(mask).to(device)[None, None].float()
            # The network blanks the hole itself; doing it here too guarantees nothing masked gets through.
            t_image = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div(255) * (1 - t_mask)
            try:
                out = model(t_image, t_mask)
            except RuntimeError as exc:
                raise ModelError(f"LaMa file {path} failed on a {width}×{height} crop: {exc}") from exc
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(t_image.shape):
                raise ModelError(
                    f"LaMa file {path} returned {getattr(out, 'shape', type(out))}, expected "
                    f"{tuple(t_image.shape)}; it should be {_WHAT}"
                )
            result = out[0, :, :height, :width].clamp(0, 1).mul(255).round().to(torch.uint8)
            return result.permute(1, 2, 0).cpu().numpy()


def load_torchscript(path: Path, device: torch.device) -> Any:
    """Load a TorchScript file in eval mode; ModelError when it cannot be read."""
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in torch, but it is the format LaMa files are published in.
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"cannot load {path} as {_WHAT}: {exc}; check the file (re-download it)") from exc
    return model.eval()
