"""Un-blending a translucent overlay: the photo beneath `I = αC + (1 − α)B` is `B = (I − αC) / (1 − α)`.

Per channel, `I = gain·B + offset` with gain = 1 − α and offset = αC. For a band the pairs (B, I) are read
across its edges: the row just outside and the row just inside see nearly the same photo, one without the
band and one with it. A least-squares line through those pairs (outliers past 2.5 MADs dropped, letters
left out) gives gain and offset. When the photo along the edge is too uniform to fix the slope, the band's
colour is taken as black or white (whichever side the step goes) and only α is fitted.
A band whose inverse would clip more than `MAX_CLIPPED` of its pixels (letters aside) is no band (checked on the
band as finally fitted, `in_range`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from retouchd.typing import Mask, RGBImage

MIN_SPREAD = 12.0
"""Std of the photo along the edges below which the slope is not fitted (the colour is assumed)."""
MIN_GAIN = 0.2
"""Below this (α > 0.8) the band is treated as opaque: un-blending would amplify noise past recognition."""
CLIPPED = 6.0
MAX_CLIPPED = 0.1
"""Share of a band's pixels (letters aside) whose inverse may fall outside [0, 255] by more than `CLIPPED`. A true
band clips none or nearly none (0–1.3 % on tune and held-out bands); a drop shadow under a caption over dark
planks fitted as a black band at α 0.71 (the slope assumed: the planks too even along its edges) clipped 33 %
and came back as a bright straight-edged block."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Unblend:
    """A translucent rectangle (rows y0:y1, columns x0:x1) with per-channel `I = gain·B + offset`."""

    rect: tuple[int, int, int, int]
    gain: tuple[float, float, float]
    offset: tuple[float, float, float]


def _line(outside: Floats, inside: Floats, darker: bool) -> tuple[float, float] | None:
    if outside.size < 8:
        return None
    if float(outside.std()) >= MIN_SPREAD:
        keep = np.ones(outside.shape, bool)
        for _ in range(2):
            gain, offset = np.polyfit(outside[keep], inside[keep], 1)
            residual = inside - (gain * outside + offset)
            mad = float(np.median(np.abs(residual[keep] - np.median(residual[keep])))) + 1e-3
            keep = np.abs(residual) <= 2.5 * 1.4826 * mad + 1.0
        return float(gain), float(offset)
    # Too little contrast along the edge to fit a slope: assume a black (or white) band, fit α alone.
    colour = 0.0 if darker else 255.0
    spread = float(np.mean(outside - colour))
    if abs(spread) < 1:
        return None
    gain = float(np.mean(inside - colour)) / spread
    return gain, (1 - gain) * colour


def fit_band(rgb: RGBImage, rect: tuple[int, int, int, int], letters: Mask, *, in_range: bool = False
             ) -> Unblend | None:
    """The blend of the band whose top row is y0 and whose last row is y1 − 1, from the rows across its edges;
    with `in_range`, None when un-blending it would clip more than `MAX_CLIPPED` of its pixels."""
    y0, y1, x0, x1 = rect
    height = rgb.shape[0]
    pairs = [(y0 - 1, y0), (y1, y1 - 1)]
    image = rgb.astype(np.float64)
    outside_px: list[Floats] = []
    inside_px: list[Floats] = []
    for out_row, in_row in pairs:
        if not (0 <= out_row < height and 0 <= in_row < height):
            continue
        free = ~(letters[out_row, x0:x1] | letters[in_row, x0:x1])
        outside_px.append(image[out_row, x0:x1][free])
        inside_px.append(image[in_row, x0:x1][free])
    if not outside_px:
        return None
    outside, inside = np.concatenate(outside_px), np.concatenate(inside_px)
    darker = float(inside.mean()) < float(outside.mean())
    gains, offsets = [], []
    for channel in range(3):
        fitted = _line(outside[:, channel], inside[:, channel], darker)
        if fitted is None:
            return None
        gains.append(fitted[0])
        offsets.append(fitted[1])
    if min(gains) < MIN_GAIN or max(gains) > 1.0 + 1e-3:
        return None
    band = Unblend(rect, (gains[0], gains[1], gains[2]), (offsets[0], offsets[1], offsets[2]))
    free = ~letters[y0:y1, x0:x1]
    if in_range and free.any():
        _, clipped = apply(rgb[y0:y1, x0:x1], [replace(band, rect=(0, y1 - y0, 0, x1 - x0))])
        if float(clipped[free].mean()) > MAX_CLIPPED:
            return None
    return band


def apply(rgb: RGBImage, bands: list[Unblend]) -> tuple[RGBImage, Mask]:
    """`rgb` with every band un-blended, and the band pixels whose inverse fell outside [0, 255] (clipped:
    those must be filled)."""
    out = rgb.copy()
    clipped = np.zeros(rgb.shape[:2], bool)
    for band in bands:
        y0, y1, x0, x1 = band.rect
        region = out[y0:y1, x0:x1].astype(np.float64)
        restored = (region - np.array(band.offset)) / np.array(band.gain)
        clipped[y0:y1, x0:x1] |= ((restored < -CLIPPED) | (restored > 255 + CLIPPED)).any(axis=2)
        out[y0:y1, x0:x1] = np.clip(np.round(restored), 0, 255).astype(np.uint8)
    return out, clipped
