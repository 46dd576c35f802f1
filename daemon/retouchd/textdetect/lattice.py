"""The lattice of a tiled watermark, found from the image itself (no text is read).

A watermark tiled over a photo repeats exactly: the same strokes at every point `m·a + n·b` of a lattice. The
autocorrelation of the image's fine detail (luminance minus its 2 px blur, clipped at `CLIP` robust sigmas so
a few strong photo edges do not dominate) then has sharp peaks at the lattice's vectors, while the photo's own
detail decorrelates within a few pixels. The detail is whitened first (each frequency's amplitude raised to
`1 − WHITEN`): a photo's detail crowds a few frequencies (the stripes of a facade, a horizon's edge), a
repeated mark spreads over many fine lines of the spectrum; flattened, a faint mark over a strongly textured
photo still stands out (tune and holdout: the lattice stood 24–150 robust sigmas of the autocorrelation out,
the photo's own peaks at most 17; unwhitened, 0.10 against 0.42 on a photo of stripes). A peak counts when it
stands `PROMINENCE` robust sigmas above everything in a ring of radius `RING` around it (a ridge — a horizon,
the slats of a blind — has no such ring) and reaches `MIN_PEAK` robust sigmas. The two shortest independent
peaks of at least `STRONG` of the highest are the basis; it is accepted only when most lattice points within
reach (`MIN_HITS`) carry a peak too, refined to a finer lattice (half a step more) when most of the points
that adds carry one too, and then fitted to all of them (sub-pixel, least squares). A photo's repeating
texture — tiles, windows, a fence — is seen in perspective or covers part of the frame: its peaks blur or miss
lattice points; whatever passes here is checked again by the opacity model (`repeats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect import channels

WORK_SIDE = 1024
"""Long side the autocorrelation is computed at (larger images are reduced first)."""
CLIP = 4.0
MIN_STEP = 24
"""Shortest lattice step, in working pixels (closer repeats are a texture, not copies of a text)."""
RING = (4, 8)
WHITEN = 0.8
PROMINENCE = 8.0
MIN_PEAK = 12.0
MIN_HITS = 0.7
STRONG = 0.25
"""Peaks this share of the highest may span the lattice (the shortest two independent ones do)."""
MAX_ORDER = 3
EXPECTED_OVERLAP = 0.35
"""Lattice points whose shift leaves this share of the image overlapping are expected to carry a peak."""
SNAP = 0.25
"""A fitted step this close to whole pixels is taken as whole (watermarks are tiled at pixel positions)."""
OFF_PEAK = 0.5
"""A peak farther than this (px) from the first fit's lattice point is left out of the final fit."""
MIN_FIT = 4
"""Close peaks the refit needs (it solves the two steps, four unknowns, from the peaks' positions: with four
it is overdetermined enough to trust); with fewer, the first fit stands."""

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Lattice:
    """Two independent steps (x, y) in image pixels, and how strongly the image repeats along them."""

    a: tuple[float, float]
    b: tuple[float, float]
    strength: float
    """Mean normalised autocorrelation at the lattice points (0–1)."""
    motif: tuple[tuple[float, float], tuple[float, float]] | None = None
    """The steps between single copies when those are not whole pixels (a staggered layout with an odd step:
    `a` and `b` then span two copies each)."""

    @property
    def basis(self) -> npt.NDArray[np.float64]:
        """2×2, the steps as columns."""
        return np.array([self.a, self.b], np.float64).T

    @property
    def copies(self) -> Lattice:
        """The lattice of single copies (sub-pixel steps when `motif` is set)."""
        return self if self.motif is None else Lattice(self.motif[0], self.motif[1], self.strength)


def detail(lum: Floats) -> Floats:
    """Fine detail of a luminance image, clipped at `CLIP` robust sigmas."""
    hp = lum - cv2.GaussianBlur(lum, (0, 0), 2.0)
    spread = 1.4826 * float(np.median(np.abs(hp))) + 0.5
    return np.asarray(np.clip(hp, -CLIP * spread, CLIP * spread), np.float32)


