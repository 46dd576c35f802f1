"""Evidence that a line was photographed, not overlaid: the grain of the scene inside its letters.

An overlay is rendered: the inside of an opaque letter is one exact colour (a few levels of anti-aliasing only
at its rim), whatever photo lies beneath. Text that is part of the scene (a shop sign, a label, a shirt) went
through the camera with the rest of the photo: lit unevenly, blurred and carrying the sensor's noise, so the
inside of its letters is grainy like the photo. Per line at least `MIN_LINE` px tall (thinner strokes have no
inside that blur does not reach: a small date stamp is never judged this way): the letter pixels at least
`INSET` px from the letters' edge (so blur and anti-aliasing do not count) and more than `SEPARATE` levels
from the median colour around the letters (the ink, not a counter the mask took in; unless `RENDERED` of all
the inset pixels have one exact colour already: rendered letters barely apart from a pale photo, whose mask took
in their translucent drop shadow, which carries the photo's grain) are compared with the mean
of their 3×3 neighbourhood; the line is *grainy* when at least `MIN_INSIDE` such pixels exist, few of them are
flat (< `FLAT_SHARE` within `FLAT` of their neighbourhood, mean over channels) and their median difference is
the size of noise, not of edges or texture showing through (an outline, a translucent lettering, whose
insides are the photo's: those are left to the other evidence). The size of noise is the photo's own: at most
`NOISE`, or `RELATIVE` times the photo's fine grain away from the line (`photo_grain`) when that is larger
(a noisy photo puts its noise into its signs too). That larger bound also asks for almost no flat pixels
(< `NOISY_FLAT_SHARE`): in a photo that noisy, a sign has none, while a rendered letter keeps its exact colour
wherever nothing translucent or clipped lies over it.
"""

from __future__ import annotations

import cv2
import numpy as np

from retouchd.textdetect import channels
from retouchd.textdetect.db import Quad, quad_size
from retouchd.typing import Mask, RGBImage

INSET = 3
MIN_INSIDE = 150
FLAT = 0.5
FLAT_SHARE = 0.1
NOISE = 8.0
RELATIVE = 0.9
NOISY_FLAT_SHARE = 0.02
CLIP = 32.0
AWAY = 2.0
MIN_LINE = 24.0
RING = 6
SEPARATE = 40.0
RENDERED = 0.2


def grainy(rgb: RGBImage, quad: Quad, letters: Mask) -> bool:
    """True when the insides of the line's letters carry the photo's grain (see the module docstring)."""
    if quad_size(quad)[1] < MIN_LINE:
        return False
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int) - 1, 0)
    x1, y1 = np.ceil(quad.max(0)).astype(int) + 2
    ink = letters[y0:y1, x0:x1].astype(np.uint8)
    if ink.size == 0:
        return False
    size = 2 * INSET + 1
    inside = cv2.erode(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    crop = rgb[y0:y1, x0:x1].astype(np.float32)
    residuals = channels.mean(np.abs(crop - cv2.blur(crop, (3, 3))))
    if int(inside.sum()) >= MIN_INSIDE:
        _, counts = np.unique(rgb[y0:y1, x0:x1][inside].reshape(-1, 3), axis=0, return_counts=True)
        if int(counts.max()) >= RENDERED * int(inside.sum()):
            return False  # one exact colour: rendered letters (white on a pale sky, under a shadow)
    # Only the ink: a letter mask that took in a counter or a gap shows the photo there, not the letter.
    ring = (cv2.dilate(ink, np.ones((2 * RING + 1,) * 2, np.uint8)) > 0) & ~(cv2.dilate(ink, np.ones((5, 5),
                                                                                               np.uint8)) > 0)
    if ring.any():
        around = np.median(crop[ring], axis=0)
        inside &= channels.largest(np.abs(crop - around)) > SEPARATE
    if int(inside.sum()) < MIN_INSIDE:
        return False
    residual = residuals[inside]
    flat = float((residual < FLAT).mean())
    if flat >= FLAT_SHARE:
        return False
    level = float(np.median(residual))
    return level <= NOISE or (flat < NOISY_FLAT_SHARE and level <= RELATIVE * photo_grain(rgb, quad))


def photo_grain(rgb: RGBImage, quad: Quad) -> float:
    """RMS of what a 3×3 box blur removes (per channel, each clipped at `CLIP` so that the edges of other
    lettering do not count), over the photo outside the line's box grown by `AWAY` line heights: the noise and
    fine texture the camera put everywhere. 0 when nothing is left outside."""
    margin = int(AWAY * max(quad_size(quad)[1], 4.0))
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int) - margin, 0)
    x1, y1 = np.ceil(quad.max(0)).astype(int) + margin
    image = rgb.astype(np.float32)
    fine = np.minimum(np.abs(image - cv2.blur(image, (3, 3))), CLIP) ** 2
    away = np.ones(rgb.shape[:2], bool)
    away[y0:y1, x0:x1] = False
    return float(np.sqrt(fine[away].mean())) if away.any() else 0.0
