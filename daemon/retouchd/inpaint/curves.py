"""Curved edges that cross a hole: two entering ends that do not line up straight, joined by a smooth curve.

`structure` pairs the ends of an edge across a hole only when they lie on one straight line. A stalk or a
grass blade bends: its two ends point roughly at each other but each one's line misses the other end, or
the edge runs straight past the hole's far side only a little way before it bends out of the straight
line's reach. Here such ends are joined by a cubic Hermite curve (it leaves one end along that end's
direction and arrives at the other along its), kept when each end is an edge over `reach` pixels along its
own direction and the colours on either side of it match at both ends. The guide channels are those of a
line (`structure.guides`), measured from the curve: the signed distance to its nearest point, across its
direction there, saturating at `band` and falling to zero `fade` pixels further and past the curve's ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retouchd.typing import Mask, RGBImage

_TURN = 50.0
"""Two ends pair when their directions are opposite within this angle (degrees)..."""
_AIM = 32.0
"""...and each one points at the other end within this angle."""
_BEND = 8.0
"""...and together they turn by at least this angle, all one way."""
_SIDE = 3
"""The colour profile across an end spans ±_SIDE pixels, and the far end's may slide by ±_SLIDE."""
_SLIDE = 2
_LOOSER = 1.5
"""The two ends' profiles may differ this much more than a straight edge's (each is read along a straight run
beside an edge that bends, and comes out a little smeared)."""
_NEAR = 4
"""An end's direction is measured from the gradients within this many pixels of it."""
_PROFILE = 12
"""The profile is the mean over the run's first _PROFILE pixels (further out a bending edge drifts off it)."""
_EXTEND = 32.0
"""The curve continues straight past both ends for this many pixels (the guide is present where the
edge is known, so sources along it match)."""


@dataclass(frozen=True, slots=True)
class Curve:
    """A smooth edge through the hole: sampled points (N × 2, y x) and their unit directions (N × 2)."""

    points: np.ndarray
    tangents: np.ndarray


def pair_curves(
    ends: list[tuple[np.ndarray, np.ndarray]],
    rgb: RGBImage,
    near_edge: np.ndarray,
    gy: np.ndarray,
    gx: np.ndarray,
    hole: Mask,
    reach: int,
    support: float,
    colour_match: float,
) -> list[tuple[float, Curve, tuple[np.ndarray, np.ndarray]]]:
    """Curves between entering ends (point, unit direction into the hole) that pass the checks: the score
    (weaker end's support × chord length), the curve, and the two end points."""
    turn, aim, bend = np.cos(np.radians(_TURN)), np.cos(np.radians(_AIM)), np.cos(np.radians(_BEND))
    ends = [(end, _tangent(end, u, gy, gx)) for end, u in ends]
    checked = [_end_check(end, u, rgb, near_edge, gy, gx, hole, reach) for end, u in ends]
    out = []
    for i, (ea, ua) in enumerate(ends):
        for j in range(i + 1, len(ends)):
            eb, ub = ends[j]
            chord = eb - ea
            span = float(np.linalg.norm(chord))
            if span < 8 or float(ua @ ub) > -turn:
                continue
            c = chord / span
            if float(c @ ua) < aim or float(-(c @ ub)) < aim:
                continue
            # One bend, no inflection: the chord turns the same way from the first end's direction as the
            # second end's turns from it, by _BEND or more in all. Parallel ends offset sideways are not a
            # curve (stripes, or the boards of a deck, would pair with their neighbours across the hole).
            into, out_of = ua[0] * c[1] - ua[1] * c[0], c[0] * -ub[1] - c[1] * -ub[0]
            if into * out_of <= 0 or float(ua @ -ub) > bend:
                continue
            a, b = checked[i], checked[j]
            if a is None or b is None or min(a[0], b[0]) < support:
                continue
            # The far end's profile, read along the travel direction (out of the hole: -ub), is the near end's
            # mirrored across the edge; flip it so both are read left to right along the travel direction.
            near, far = a[1], b[1][::-1]
            mid = near[_SLIDE : _SLIDE + 2 * _SIDE + 1]
            if float(np.ptp(mid, axis=0).max()) < 12:
                continue
            # Slid in half-pixel steps: a thin stroke's edges fall between the samples differently at each end.
            halves = (far[:-1] + far[1:]) / 2
            windows = [far[s : s + 2 * _SIDE + 1] for s in range(2 * _SLIDE + 1)]
            windows += [halves[s : s + 2 * _SIDE + 1] for s in range(2 * _SLIDE)]
            misfit = min(float(np.linalg.norm(mid - win, axis=1).max()) for win in windows)
            if misfit > _LOOSER * colour_match:
                continue
            curve = hermite(ea, ua, eb, -ub, hole.shape)
            out.append((min(a[0], b[0]) * span, curve, (ea, eb)))
    return out


