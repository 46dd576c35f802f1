"""Edge-guided completion: straight edges that cross a hole, found on both sides and drawn through it.

Patch search alone completes a hole from what fits locally; an edge that enters the hole is often
dropped or bent, because the patches that would continue it are no better a match, at first, than
the flat ones beside them. Before the search, straight edges are found in the known part of the crop
(Canny + probabilistic Hough, away from the hole's own border), each extended across the hole, and
kept only when the far side has the same edge: edge pixels along the line on both sides, and the
same colours on either side of it at both ends (the pairing by direction and colour). Every kept line
becomes a guide channel known everywhere, in the hole too: the signed distance to the line, clipped
to a narrow band and zero far from it. The guides travel with the colour through the pyramid but are
never voted, so a target patch just above the line must copy a source patch just above a line of
the same direction, and the edge continues straight where the line says.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retouchd.typing import Mask, RGBImage

_END_GAP = 12.0
"""A segment end this close to the hole (pixels) is an edge entering it."""
_PAIR_ANGLE = 12.0
"""Two entering ends pair when they point at each other within this angle (degrees)."""
_PAIR_OFFSET = 3.0
"""...and each one's line passes within this many pixels of the other end."""
_SIDE = 3
"""The colour profile across a line, compared at both ends of the hole, spans ±_SIDE pixels..."""
_SLIDE = 2
"""...and may be shifted by up to ±_SLIDE pixels at the far end (the line is then re-drawn to match)."""


@dataclass(frozen=True, slots=True)
class StructureParams:
    """Tuning of the edge guides; the defaults are what bench/inpaint_quality.py measured best on tune photos."""

    max_lines: int = 3
    canny_low: int = 20
    canny_high: int = 60
    """Hysteresis thresholds of the edge detector (on a lightly blurred grey image)."""
    min_length: int = 24
    """Shortest Hough segment, in pixels, that is extended straight through the hole."""
    min_end: int = 12
    """Shortest Hough segment that counts as an edge entering the hole (paired with one across it)."""
    reach: int = 24
    """How far past the hole, on each side, the edge must be present (pixels along the line)."""
    support: float = 0.6
    """Share of the samples within `reach` on each side that must lie on an edge of the line's direction."""
    colour_match: float = 30.0
    """Largest colour difference (RGB distance) between the two ends, on each side of the line."""
    band: float = 3.0
    """Signed distance (pixels) at which a guide saturates at ±1."""
    fade: float = 10.0
    """Beyond `band`, the guide falls back to zero over about this many pixels."""
    weight: float = 150
    """Guide value at saturation, against colour on the 0–255 scale."""


@dataclass(frozen=True, slots=True)
class Line:
    """A straight edge: a point on it, its unit direction (y, x), and the hole chord [t0, t1] along it."""

    py: float
    px: float
    dy: float
    dx: float
    t0: float
    t1: float


