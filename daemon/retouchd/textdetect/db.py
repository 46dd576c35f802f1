"""DB (differentiable binarisation) detection: the probability map and its candidate text boxes.

The network marks *shrunk* text cores. As PaddleOCR does, the map is thresholded at 0.3, each connected
core gets its minimum-area rectangle and a score (mean probability inside it), and the rectangle is
grown back ("unclipped") by `area × 1.6 / perimeter` on every side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect.runtime import OcrModels
from retouchd.typing import RGBImage

MIN_SIDE = 736
"""Images are scaled so their short side reaches this (as PaddleOCR does): small text stays readable."""
MAX_SIDE = 2048
"""Bound on the detector's long side: large images are detected smaller and the boxes mapped back."""
MAX_UPSCALE = 2.0
PIXEL_THRESHOLD = 0.3
BOX_THRESHOLD = 0.5
UNCLIP_RATIO = 1.6
MAX_CANDIDATES = 64

Quad = npt.NDArray[np.float32]
"""4×2 corners (x, y) in image pixels: top-left, top-right, bottom-right, bottom-left."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One detected text line in image pixels, before recognition."""

    quad: Quad
    det_score: float


def detection_size(height: int, width: int, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(height, width) the detector sees: multiples of 32, short side ≥ min_side (at most ×2 up),
    long side ≤ max_side."""
    ratio = min(MAX_UPSCALE, max(1.0, min_side / min(height, width)))
    ratio = min(ratio, max_side / max(height, width))
    return (max(32, round(height * ratio / 32) * 32), max(32, round(width * ratio / 32) * 32))


def normalise(rgb: RGBImage) -> npt.NDArray[np.float32]:
    """RGB uint8 → 3×H×W float BGR in [-1, 1], the layout PaddleOCR's networks were trained on."""
    # Planes reordered as bytes, then scaled in place: the same values, a seventh of the time of scaling an
    # interleaved copy and transposing it.
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1)[::-1]).astype(np.float32)
    planes /= 127.5
    planes -= 1.0
    return planes


def probability_map(models: OcrModels, rgb: RGBImage, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Text probability at detector resolution `size` = (height, width)."""
    shrink = size[0] < rgb.shape[0]
    resized = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.asarray(models.run_det(normalise(np.asarray(resized, np.uint8))[None])[0], np.float32)


def order_quad(points: npt.NDArray[np.float32]) -> Quad:
    """Corners sorted as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _box_score(prob: npt.NDArray[np.float32], corners: npt.NDArray[np.float32]) -> float:
    height, width = prob.shape
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [width - 1, height - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int), 0, [width - 1, height - 1])
    inside = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(inside, [np.round(corners - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], inside)[0])


def candidates(prob: npt.NDArray[np.float32], image_shape: tuple[int, int]) -> list[Candidate]:
    """Scored, unclipped text boxes from a probability map, in the coordinates of `image_shape`."""
    bitmap = cv2.dilate((prob > PIXEL_THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    scale = np.array([image_shape[1] / prob.shape[1], image_shape[0] / prob.shape[0]], np.float32)
    found: list[Candidate] = []
    for contour in contours:
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < 3:
            continue
        score = _box_score(prob, np.asarray(cv2.boxPoints(((cx, cy), (w, h), angle)), np.float32))
        if score < BOX_THRESHOLD:
            continue
        grow = w * h * UNCLIP_RATIO / (2 * (w + h))
        corners = cv2.boxPoints(((cx, cy), (w + 2 * grow, h + 2 * grow), angle)) * scale
        found.append(Candidate(order_quad(corners.astype(np.float32)), score))
    found.sort(key=lambda c: -c.det_score * quad_size(c.quad)[0])
    return found[:MAX_CANDIDATES]


def quad_size(quad: Quad) -> tuple[float, float]:
    """(length along the text line, height across it) in pixels."""
    top, left = quad[1] - quad[0], quad[3] - quad[0]
    return float(np.hypot(*top)), float(np.hypot(*left))


def quad_tilt(quad: Quad) -> float:
    """Degrees between the quad's sides and the nearest image axis (0 = axis-aligned, at most 45)."""
    dx, dy = quad[1] - quad[0]
    angle = abs(math.degrees(math.atan2(float(dy), float(dx)))) % 90.0
    return min(angle, 90.0 - angle)