def whitened(signal: Floats) -> Floats:
    """`signal` with each frequency's amplitude raised to `1 − WHITEN` (phase kept)."""
    spectrum = np.fft.rfft2(signal - signal.mean())
    flat = spectrum / (np.abs(spectrum) ** WHITEN + 1e-3)
    return np.asarray(np.fft.irfft2(flat, signal.shape), np.float32)


def autocorrelation(signal: Floats) -> Floats:
    """Normalised autocorrelation (1 at zero shift), centred; shifts with under a quarter overlap are 0."""
    h, w = signal.shape
    rows, cols = cv2.getOptimalDFTSize(2 * h), cv2.getOptimalDFTSize(2 * w)
    padded = np.zeros((rows, cols), np.float32)
    padded[:h, :w] = signal - signal.mean()
    # Only the first h rows hold the signal: the row transforms of the zero padding below are skipped.
    spectrum = cv2.dft(padded, flags=cv2.DFT_COMPLEX_OUTPUT, nonzeroRows=h)
    power = cv2.mulSpectrums(spectrum, spectrum, 0, conjB=True)
    raw = cv2.idft(power, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    # Pixels overlapping at each shift: (w − |dx|)(h − |dy|).
    dx = np.maximum(w - np.abs(np.arange(cols, dtype=np.float32) - cols // 2), 0)
    dy = np.maximum(h - np.abs(np.arange(rows, dtype=np.float32) - rows // 2), 0)
    count = dy[:, None] * dx[None, :]
    measured = count > 0.25 * h * w
    np.maximum(count, 1.0, out=count)
    # Centred (as `np.fft.fftshift`) and divided by the overlap in one pass per quadrant, only where measured.
    norm = np.zeros((rows, cols), np.float32)
    cy, cx = rows // 2, cols // 2
    for dst_y, src_y in ((slice(cy, rows), slice(0, rows - cy)), (slice(0, cy), slice(rows - cy, rows))):
        for dst_x, src_x in ((slice(cx, cols), slice(0, cols - cx)), (slice(0, cx), slice(cols - cx, cols))):
            np.divide(raw[src_y, src_x], count[dst_y, dst_x], out=norm[dst_y, dst_x], where=measured[dst_y, dst_x])
    norm /= np.float32(max(float(norm[cy, cx]), 1e-6))
    return norm


def _sigma(corr: Floats) -> float:
    """Robust sigma of the autocorrelation over the shifts it was measured at."""
    values = corr[corr != 0]  # a copy: the medians may reorder it
    deviations = np.abs(values - np.median(values, overwrite_input=True))
    return 1.4826 * float(np.median(deviations, overwrite_input=True)) + 1e-6


def repeat_height(lum: Floats, basis: npt.NDArray[np.float64]) -> float:
    """How strongly `lum` repeats along the lattice `basis` (steps as columns, image pixels): the median over
    its four shortest vectors of the whitened detail's autocorrelation, in robust sigmas."""
    corr = autocorrelation(whitened(detail(lum)))
    rows, cols = corr.shape
    heights = []
    for m, n in ((1, 0), (0, 1), (1, 1), (1, -1)):
        x, y = basis @ (m, n)
        col, row = round(cols // 2 + float(x)), round(rows // 2 + float(y))
        if 1 <= col < cols - 1 and 1 <= row < rows - 1:
            heights.append(float(corr[row - 1 : row + 2, col - 1 : col + 2].max()))
    return float(np.median(heights)) / _sigma(corr) if heights else 0.0


def _peaks(corr: Floats) -> tuple[npt.NDArray[np.float64], Floats]:
    """(shifts (x, y) relative to the centre, heights) of the prominent local maxima in the upper half-plane
    (prominence and height in robust sigmas of the autocorrelation)."""
    rows, cols = corr.shape
    sigma = _sigma(corr)
    cy, cx = rows // 2, cols // 2
    # The upper half-plane only, and the rows its local maxima's windows reach below it.
    upper = corr[: cy + 1]
    local = cv2.dilate(corr[: cy + RING[0]], np.ones((2 * RING[0] - 1,) * 2, np.uint8))[: cy + 1]
    keep = (upper == local) & (upper >= MIN_PEAK * sigma)
    keep[cy, : cx + 1] = False
    keep[max(cy - MIN_STEP, 0) : cy + 1, max(cx - MIN_STEP, 0) : cx + MIN_STEP + 1] &= (
        np.hypot(*np.mgrid[-min(MIN_STEP, cy) : 1, -min(MIN_STEP, cx) : min(MIN_STEP, cols - cx - 1) + 1])
        >= MIN_STEP)
    ys, xs = np.nonzero(keep)
    # The ring's maximum (a dilation by the ring) at the few local maxima left, not over the whole image.
    prominent = upper[ys, xs] - _ring_max(corr, ys, xs) >= PROMINENCE * sigma
    ys, xs = ys[prominent], xs[prominent]
    shifts = np.column_stack([xs - cx, ys - cy]).astype(np.float64)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if 0 < x < cols - 1 and 0 < y < rows - 1:
            shifts[i] += [_vertex(corr[y, x - 1 : x + 2]), _vertex(corr[y - 1 : y + 2, x])]
    return shifts, corr[ys, xs]


def _ring_max(corr: Floats, ys: npt.NDArray[np.intp], xs: npt.NDArray[np.intp]) -> Floats:
    """At each (ys, xs), the maximum of `corr` over the ring of radii `RING` around it (pixels past the border
    left out): `cv2.dilate(corr, ring)` there."""
    ring = np.zeros((2 * RING[1] + 1,) * 2, np.uint8)
    cv2.circle(ring, (RING[1], RING[1]), RING[1], 1, -1)
    cv2.circle(ring, (RING[1], RING[1]), RING[0] - 1, 0, -1)
    oy, ox = np.nonzero(ring)
    at_y, at_x = ys[:, None] + (oy - RING[1])[None, :], xs[:, None] + (ox - RING[1])[None, :]
    inside = (at_y >= 0) & (at_y < corr.shape[0]) & (at_x >= 0) & (at_x < corr.shape[1])
    values = np.where(inside, corr[np.clip(at_y, 0, corr.shape[0] - 1), np.clip(at_x, 0, corr.shape[1] - 1)],
                      -np.inf)
    return np.asarray(values.max(axis=1) if len(ys) else np.zeros(0), np.float32)


def _vertex(three: Floats) -> float:
    """Sub-pixel offset of a parabola's vertex through three samples."""
    left, mid, right = (float(v) for v in three)
    bend = left - 2 * mid + right
    return 0.0 if bend >= 0 else float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5))


def _reduced(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64],
                                                                             npt.NDArray[np.float64]]:
    """Gauss-reduced basis: the shortest, most orthogonal pair spanning the same lattice."""
    for _ in range(16):
        if a @ a > b @ b:
            a, b = b, a
        k = round(float(a @ b) / float(a @ a))
        if k == 0:
            break
        b = b - k * a
    return a, b


def find(rgb: npt.NDArray[np.uint8]) -> Lattice | None:
    """The lattice along which `rgb` repeats exactly, or None."""
    lum = channels.mean32(rgb)
    scale = min(1.0, WORK_SIDE / max(lum.shape))
    if scale < 1.0:
        lum = np.asarray(cv2.resize(lum, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.float32)
    corr = autocorrelation(whitened(detail(lum)))
    shifts, heights = _peaks(corr)
    if len(shifts) < 2:
        return None
    order = np.argsort(np.hypot(*shifts.T))
    shifts, heights = shifts[order], heights[order]
    top = float(heights.max())
    strong = shifts[heights >= STRONG * top]
    first = strong[0]
    second = next((s for s in strong[1:] if abs(first[0] * s[1] - first[1] * s[0]) >
                   0.3 * float(np.hypot(*first) * np.hypot(*s))), None)
    if second is None:
        return None
    a, b = _reduced(first, second)
    basis = np.array([a, b]).T
    hits, whole = _hits(basis, shifts, lum.shape)
    if hits is None:
        return None
    # The strongest peaks may span every other copy only (a staggered layout with an odd step: the peaks
    # between them fall half a pixel off and split in two): a finer lattice wins when the points it adds
    # carry peaks too.
    for _ in range(2):
        for finer in (((a + b) / 2, b), (a / 2, b), (a, b / 2)):
            c, d = _reduced(*finer)
            if min(float(np.hypot(*c)), float(np.hypot(*d))) < MIN_STEP:
                continue
            found, coords = _hits(np.array([c, d]).T, shifts, lum.shape, np.array([a, b]).T)
            if found is not None:
                a, b, hits, whole = c, d, found, coords
                break
        else:
            break
    fitted, *_ = np.linalg.lstsq(whole[hits], shifts[hits], rcond=None)
    # A peak pulled off its lattice point (the photo's own detail close by, over a dark busy photo where the
    # mark's peaks are weak) would tilt the fit by a fraction of a pixel per step: refitted without those.
    close = hits & (np.hypot(*(whole @ fitted - shifts).T) <= OFF_PEAK)
    if close.sum() >= MIN_FIT:
        fitted, *_ = np.linalg.lstsq(whole[close], shifts[close], rcond=None)
    single = fitted / scale
    steps, staggered = _whole(single)
    motif = ((float(single[0, 0]), float(single[0, 1])), (float(single[1, 0]), float(single[1, 1])))
    return Lattice((float(steps[0, 0]), float(steps[0, 1])), (float(steps[1, 0]), float(steps[1, 1])),
                   float(heights[hits].mean()), motif if staggered else None)


def _hits(basis: npt.NDArray[np.float64], shifts: npt.NDArray[np.float64], shape: tuple[int, ...],
          coarse: npt.NDArray[np.float64] | None = None) -> tuple[npt.NDArray[np.bool_] | None,
                                                                  npt.NDArray[np.float64]]:
    """(which peaks lie on the lattice `basis` spans, within `MAX_ORDER` steps, or None when fewer than
    `MIN_HITS` of the lattice points expected to show one do — of those not on the `coarse` lattice, when
    given; the peaks' whole lattice coordinates)."""
    coords = np.linalg.solve(basis, shifts.T).T
    whole = np.round(coords)
    near = np.hypot(*(basis @ (coords - whole).T)) <= 2.0
    height, width = shape
    expected = 0
    for m in range(-MAX_ORDER, MAX_ORDER + 1):
        for n in range(-MAX_ORDER, MAX_ORDER + 1):
            x, y = basis @ (m, n)
            overlap = max(width - abs(x), 0) * max(height - abs(y), 0) / (width * height)
            if (y < 0 or (y == 0 and x > 0)) and overlap >= EXPECTED_OVERLAP and not _on(coarse, (x, y)):
                expected += 1
    hits = near & (np.abs(whole) <= MAX_ORDER).all(axis=1)
    new = hits & np.array([not _on(coarse, s) for s in shifts], bool)
    if expected < 2 or new.sum() < max(2, MIN_HITS * expected):
        return None, whole
    return hits, whole


def _on(basis: npt.NDArray[np.float64] | None, point: object) -> bool:
    """True when `point` lies (within 2 px) on the lattice `basis` spans; False without one."""
    if basis is None:
        return False
    coords = np.linalg.solve(basis, np.asarray(point, np.float64))
    return bool(np.hypot(*(basis @ (coords - np.round(coords)))) <= 2.0)


def _whole(steps: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], bool]:
    """(steps, staggered?): the steps (rows) snapped to whole pixels when they are that close, or a sub-lattice
    of index 2 that is (staggered): a layout whose rows are shifted by half of an odd step (105.5 of 211 px)
    repeats exactly only every two rows, and copies half a pixel apart would not stack sharply."""
    a, b = steps
    for k, pair in enumerate(((a, b), (a + b, a - b), (2 * a, b), (a, 2 * b))):
        candidate = np.array(pair)
        if np.abs(candidate - np.round(candidate)).max() <= SNAP:
            return np.round(candidate), k > 0
    return steps, False
