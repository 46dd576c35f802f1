"""Reading candidate boxes with the PP-OCRv4 recogniser (CTC, greedy decoding).

Recognition is used as evidence, not as output: a text line reads as a string of confident characters,
a clump of petals or an eye does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect.db import Quad, normalise, quad_size
from retouchd.textdetect.runtime import OcrModels
from retouchd.typing import RGBImage

REC_HEIGHT = 48
MAX_REC_WIDTH = 1280
BATCH = 8


@dataclass(frozen=True, slots=True)
class Reading:
    text: str
    confidence: float
    """Mean probability of the decoded characters; 0 when nothing was read."""


def crop_line(rgb: RGBImage, quad: Quad) -> RGBImage:
    """The quad warped upright to an axis-aligned strip; vertical lines are turned to read left to right."""
    length, height = quad_size(quad)
    w, h = max(2, round(length)), max(2, round(height))
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    warp = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    strip = cv2.warpPerspective(rgb, warp, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if h >= 1.5 * w:
        strip = np.rot90(strip)
    return np.ascontiguousarray(strip)


def _to_batch(strips: list[RGBImage]) -> npt.NDArray[np.float32]:
    widths = [min(MAX_REC_WIDTH, max(8, math.ceil(REC_HEIGHT * s.shape[1] / s.shape[0]))) for s in strips]
    batch = np.zeros((len(strips), 3, REC_HEIGHT, max(widths)), np.float32)
    for index, (strip, width) in enumerate(zip(strips, widths, strict=True)):
        resized = cv2.resize(strip, (width, REC_HEIGHT), interpolation=cv2.INTER_LINEAR)
        batch[index, :, :, :width] = normalise(np.asarray(resized, np.uint8))
    return batch


def _decode(probs: npt.NDArray[np.float32], charset: tuple[str, ...]) -> Reading:
    best = probs.argmax(1)
    keep = np.ones_like(best, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    chars = [charset[i] if i < len(charset) else "" for i in best[keep]]
    if not chars:
        return Reading("", 0.0)
    return Reading("".join(chars), float(probs.max(1)[keep].mean()))


def read_lines(models: OcrModels, rgb: RGBImage, quads: list[Quad]) -> list[Reading]:
    """One reading per quad; lines of similar width are batched together to limit padding."""
    strips = [crop_line(rgb, quad) for quad in quads]
    order = sorted(range(len(strips)), key=lambda i: strips[i].shape[1] / strips[i].shape[0])
    readings: list[Reading] = [Reading("", 0.0)] * len(strips)
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        probs = models.run_rec(_to_batch([strips[i] for i in chunk]))
        for index, row in zip(chunk, probs, strict=True):
            readings[index] = _decode(row, models.charset)
    return readings
