"""A tiled watermark's copies share one letter shape: vote it from all of them.

The letter mask of one translucent copy is unreliable: over grass it takes in stalks, over a bright patch
it misses faint strokes. The copies that read the same text at the same size are cut out around their
centres, aligned to the first by phase correlation, and stacked; the pixels in at least `VOTE` of the
copies are the watermark's shape, which is then put back at every copy (and nothing of what only one copy
saw). Copies cut by the image border get the parts the others saw too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect.db import Quad, quad_size
from retouchd.typing import Mask

MIN_COPIES = 3
VOTE = 0.5
MARGIN = 4
REACH = 1.5
NEAR = 3
MAX_SHIFT = 6.0


def tiled_text(readings: Sequence[str]) -> str | None:
    """The reading that at least `MIN_COPIES` lines share (spaces and case aside), if any."""
    counts = Counter(r.replace(" ", "").casefold() for r in readings if len(r.replace(" ", "")) >= 3)
    if not counts:
        return None
    text, count = counts.most_common(1)[0]
    return text if count >= MIN_COPIES else None


def _cut(layer: Mask, centre: npt.NDArray[np.float32], half: int) -> npt.NDArray[np.float32]:
    padded = np.pad(layer, half)
    cx, cy = round(float(centre[0])) + half, round(float(centre[1])) + half
    return padded[cy - half : cy + half, cx - half : cx + half].astype(np.float32)


def _register(copies: Sequence[tuple[Quad, Mask]]) -> tuple[int, list[npt.NDArray[np.float64]],
                                                              list[npt.NDArray[np.float32]],
                                                              list[tuple[float, float]], list[bool]]:
    """(half, centres, crops, shifts, aligned?) of the copies: each copy's letters cut as a 2half×2half patch
    around its quad's centre, and its shift against the first by phase correlation (aligned within MAX_SHIFT)."""
    extent = max(float(np.ptp(quad, axis=0).max()) for quad, _ in copies)
    # The letter masks reach a line height past their quads along the line (see `strokes`): cut that too.
    line = max(quad_size(quad)[1] for quad, _ in copies)
    half = int(extent / 2 + REACH * line) + MARGIN
    centres = [quad.mean(0) for quad, _ in copies]
    crops = [_cut(letters, centre, half) for (_, letters), centre in zip(copies, centres, strict=True)]
    window = cv2.createHanningWindow((2 * half, 2 * half), cv2.CV_32F)
    shifts = [(0.0, 0.0)] + [(float(dx), float(dy)) for dx, dy in
                             (cv2.phaseCorrelate(crops[0], crop, window)[0] for crop in crops[1:])]
    return half, centres, crops, shifts, [max(abs(dx), abs(dy)) <= MAX_SHIFT for dx, dy in shifts]


def _unshifted(crop: npt.NDArray[np.float32], shift: tuple[float, float], half: int) -> npt.NDArray[np.float32]:
    move = np.array([[1, 0, -shift[0]], [0, 1, -shift[1]]], np.float32)
    return np.asarray(cv2.warpAffine(crop, move, (2 * half, 2 * half), flags=cv2.INTER_NEAREST), np.float32)


def align(copies: Sequence[tuple[Quad, Mask]]) -> tuple[int, list[npt.NDArray[np.float64]], Mask] | None:
    """(half, origins, template): the voted letter shape of the copies that align (a 2half×2half patch) and,
    per aligned copy, the image position of the template's top-left pixel; None below `MIN_COPIES`."""
    half, centres, crops, shifts, ok = _register(copies)
    aligned, origins = [], []
    for crop, centre, (dx, dy), good in zip(crops, centres, shifts, ok, strict=True):
        if good:
            aligned.append(_unshifted(crop, (dx, dy), half))
            origins.append(np.array([round(float(centre[0])) - half + dx, round(float(centre[1])) - half + dy]))
    if len(aligned) < MIN_COPIES:
        return None
    return half, origins, np.asarray(np.mean(aligned, axis=0) >= VOTE)


def stack(copies: Sequence[tuple[Quad, Mask]], shape: tuple[int, int]) -> Mask:
    """The voted letter shape put back at every copy (`copies`: each copy's quad and its own letter mask)."""
    half, centres, crops, shifts, ok = _register(copies)
    aligned = [_unshifted(crop, shift, half) for crop, shift, good in zip(crops, shifts, ok, strict=True) if good]
    template = (np.mean(aligned, axis=0) >= VOTE).astype(np.uint8)
    out = np.zeros((shape[0] + 2 * half, shape[1] + 2 * half), bool)
    for centre, crop, (dx, dy) in zip(centres, crops, shifts, strict=True):
        move = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        placed = cv2.warpAffine(template, move, (2 * half, 2 * half), flags=cv2.INTER_NEAREST)
        if max(abs(dx), abs(dy)) > MAX_SHIFT or len(aligned) < MIN_COPIES:
            # Not aligned with the others (another crop of the text, or too few to vote): its own letters.
            placed = (crop > 0).astype(np.uint8)
        # The copy's own letters are kept where they lie next to the shared shape (a pixel of misalignment,
        # a stroke the vote just missed); what it alone saw farther out (a grass stalk) is dropped.
        near = cv2.dilate(placed, np.ones((2 * NEAR + 1,) * 2, np.uint8)) > 0
        cx, cy = round(float(centre[0])) + half, round(float(centre[1])) + half
        out[cy - half : cy + half, cx - half : cx + half] |= (placed > 0) | (near & (crop > 0))
    grown = cv2.dilate(out.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return np.asarray(grown[half : half + shape[0], half : half + shape[1]])
