"""A second, closer look at small lines: a date stamp's digits are split and weakly detected at image scale.

The detector sees a 768×512 photo at ~1.4× and a 12–18 px date stamp as two or three separate words, each
scored low (a "'09", a "9", an "11") or not at all. For every level candidate shorter than `ZOOM_LINE` /
`MIN_ZOOM` px whose evidence reaches `MIN_EVIDENCE` (at most `MAX_LOOKS`, best first), the strip around it
(`ALONG` line heights before and after it, `ACROSS` above and below) is enlarged so the line is about
`ZOOM_LINE` px tall (at most `MAX_ZOOM` times), detected and read again. The lines found there join the
candidates in image pixels; the originals stay (the masking skips the ones a larger box already covers).
The bottom right corner (`CORNER`: its bottom 15 % by right 40 %), where cameras print their date, is always
looked at `CORNER_ZOOM` times enlarged when the image itself was detected at full size or larger (a large
photo detected smaller is not): a stamp over a busy table may leave no candidate at all at image scale. No
enlarged strip exceeds the detector's `max_side`.
"""

from __future__ import annotations

import cv2
import numpy as np

from retouchd.textdetect.db import MAX_SIDE, Candidate, candidates, probability_map, quad_size, quad_tilt
from retouchd.textdetect.evidence import weigh
from retouchd.textdetect.recognize import Reading, read_lines
from retouchd.textdetect.runtime import OcrModels
from retouchd.typing import RGBImage

ZOOM_LINE = 40.0
MIN_ZOOM = 1.8
MAX_ZOOM = 3.0
MIN_EVIDENCE = 0.15
MAX_LOOKS = 3
ALONG = 6.0
ACROSS = 1.5
MAX_TILT = 3.0
CORNER = (0.15, 0.4)
CORNER_ZOOM = 3.0
MIN_STRIP = 8


def _strip(rgb: RGBImage, candidate: Candidate) -> tuple[int, int, int, int]:
    line = quad_size(candidate.quad)[1]
    grow = np.array([ALONG * line, ACROSS * line], np.float32)
    x0, y0 = np.floor(candidate.quad.min(0) - grow).astype(int)
    x1, y1 = np.ceil(candidate.quad.max(0) + grow).astype(int)
    return max(0, int(y0)), min(rgb.shape[0], int(y1)), max(0, int(x0)), min(rgb.shape[1], int(x1))


def second_look(models: OcrModels, rgb: RGBImage, found: list[Candidate], readings: list[Reading],
                corner: bool = True, max_side: int = MAX_SIDE) -> list[tuple[Candidate, Reading]]:
    """The lines found by looking again, enlarged, around the small candidates (see the module docstring)."""
    small = []
    for candidate, reading in zip(found, readings, strict=True):
        tilt = quad_tilt(candidate.quad)
        line = quad_size(candidate.quad)[1]
        evidence = weigh(candidate.det_score, reading.text, reading.confidence, tilt).value
        if tilt <= MAX_TILT and line >= 4 and ZOOM_LINE / line >= MIN_ZOOM and evidence >= MIN_EVIDENCE:
            small.append((evidence, candidate))
    small.sort(key=lambda pair: -pair[0])
    height, width = rgb.shape[:2]
    # Where cameras print their date: the bottom right corner, looked at closer whatever was found there.
    looks: list[tuple[tuple[int, int, int, int], float]] = []
    if corner:
        looks.append(((int(height * (1 - CORNER[0])), height, int(width * (1 - CORNER[1])), width), CORNER_ZOOM))
    for _, candidate in small:
        cx, cy = candidate.quad.mean(0)
        if len(looks) > MAX_LOOKS or any(y0 <= cy < y1 and x0 <= cx < x1 for (y0, y1, x0, x1), _ in looks):
            continue
        looks.append((_strip(rgb, candidate), min(MAX_ZOOM, ZOOM_LINE / quad_size(candidate.quad)[1])))
    out: list[tuple[Candidate, Reading]] = []
    for (y0, y1, x0, x1), wanted in looks:
        zoom = min(wanted, max_side / max(y1 - y0, x1 - x0, 1))
        if y1 - y0 < MIN_STRIP or x1 - x0 < MIN_STRIP or zoom <= 1:
            continue
        big = np.asarray(cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), None, fx=zoom, fy=zoom,
                                    interpolation=cv2.INTER_CUBIC), np.uint8)
        size = (max(32, (big.shape[0] + 31) // 32 * 32), max(32, (big.shape[1] + 31) // 32 * 32))
        near = candidates(probability_map(models, big, size), big.shape[:2])
        if not near:
            continue
        for seen, reading in zip(near, read_lines(models, big, [c.quad for c in near]), strict=True):
            quad = np.asarray(seen.quad / zoom + np.array([x0, y0], np.float32), np.float32)
            out.append((Candidate(quad, seen.det_score), reading))
    return out
