"""Periodic patterns continued in phase: the lattice of a repeated pattern around the hole, and the sources it offers.

Patch search continues a façade grid, blinds or tiles only as far as the patches near the hole's edge hold
the phase; deeper in, a source one half-period off matches almost as well, and stripes break. Before the
search, the known ring around the hole is high-passed and its masked, normalised autocorrelation computed
(FFT); a pattern that repeats shows as a peak away from the origin's lobe. The shortest such peak, and the
shortest one in another direction (a grid), are the lattice vectors. During the search every target then
also tries the sources a whole number of periods away, just outside the hole on either side, and a copy
offset that is not a lattice vector pays a penalty that grows with its phase error.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from retouchd.masks import box_around
from retouchd.typing import Mask, RGBImage

Lattice = tuple[tuple[float, float], ...]
"""Lattice vectors (dy, dx) of a periodic pattern, in pixels; empty when the surroundings do not repeat."""


@dataclass(frozen=True, slots=True)
class PeriodParams:
    """Tuning of the period detector; the defaults are what bench/inpaint_quality.py measured best on tune."""

    ring: int = 48
    """Width (pixels) of the known band around the hole that is searched for a period."""
    min_period: float = 3.0
    max_period: float = 96.0
    min_corr: float = 0.45
    """Normalised autocorrelation a peak must reach to count as a period."""
    repeat: float = 0.3
    """Autocorrelation needed at twice the peak's vector too: the pattern repeats at least twice in the ring."""
    contrast: float = 0.35
    """...and by how much it must beat the autocorrelation at half its vector (a repeat, not a slow trend)."""
    band: tuple[float, float] = (1.0, 4.0)
    """Sigmas (pixels) of the difference of Gaussians taken first: no shading, ramp or pixel noise is left,
    and a pattern with a longer period still repeats through its edges."""
    penalty: float = 1.0
    """Cost of a copy offset half a period off the lattice, in medians of the match distances (grows as the
    square of the phase error)."""


def find_lattice(rgb: RGBImage, hole: Mask, params: PeriodParams) -> Lattice:
    """Up to two lattice vectors of the pattern around the hole, shortest first; () when there is none."""
    if not hole.any() or hole.all():
        return ()
    size = 2 * params.ring + 1
    # The disc reaches `ring` px past the hole: dilating the hole's box and that margin gives the same ring.
    near = box_around(hole, params.ring)
    assert near is not None  # the hole is not empty
    ring = np.zeros_like(hole)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    ring[near] = (cv2.dilate(hole[near].astype(np.uint8), disc) > 0) & ~hole[near]
    edge = round(3 * params.band[1])  # how far the band-pass reaches: the crop takes that much more
    box = box_around(ring, edge)
    if box is None or np.count_nonzero(ring) < 256:
        return ()
    gray = np.ascontiguousarray(rgb[box]).mean(axis=2).astype(np.uint8)
    # A smooth guess in the hole, so that its edge does not show as an edge of the pattern.
    gray = cv2.inpaint(gray, hole[box].astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32)
    fine, coarse = params.band
    g = cv2.GaussianBlur(gray, (0, 0), fine) - cv2.GaussianBlur(gray, (0, 0), coarse)
    m = ring[box].astype(np.float32)
    # The mirrored border bends a ramp: leave out what it reaches.
    m[:edge] = m[-edge:] = 0
    m[:, :edge] = m[:, -edge:] = 0
    if m.sum() < 256:
        return ()
    g *= m
    g -= m * (g.sum() / m.sum())
    var = float((g * g).sum() / m.sum())
    if var < 1.0:  # flat surroundings: nothing repeats that a fill could get out of phase
        return ()
    fh, fw = cv2.getOptimalDFTSize(2 * g.shape[0]), cv2.getOptimalDFTSize(2 * g.shape[1])
    spec_g, spec_m = np.fft.rfft2(g, (fh, fw)), np.fft.rfft2(m, (fh, fw))
    num = np.fft.irfft2(spec_g * np.conj(spec_g), (fh, fw))
    count = np.fft.irfft2(spec_m * np.conj(spec_m), (fh, fw))
    reach = int(min(params.max_period, g.shape[0] - 1, g.shape[1] - 1))
    if reach < 2 * params.min_period:
        return ()
    idx = np.arange(-reach, reach + 1)
    num = num[np.ix_(idx % fh, idx % fw)]
    count = count[np.ix_(idx % fh, idx % fw)]
    acf = np.where(count > 0.2 * count[reach, reach], num / np.maximum(count, 1.0) / var, 0.0).astype(np.float32)
    return _lattice(acf, reach, params)


