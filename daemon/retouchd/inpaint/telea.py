"""`telea`: OpenCV's fast-marching inpainting. Fast and smooth: for thin strokes, and as a baseline."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from retouchd.inpaint.base import InpaintEngine
from retouchd.typing import Mask, RGBImage


class TeleaEngine(InpaintEngine):
    """cv2.inpaint with INPAINT_TELEA; it only looks a few pixels past the hole, so the margin is small."""

    name: ClassVar[str] = "telea"
    min_margin: ClassVar[int] = 16
    max_margin: ClassVar[int] = 64
    margin_factor: ClassVar[float] = 0.25
    feather: ClassVar[int] = 0
    radius: ClassVar[int] = 5

    def solve(self, rgb: RGBImage, hole: Mask) -> RGBImage:
        filled = cv2.inpaint(np.ascontiguousarray(rgb), hole.astype(np.uint8) * 255, self.radius, cv2.INPAINT_TELEA)
        return np.asarray(filled, dtype=np.uint8)
