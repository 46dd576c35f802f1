"""The drop shadow of a line of light lettering: the soft, offset dark copy of its letters.

A shadow is part of the overlay; left behind, it is a dark ghost of the text, and the fill copies it into
the letters. It is found by its shape: the letter mask moved down and right (light from the top left, as
every drop shadow is drawn) by up to `OFFSET` line heights and blurred. Around the letters (past a
`SKIP`-px rim, within `REACH` line heights) the photo is estimated by diffusion from outside that zone;
a pixel is *darker* when it lies more than `DARKER` levels (mean over channels) below the estimate. The
shadow is the offset at which at least `SHARE` of the pixels under the moved letters are darker and that
share leads the share under the letters moved the opposite way by at least `LEAD`: texture darkens both
sides alike, a shadow only one. Its pixels (the moved, blurred letters above `TAIL`) join the mask, unless
they would outnumber the letters (`MOST`: a dark photo all around, not a shadow) or the median darkening
under them is below `DEEP` levels (an evening sky's own shading down the frame). Dark letters have no
shadow we could see (fewer than `LIGHT_SHARE` of the letter pixels `LIGHT_LETTERS` above the estimate): their
own rim is darker than the photo on every side.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect.db import Quad, quad_size
from retouchd.typing import Mask, RGBImage

REACH = 0.4
SKIP = 2
DARKER = 6.0
LIGHT_LETTERS = 12.0
LIGHT_SHARE = 0.3
OFFSET = 0.15
STEP = 1 / 20
BLUR = 1 / 20
CORE = 0.3
SHARE = 0.5
LEAD = 0.2
TAIL = 0.08
MOST = 1.0
DEEP = 12.0
TELEA_RADIUS = 3

Floats = npt.NDArray[np.float32]


def _grow(layer: Mask, radius: int) -> Mask:
    size = 2 * max(0, radius) + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return np.asarray(cv2.dilate(layer.astype(np.uint8), disk) > 0)


def add_shadow(rgb: RGBImage, quad: Quad, letters: Mask, out: Mask) -> None:
    """Mark in `out` the drop shadow of the line `quad` whose letter pixels are `letters` (full-image)."""
    line = quad_size(quad)[1]
    reach = max(2, math.ceil(REACH * line))
    margin = reach + TELEA_RADIUS + 2
    height, width = rgb.shape[:2]
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int) - margin - round(line), 0)
    x1, y1 = np.minimum(np.ceil(quad.max(0)).astype(int) + margin + round(line) + 1, [width, height])
    ink = letters[y0:y1, x0:x1]
    if int(ink.sum()) < 16:
        return
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    zone = _grow(ink, reach)
    zone[:1] = zone[-1:] = False
    zone[:, :1] = zone[:, -1:] = False
    background = cv2.inpaint(crop, zone.astype(np.uint8), TELEA_RADIUS, cv2.INPAINT_TELEA)
    change = background.astype(np.float32).mean(axis=2) - crop.astype(np.float32).mean(axis=2)
    if float((change[ink] < -LIGHT_LETTERS).mean()) < LIGHT_SHARE:
        return
    around = zone & ~_grow(ink, SKIP)
    darker = (change > DARKER) & around
    found = _offset(ink.astype(np.float32), darker, around, line)
    if found is None:
        return
    under = (found > CORE) & around
    if float(np.median(change[under])) < DEEP:
        return  # a faint darkening next to the letters: the photo's own shading, not a shadow
    shadow = (found > TAIL) & zone & ~ink
    if int(shadow.sum()) <= MOST * int(ink.sum()):
        out[y0:y1, x0:x1] |= shadow


def _offset(ink: Floats, darker: Mask, around: Mask, line: float) -> Floats | None:
    """The moved, blurred letters at the offset the darkening follows best, or None."""
    step = max(1, round(STEP * line))
    reach = max(1, round(OFFSET * line / step))
    sigma = max(1.0, BLUR * line)
    height, width = ink.shape

    def moved(dx: int, dy: int) -> Floats:
        x, y = dx * step, dy * step
        shifted = np.zeros_like(ink)
        shifted[max(0, y) : height + min(0, y), max(0, x) : width + min(0, x)] = \
            ink[max(0, -y) : height - max(0, y), max(0, -x) : width - max(0, x)]
        return np.asarray(cv2.GaussianBlur(shifted, (0, 0), sigma), np.float32)

    best: tuple[float, Floats | None] = (LEAD, None)
    for dy in range(reach + 1):
        for dx in range(reach + 1):
            if dx == 0 and dy == 0:
                continue
            template = moved(dx, dy)
            here = (template > CORE) & around
            there = (moved(-dx, -dy) > CORE) & around
            if here.sum() < 16 or there.sum() < 16:
                continue
            share = float(darker[here].mean())
            lead = share - float(darker[there].mean())
            if share >= SHARE and lead >= best[0]:
                best = (lead, template)
    return best[1]