def _lattice(acf: np.ndarray, reach: int, p: PeriodParams) -> Lattice:
    """The shortest strong peaks of `acf` (centred at [reach, reach]) outside the origin's lobe."""
    high = (acf >= p.min_corr * 0.6).astype(np.uint8)
    _, labels = cv2.connectedComponents(high, connectivity=8)
    centre = labels[reach, reach]
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    peaks: list[tuple[float, float, float]] = []
    dy: float
    dx: float
    for label in np.unique(labels):
        if label in (0, centre):
            continue
        inside = labels == label
        top = float(acf[inside].max())
        if top < p.min_corr:
            continue
        k = int(np.argmax(np.where(inside, acf, -np.inf)))
        cy, cx = divmod(k, acf.shape[1])
        dy, dx = cy - reach + _vertex(acf, cy, cx, 0), cx - reach + _vertex(acf, cy, cx, 1)
        length = float(np.hypot(dy, dx))
        half = float(acf[reach + round(dy / 2), reach + round(dx / 2)])
        if top - half < p.contrast:
            continue
        if dy < 0 or (dy == 0 and dx < 0):  # the autocorrelation is symmetric: one of ±v
            dy, dx = -dy, -dx
        peaks.append((length, float(dy), float(dx)))
    if not peaks:
        return ()
    lobe = labels == centre
    w = np.where(lobe, acf, 0.0)
    cov = np.array([[(w * yy * yy).sum(), (w * yy * xx).sum()], [(w * yy * xx).sum(), (w * xx * xx).sum()]])
    values, vectors = np.linalg.eigh(cov)
    if values[1] > 9 * max(values[0], 1e-6):
        # Stripes: the origin's lobe is a ridge along them, and so is every peak. One vector, across the
        # stripes: the first peak of the autocorrelation averaged along them.
        ny, nx = vectors[:, 0]
        across = _stripe_period(acf, yy * ny + xx * nx, p)
        if across is None or _at(acf, reach, 2 * across * ny, 2 * across * nx) < p.repeat:
            return ()
        return ((float(across * ny), float(across * nx)),)
    peaks = sorted(
        (length, vy, vx)
        for length, vy, vx in peaks
        if p.min_period <= length <= p.max_period and _at(acf, reach, 2 * vy, 2 * vx) >= p.repeat
    )
    if not peaks:
        return ()
    _, vy, vx = peaks[0]
    for length, wy, wx in peaks[1:]:
        sine = abs(vy * wx - vx * wy) / (np.hypot(vy, vx) * length)
        if sine > 0.5:
            return ((vy, vx), (wy, wx))
    return ((vy, vx),)


def _at(acf: np.ndarray, reach: int, dy: float, dx: float) -> float:
    """The autocorrelation at displacement (dy, dx), rounded; -1 beyond the window."""
    y, x = reach + round(dy), reach + round(dx)
    inside = 0 <= y < acf.shape[0] and 0 <= x < acf.shape[1]
    return float(acf[y, x]) if inside else -1.0