def hermite(a: np.ndarray, ta: np.ndarray, b: np.ndarray, tb: np.ndarray, shape: tuple[int, int]) -> Curve:
    """The cubic from a (leaving along ta) to b (arriving along tb), with straight runs past both ends."""
    span = float(np.linalg.norm(b - a))
    s = np.linspace(0.0, 1.0, max(8, int(span * 2)))[:, None]
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    body = h00 * a + h10 * span * ta + h01 * b + h11 * span * tb
    d = 6 * (s**2 - s) * a + (3 * s**2 - 4 * s + 1) * span * ta
    d += (6 * s - 6 * s**2) * b + (3 * s**2 - 2 * s) * span * tb
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    run = np.arange(0.5, _EXTEND, 0.5)[:, None]
    before, after = a - run[::-1] * ta, b + run * tb
    points = np.concatenate([before, body, after])
    tangents = np.concatenate([np.repeat(ta[None], len(run), 0), d, np.repeat(tb[None], len(run), 0)])
    h, w = shape
    keep = (points[:, 0] > -0.5) & (points[:, 0] < h - 0.5) & (points[:, 1] > -0.5) & (points[:, 1] < w - 0.5)
    return Curve(points[keep], tangents[keep])


def curve_guide(shape: tuple[int, int], curve: Curve, band: float, fade: float, weight: float) -> np.ndarray:
    """The two guide channels of a curve (2 × H × W float32), as `structure.guides` makes for a line."""
    h, w = shape
    iy = np.rint(curve.points[:, 0]).astype(np.intp)
    ix = np.rint(curve.points[:, 1]).astype(np.intp)
    src = np.ones(shape, np.uint8)
    src[iy, ix] = 0
    dist, labels = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # Each label names one zero pixel; the last sample on that pixel stands for it.
    index = np.zeros(int(labels.max()) + 1, np.intp)
    index[labels[iy, ix]] = np.arange(len(iy))
    nearest = index[labels]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    q, t = curve.points[nearest], curve.tangents[nearest]
    signed = ((yy - q[..., 0]) * t[..., 1] - (xx - q[..., 1]) * t[..., 0]).astype(np.float32)
    out = np.empty((2, h, w), np.float32)
    level = np.clip(signed / band, -1.0, 1.0)
    # Past the curve's ends the nearest point is an end, and the distance there is not across the curve.
    far = np.maximum(dist, np.abs(signed))
    fall = np.exp(-np.square(np.maximum(far - band, 0.0) / fade))
    out[0] = weight * level * fall
    out[1] = weight * np.exp(-np.square(far / band))
    return out


def _end_check(
    end: np.ndarray,
    u: np.ndarray,
    rgb: RGBImage,
    near_edge: np.ndarray,
    gy: np.ndarray,
    gx: np.ndarray,
    hole: Mask,
    reach: int,
) -> tuple[float, np.ndarray] | None:
    """Support of the edge along an end's own direction, away from the hole, and the colour profile across
    it (rows: offsets −_SIDE−_SLIDE … +_SIDE+_SLIDE, left of the travel direction u first); None when the
    run leaves the image or meets the hole."""
    h, w = hole.shape
    t = np.arange(0, reach, dtype=np.float32)[:, None]
    pts = end - t * u
    iy, ix = np.rint(pts[:, 0]).astype(np.intp), np.rint(pts[:, 1]).astype(np.intp)
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    if inside.mean() < 0.8:
        return None
    iy, ix, pts = iy[inside], ix[inside], pts[inside]
    if hole[iy, ix].any():
        return None
    dy, dx = float(u[0]), float(u[1])
    across = np.abs(gy[iy, ix] * dx - gx[iy, ix] * dy)
    along = np.abs(gy[iy, ix] * dy + gx[iy, ix] * dx)
    score = float((near_edge[iy, ix] & (across > 2 * along)).mean())
    profile, pts = [], pts[:_PROFILE]
    for off in range(-_SIDE - _SLIDE, _SIDE + _SLIDE + 1):
        cy = np.clip(np.rint(pts[:, 0] + off * dx), 0, h - 1).astype(np.intp)
        cx = np.clip(np.rint(pts[:, 1] - off * dy), 0, w - 1).astype(np.intp)
        profile.append(rgb[cy, cx].astype(np.float32).mean(0))
    return score, np.stack(profile)


def _tangent(end: np.ndarray, u: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """The edge's direction right at an end, from the gradients within _NEAR pixels of it (a Hough segment's
    direction is its mean over its length: along a bending edge, that of a point further from the hole)."""
    h, w = gy.shape
    y0, x0 = round(float(end[0])), round(float(end[1]))
    ys, xs = slice(max(y0 - _NEAR, 0), min(y0 + _NEAR + 1, h)), slice(max(x0 - _NEAR, 0), min(x0 + _NEAR + 1, w))
    ay, ax = gy[ys, xs].astype(np.float64), gx[ys, xs].astype(np.float64)
    tensor = np.array([[(ay * ay).sum(), (ay * ax).sum()], [(ay * ax).sum(), (ax * ax).sum()]])
    values, vectors = np.linalg.eigh(tensor)
    if values[1] <= 0 or values[0] > 0.5 * values[1]:
        return u
    g = vectors[:, 1]
    t = np.array([g[1], -g[0]])
    t = t if float(t @ u) >= 0 else -t
    return t if float(t @ u) > np.cos(np.radians(25.0)) else u
