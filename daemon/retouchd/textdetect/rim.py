"""The outer rim of the letters that the mask leaves out, taken into the hole just before the fill.

A letter mask keeps the pixels that differ from the background by more than `strokes.EDGE`; the outermost
anti-aliased pixels of a dark outline over a dark or busy photo often do not, and stay outside the hole. The
fill then takes them for photo: every stroke is filled from a border of the outline's own dark, and a white
caption with a black outline over an even grey comes back as readable dark letters (held-out Cyrillic
Grey-0: 0.36 of the caption restored). Masking the whole rim made the fill worse (a wider hole, less
context), so only the rim pixels that look like the overlay are taken: those one pixel outside the hole
whose colour lies nearer the colour of the nearest masked pixel (the outline) than the photo's estimate
there (Telea from beyond the rim). Where that masked pixel is itself near the photo's colour (within
`MIN_GAP`: a false detection over texture, or a letter's faint edge) nothing is taken: there every
neighbour would look like it.
"""

from __future__ import annotations

import cv2
import numpy as np

from retouchd.masks import box_around
from retouchd.typing import Mask, RGBImage

WIDTH = 1
"""How far outside the hole (px) a pixel may be taken."""
MIN_GAP = 32.0
"""Distance (RGB levels) the nearest masked pixel's colour must lie from the photo's estimate."""
MARGIN = 8
TELEA_RADIUS = 3


def take_rim(rgb: RGBImage, hole: Mask) -> Mask:
    """`hole` with the rim pixels that look like the overlay (see the module docstring) added."""
    box = box_around(hole, MARGIN)
    if box is None:
        return hole
    crop, inside = np.ascontiguousarray(rgb[box]), hole[box]
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * WIDTH + 1, 2 * WIDTH + 1))
    grown = cv2.dilate(inside.astype(np.uint8), disk)
    rim = (grown > 0) & ~inside
    if not rim.any():
        return hole
    photo = cv2.inpaint(crop, grown, TELEA_RADIUS, cv2.INPAINT_TELEA).astype(np.float32)
    # The colour of each pixel's nearest hole pixel: the overlay it would be blended with.
    _, labels = cv2.distanceTransformWithLabels((~inside).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(inside)
    table = np.zeros((int(labels.max()) + 1, 3), np.float32)
    table[labels[ys, xs]] = crop[ys, xs]
    overlay = table[labels]
    image = crop.astype(np.float32)
    nearer = np.linalg.norm(image - overlay, axis=2) < np.linalg.norm(image - photo, axis=2)
    taken = rim & nearer & (np.linalg.norm(overlay - photo, axis=2) > MIN_GAP)
    if not taken.any():
        return hole
    out = hole.copy()
    out[box] |= taken
    return out
