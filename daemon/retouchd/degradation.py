"""What happened to a small image before it reached us: JPEG quality, noise, blocking.

The JPEG quality comes from the source file's quantisation tables when the frame is still the decoded
source (same size): for tables written by libjpeg / Pillow the IJG quality formula gives it exactly, and
for other encoders (cameras, editors) the nearest IJG quality is a fair equivalent. When the tables are not
available (a PNG that was once a JPEG, or a frame an earlier step already changed), 8×8 blocking measured
on the pixels stands in. Noise is measured in the flattest parts of the luma only, so texture does not
read as noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retouchd.typing import RGBImage

# The IJG (libjpeg) base luminance table, natural (row-major) order, at quality 50.
IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)
BLOCKY = 1.08
"""Boundary/interior step ratio above which a frame without tables is treated as a JPEG. Measured on the
tune photos' ×2 and ×4 downscales: clean 0.88–1.05; JPEG q90 1.00–1.9 (mean 1.2), q75 mean 1.5, q60 1.6–1.9."""


@dataclass(frozen=True, slots=True)
class Degradation:
    jpeg_quality: int | None
    """IJG-equivalent quality, or None for an input that shows no JPEG compression."""
    quality_source: str
    """"tables" (read from the file), "blocking" (estimated from the pixels) or "none"."""
    blockiness: float
    """Mean luma step across 8-pixel block boundaries over the mean step inside blocks (1.0 = none)."""
    noise: float
    """Noise standard deviation in 8-bit levels, measured in flat regions."""

    def metrics(self) -> dict[str, float | int | str | None]:
        return {"jpeg_quality": self.jpeg_quality, "jpeg_quality_source": self.quality_source,
                "blockiness": round(self.blockiness, 3), "noise_sigma": round(self.noise, 2)}


def ijg_table(quality: int) -> np.ndarray:
    """The luminance quantisation table libjpeg writes at `quality` (1–100), natural order."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.asarray(np.clip(np.floor((IJG_LUMA * scale + 50) / 100), 1, 255))


def quality_from_table(luma_table: list[int] | np.ndarray) -> int:
    """The IJG quality whose luminance table is closest to `luma_table` (exact for libjpeg's own tables)."""
    table = np.asarray(luma_table, dtype=np.float64)
    errors = [float(np.abs(np.log(ijg_table(q)) - np.log(table)).sum()) for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def source_jpeg_quality(path: Path, size: tuple[int, int]) -> int | None:
    """The quality of `path` if it is a JPEG of `size` = (width, height); reads the header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.size != size:
                return None
            tables = getattr(im, "quantization", None)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    return quality_from_table(tables[0])


def luma(rgb: RGBImage) -> np.ndarray:
    return np.asarray(np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114]))


def blockiness(y: np.ndarray) -> float:
    """Mean absolute luma step across 8-pixel column/row boundaries over the mean step elsewhere."""
    ratios = []
    for steps in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        if steps.shape[1] < 16:
            continue
        index = np.arange(steps.shape[1])
        at_boundary = (index % 8) == 7
        ratios.append(float(steps[:, at_boundary].mean()) / max(float(steps[:, ~at_boundary].mean()), 1e-6))
    return float(np.mean(ratios)) if ratios else 1.0


def noise_sigma(y: np.ndarray) -> float:
    """Noise σ by Immerkær's Laplacian-difference estimator over the flattest 10 % of 8×8 blocks.

    Blocks are ranked by the gradient of a smoothed copy, so that a block's own noise does not decide
    whether it is chosen (ranking by the raw Laplacian picks the blocks whose noise happens to be low).
    """
    import cv2

    if min(y.shape) < 16:
        return 0.0
    lap = (y[:-2, :-2] + y[:-2, 2:] + y[2:, :-2] + y[2:, 2:]
           - 2 * (y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1]) + 4 * y[1:-1, 1:-1])
    smooth = cv2.GaussianBlur(y.astype(np.float32), (0, 0), 2.0)[1:-1, 1:-1]
    structure = np.hypot(*np.gradient(smooth))
    h, w = (lap.shape[0] // 8) * 8, (lap.shape[1] // 8) * 8

    def per_block(values: np.ndarray) -> np.ndarray:
        return np.asarray(values[:h, :w].reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3)).ravel())

    flattest = np.argsort(per_block(structure))[: max(1, (h // 8) * (w // 8) // 10)]
    return float(np.sqrt(np.pi / 2) / 6 * per_block(np.abs(lap))[flattest].mean())


def estimate(rgb: RGBImage, source: Path | None = None) -> Degradation:
    """The degradation of `rgb`, using `source`'s JPEG tables when the frame is that file's decode."""
    y = luma(rgb)
    block = blockiness(y)
    quality = source_jpeg_quality(source, (rgb.shape[1], rgb.shape[0])) if source is not None else None
    if quality is not None:
        origin = "tables"
    elif block > BLOCKY:
        quality, origin = blocking_quality(block), "blocking"
    else:
        origin = "none"
    return Degradation(quality, origin, block, noise_sigma(y))


def blocking_quality(block: float) -> int:
    """A rough IJG quality for a frame whose blocking ratio is `block` (calibrated on the tune photos)."""
    return int(np.clip(round(90 - 50 * (block - 1.2)), 30, 95))
