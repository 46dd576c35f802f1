"""Text on a rendered page (a screenshot, a slide) is filled with the page itself, not searched for.

A page is flat or a smooth gradient (`regions._page`): around a line, its pixels follow a plane per channel, `c
= a·x + b·y + d`. The plane is fitted by least squares to the pixels of the line's rectangle (grown by `MARGIN`
px) outside the hole, refitted without those more than `OUTLIER` levels off (the margin may reach past the page:
a title bar's edge); when at least `PAGE_SHARE` of them stay and the plane explains those within `FIT` levels
(mean absolute error), the line's hole is painted with it. That is exact on flat colour and linear gradients and
costs a solve of three unknowns, where patch search over a screenshot's many lines was most of its time. A page
that the plane does not fit (a photo behind a slide's text, a radial gradient) leaves the line to the inpainting
engine.
"""

from __future__ import annotations

import numpy as np

from retouchd.masks import box_around
from retouchd.typing import Mask, RGBImage

MARGIN = 4
FIT = 1.5
OUTLIER = 6.0
PAGE_SHARE = 0.7
START = 24.0
MIN_KNOWN = 32


def _plane(rgb: RGBImage, hole: Mask, rect: tuple[int, int, int, int]) -> RGBImage | None:
    """The hole of `rect` painted with the plane the rest of `rect` follows, or None when it does not fit."""
    y0, y1, x0, x1 = rect
    crop = rgb[y0:y1, x0:x1].astype(np.float64)
    known = ~hole[y0:y1, x0:x1]
    if int(known.sum()) < MIN_KNOWN:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    design = np.stack([xs - x0, ys - y0, np.ones_like(xs)], axis=-1)
    # Start from the pixels near the commonest colour (a fit to all of them would lean towards the outliers).
    page = known & (np.abs(crop - np.median(crop[known], axis=0)).max(axis=2) <= START)
    for _ in range(2):
        coefficients, *_ = np.linalg.lstsq(design[page], crop[page], rcond=None)
        error = np.abs(design @ coefficients - crop).max(axis=2)
        page = known & (error <= OUTLIER)
        if int(page.sum()) < PAGE_SHARE * int(known.sum()):
            return None
    if float(error[page].mean()) > FIT:
        return None
    return np.asarray(np.clip(np.round(design @ coefficients), 0, 255), np.uint8)


def apply(rgb: RGBImage, pages: list[Mask]) -> tuple[RGBImage, Mask]:
    """`rgb` with every page-backed line's hole painted with its page, and the pixels so filled."""
    out = rgb.copy()
    done = np.zeros(rgb.shape[:2], bool)
    for hole in pages:
        box = box_around(hole, MARGIN)
        if box is None:
            continue
        rect = (box[0].start, box[0].stop, box[1].start, box[1].stop)
        painted = _plane(rgb, hole, rect)
        if painted is None:
            continue
        y0, y1, x0, x1 = rect
        here = hole[y0:y1, x0:x1]
        out[y0:y1, x0:x1][here] = painted[here]
        done[y0:y1, x0:x1] |= here
    return out, done
