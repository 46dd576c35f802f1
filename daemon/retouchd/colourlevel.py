"""Keep an enlarged image's colour levels those of its input.

A network may shift the level of a region (Real-ESRGAN x4plus darkened a JPEG crop of gravel by about 7
levels). Shrinking the output back to the input size (area average) and comparing shows the shift; its
low-pass part — a Gaussian a few input pixels wide, so edges and texture are left to the network — is
enlarged smoothly and added back. Detail finer than the low-pass is untouched.
"""

from __future__ import annotations

import numpy as np

from retouchd.typing import RGBImage

SIGMA = 3.0
"""Low-pass width in input pixels: wide enough to leave the network's detail alone, narrow enough to follow
a shift that differs between regions."""


BAND_ROWS = 128
"""Output rows corrected at a time: the float work stays a few MB instead of five float copies of the whole
output (+647 MiB for a 1 MP ×4 job: more than the tiles' own budget)."""


def match_levels(source: RGBImage, output: RGBImage, sigma: float = SIGMA, *,
                 in_place: bool = False) -> tuple[RGBImage, float]:
    """`output` with its low-frequency colour moved onto `source`'s; also the largest mean shift removed.

    The shift is measured per channel as the mean of (source − output shrunk to the source's size), in levels.
    The correction is enlarged (bilinear, as cv2.resize) and added in bands of output rows; `in_place` writes
    them into `output` itself when it is writable (the caller no longer needs the uncorrected pixels), else
    into a copy.
    """
    import cv2

    height, width = source.shape[:2]
    shrunk = cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    difference = source.astype(np.float32) - shrunk
    shift = float(np.abs(difference.reshape(-1, 3).mean(axis=0)).max())
    smooth = cv2.GaussianBlur(difference, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if float(np.abs(smooth).max()) < 0.5:
        # Bilinear weights are convex, so |correction| < 0.5 too: rint(v + c) == v for every integer v.
        return output, shift
    result = output if in_place and output.flags.writeable else output.copy()  # Pillow's arrays are read-only
    out_h, out_w = output.shape[:2]
    for top in range(0, out_h, BAND_ROWS):
        bottom = min(out_h, top + BAND_ROWS)
        band = result[top:bottom].astype(np.float32)
        band += _enlarged_rows(smooth, out_w, out_h, top, bottom)
        np.clip(band, 0, 255, out=band)
        result[top:bottom] = np.rint(band, out=band)
    return result, shift


def _enlarged_rows(small: np.ndarray, out_w: int, out_h: int, top: int, bottom: int) -> np.ndarray:
    """Rows top…bottom of cv2.resize(small, (out_w, out_h), INTER_LINEAR), computed from the few source rows
    they need: cv2's linear resize is separable (each row horizontally, then rows blended vertically), with
    source y = (y + 0.5) · h / out_h − 0.5 clamped to the first and last row."""
    import cv2

    height = small.shape[0]
    ys = (np.arange(top, bottom, dtype=np.float64) + 0.5) * (height / out_h) - 0.5
    low = np.floor(ys)
    frac = (ys - low).astype(np.float32)
    low = low.astype(np.int64)
    frac[low < 0] = 0.0
    low = np.clip(low, 0, height - 1)
    frac[low >= height - 1] = 0.0
    high = np.minimum(low + 1, height - 1)
    first, last = int(low.min()), int(high.max())
    wide = cv2.resize(np.ascontiguousarray(small[first : last + 1]), (out_w, last - first + 1),
                      interpolation=cv2.INTER_LINEAR)
    if wide.ndim == 2:
        wide = wide[:, :, None]
    weight = frac[:, None, None]
    rows: np.ndarray = wide[low - first] * (1.0 - weight) + wide[high - first] * weight
    return rows