def find_lines(rgb: RGBImage, hole: Mask, params: StructureParams) -> list[Line]:
    """Straight edges that enter the hole and leave it on the far side, strongest first."""
    if not hole.any() or hole.all():
        return []
    gray = cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY), (5, 5), 1.2)
    edges = cv2.Canny(gray, params.canny_low, params.canny_high)
    near_hole = cv2.dilate(hole.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    edges[near_hole] = 0
    long = cv2.HoughLinesP(edges, 1, np.pi / 180, 20, minLineLength=params.min_length, maxLineGap=3)
    short = cv2.HoughLinesP(edges, 1, np.pi / 180, 12, minLineLength=params.min_end, maxLineGap=3)
    parts = [found.reshape(-1, 4) for found in (long, short) if found is not None]
    if not parts:
        return []
    segments = np.concatenate(parts)
    gx = cv2.Sobel(gray.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray.astype(np.float32), cv2.CV_32F, 0, 1, ksize=3)
    near_edge = cv2.dilate(edges, np.ones((3, 3), np.uint8)) > 0
    found: list[tuple[float, Line]] = []
    for line in _candidates(segments.astype(np.float64), hole, params):
        if any(_same(line, other) for _, other in found):
            continue
        paired = _paired(line, rgb, near_edge, gy, gx, hole, params)
        if paired is not None and not any(_same(paired[1], other) for _, other in found):
            found.append(paired)
    found.sort(key=lambda item: -item[0])
    return [line for _, line in found[: params.max_lines]]


def guides(shape: tuple[int, int], lines: list[Line], params: StructureParams) -> np.ndarray:
    """Two channels per line (2K × H × W float32), zero far from the line: the clipped signed distance
    (which side), and a bump on the line itself (on it or far away: both have a side of zero)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    out = np.zeros((2 * len(lines), *shape), dtype=np.float32)
    for k, line in enumerate(lines):
        signed = (yy - line.py) * line.dx - (xx - line.px) * line.dy
        level = np.clip(signed / params.band, -1.0, 1.0)
        fall = np.exp(-np.square(np.maximum(np.abs(signed) - params.band, 0.0) / params.fade))
        out[2 * k] = params.weight * level * fall
        out[2 * k + 1] = params.weight * np.exp(-np.square(signed / params.band))
    return out


def _candidates(segments: np.ndarray, hole: Mask, p: StructureParams) -> list[Line]:
    """Lines to test: long segments extended through the hole, then pairs of segment ends that point at
    each other across it (an edge that bends a little is seen straight near the hole on both sides)."""
    lines: list[Line] = []
    ends: list[tuple[np.ndarray, np.ndarray]] = []
    outside = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, 3)
    h, w = hole.shape
    for x0, y0, x1, y1 in segments.tolist():
        a, b = np.array([y0, x0]), np.array([y1, x1])
        length = float(np.linalg.norm(b - a))
        if length >= p.min_length:
            line = _crossing(y0, x0, (y1 - y0) / length, (x1 - x0) / length, hole)
            if line is not None:
                lines.append(line)
        da, db = outside[int(y0), int(x0)], outside[int(y1), int(x1)]
        near, far = (a, b) if da < db else (b, a)
        if min(da, db) <= _END_GAP:
            ends.append((near, (near - far) / length))
    cos = np.cos(np.radians(_PAIR_ANGLE))
    for i, (ea, ua) in enumerate(ends):
        for eb, ub in ends[i + 1 :]:
            chord = eb - ea
            span = float(np.linalg.norm(chord))
            if span < 8 or float(ua @ ub) > -cos:
                continue
            c = chord / span
            # Straight across: each end's own direction misses the other end by at most _PAIR_OFFSET px.
            # Looser, a board of a deck would pair with the next board on the far side.
            misses = max(abs(float(c[0] * u[1] - c[1] * u[0])) for u in (ua, ub)) * span
            if float(c @ ua) > cos and float(-(c @ ub)) > cos and misses <= _PAIR_OFFSET:
                line = _crossing(float(ea[0]), float(ea[1]), float(c[0]), float(c[1]), hole)
                if line is not None and 0 <= ea[0] < h and 0 <= ea[1] < w:
                    lines.append(line)
    return lines


def _crossing(py: float, px: float, dy: float, dx: float, hole: Mask) -> Line | None:
    """The line through (py, px) along (dy, dx) if it crosses the hole; t measured from (py, px)."""
    h, w = hole.shape
    span = float(np.hypot(h, w))
    t = np.arange(-span, span, 0.5, dtype=np.float32)
    ys, xs = np.rint(py + t * dy).astype(np.intp), np.rint(px + t * dx).astype(np.intp)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    t, ys, xs = t[inside], ys[inside], xs[inside]
    in_hole = hole[ys, xs]
    if not in_hole.any():
        return None
    chord = t[in_hole]
    return Line(py, px, dy, dx, float(chord.min()), float(chord.max()))


def _same(a: Line, b: Line) -> bool:
    """Nearly the same line: directions within ~3° and a's chord centre within 2 px of b."""
    if abs(a.dy * b.dx - a.dx * b.dy) > 0.05:
        return False
    tm = (a.t0 + a.t1) / 2
    cy, cx = a.py + tm * a.dy, a.px + tm * a.dx
    return abs((cy - b.py) * b.dx - (cx - b.px) * b.dy) < 2.0


def _paired(
    line: Line, rgb: RGBImage, near_edge: np.ndarray, gy: np.ndarray, gx: np.ndarray, hole: Mask, p: StructureParams
) -> tuple[float, Line] | None:
    """When both sides carry the edge with the same colour profile across it: the support on the weaker
    side and the line re-drawn through both ends (a Hough segment of one side is often a pixel or two off
    at the other); else None."""
    h, w = hole.shape
    supports, profiles, anchors = [], [], []
    for sign, start in ((-1.0, line.t0), (1.0, line.t1)):
        t = start + sign * np.arange(4, 4 + p.reach, dtype=np.float32)
        ys, xs = line.py + t * line.dy, line.px + t * line.dx
        iy, ix = np.rint(ys).astype(np.intp), np.rint(xs).astype(np.intp)
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        if inside.mean() < 0.8:
            return None
        iy, ix = iy[inside], ix[inside]
        if hole[iy, ix].any():
            return None
        # An edge of this line: an edge pixel whose gradient is across the line, not along it.
        across = np.abs(gy[iy, ix] * line.dx - gx[iy, ix] * line.dy)
        along = np.abs(gy[iy, ix] * line.dy + gx[iy, ix] * line.dx)
        supports.append(float((near_edge[iy, ix] & (across > 2 * along)).mean()))
        profile = []
        for off in range(-_SIDE - _SLIDE, _SIDE + _SLIDE + 1):
            cy = np.clip(np.rint(ys[inside] + off * line.dx), 0, h - 1).astype(np.intp)
            cx = np.clip(np.rint(xs[inside] - off * line.dy), 0, w - 1).astype(np.intp)
            profile.append(rgb[cy, cx].astype(np.float32).mean(0))
        profiles.append(np.stack(profile))
        mid = float(t[inside].mean())
        anchors.append((line.py + mid * line.dy, line.px + mid * line.dx))
    if min(supports) < p.support:
        return None
    near = profiles[0][_SLIDE : _SLIDE + 2 * _SIDE + 1]
    # The profile across the line must change (a step, or a thin line), or there is no edge to continue.
    if float(np.ptp(near, axis=0).max()) < 12:
        return None
    misfit, shift = min(
        (float(np.linalg.norm(near - profiles[1][s : s + 2 * _SIDE + 1], axis=1).max()), s - _SLIDE)
        for s in range(2 * _SLIDE + 1)
    )
    if misfit > p.colour_match:
        return None
    (ay, ax), (by, bx) = anchors
    by, bx = by + shift * line.dx, bx - shift * line.dy
    length = float(np.hypot(by - ay, bx - ax))
    redrawn = _crossing(ay, ax, (by - ay) / length, (bx - ax) / length, hole)
    if redrawn is None:
        return None
    return min(supports) * (redrawn.t1 - redrawn.t0), redrawn