def _stripe_period(acf: np.ndarray, across: np.ndarray, p: PeriodParams) -> float | None:
    """The first peak, past `min_period`, of `acf` averaged over lines of equal `across` (quarter-pixel bins)."""
    valid = acf != 0
    bins = np.rint(np.abs(across[valid]) * 4).astype(np.intp)
    total = np.bincount(bins, weights=acf[valid])
    count = np.bincount(bins)
    seen = np.flatnonzero(count)
    # Stripes along a pixel axis fill only whole-pixel bins: interpolate between the bins that have data.
    profile = np.interp(np.arange(len(count)), seen, total[seen] / count[seen])
    for k in range(max(4, int(p.min_period * 4)), min(len(profile) - 4, int(p.max_period * 4) + 1)):
        if profile[k] >= p.min_corr and profile[k] >= profile[k - 4 : k + 5].max() and profile[k] > profile[k + 1]:
            a, b, c = profile[k - 4], profile[k], profile[k + 4]
            curve = a - 2 * b + c
            return float(k + (2.0 * (a - c) / curve if curve < 0 else 0.0)) / 4
    return None


def _vertex(acf: np.ndarray, y: int, x: int, axis: int) -> float:
    """Sub-pixel offset of a peak along one axis: the vertex of the parabola through it and its neighbours."""
    step = (1, 0) if axis == 0 else (0, 1)
    lo, hi = (y - step[0], x - step[1]), (y + step[0], x + step[1])
    if min(lo) < 0 or hi[0] >= acf.shape[0] or hi[1] >= acf.shape[1]:
        return 0.0
    a, b, c = float(acf[lo]), float(acf[y, x]), float(acf[hi])
    curve = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / curve, -0.5, 0.5)) if curve < 0 else 0.0


def scaled(lattice: Lattice, zoom: float, min_period: float) -> Lattice:
    """The lattice at a pyramid level `zoom` times the full size; vectors shorter than `min_period` dropped."""
    out = tuple((dy * zoom, dx * zoom) for dy, dx in lattice)
    return tuple(v for v in out if np.hypot(*v) >= min_period)


def phase_error(lattice: Lattice, oy: torch.Tensor, ox: torch.Tensor) -> torch.Tensor:
    """Squared distance (pixels²) of copy offsets (oy, ox) to the nearest lattice point (or lattice line)."""
    oy, ox = oy.float(), ox.float()
    if len(lattice) == 1:
        vy, vx = lattice[0]
        n2 = vy * vy + vx * vx
        frac = (oy * vy + ox * vx) / n2
        return (frac - frac.round()).square() * n2
    (ay, ax), (by, bx) = lattice[:2]
    det = ay * bx - ax * by
    a = (oy * bx - ox * by) / det
    b = (ay * ox - ax * oy) / det
    ey = (a - a.round()) * ay + (b - b.round()) * by
    ex = (a - a.round()) * ax + (b - b.round()) * bx
    return ey.square() + ex.square()


def lattice_candidates(
    lattice: Lattice,
    ty: torch.Tensor,
    tx: torch.Tensor,
    src_ok: torch.Tensor,
    current: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each target and lattice vector, the nearest whole multiple on either side that is a valid source.

    The result is 2·len(lattice) × N source centres; the `current` match where no multiple within reach is
    valid (it changes nothing).
    """
    h, w = src_ok.shape
    rows_y, rows_x = [], []
    for vy, vx in lattice:
        steps = int(min(64, max(h, w) / max(np.hypot(vy, vx), 1.0) + 1))
        k = torch.arange(1, steps + 1, device=ty.device, dtype=torch.float32)[:, None]
        for sign in (1.0, -1.0):
            cy = (ty[None].float() + sign * k * vy).round().long()
            cx = (tx[None].float() + sign * k * vx).round().long()
            inside = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
            ok = inside & src_ok[cy.clamp(0, h - 1), cx.clamp(0, w - 1)]
            hit = ok.any(0)
            first = ok.float().argmax(0)
            rows_y.append(torch.where(hit, cy.gather(0, first[None])[0], current[0]))
            rows_x.append(torch.where(hit, cx.gather(0, first[None])[0], current[1]))
    return torch.stack(rows_y), torch.stack(rows_x)
