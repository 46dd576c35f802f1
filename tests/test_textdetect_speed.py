"""The faster text-detection pieces give the same values, bit for bit, as the code they replaced (kept here as
the reference): the masks must not change."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from retouchd.textdetect import channels, lattice, regions, shadow, strokes

from tests_support import overlays, periodic


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b) and \
        np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_sums_and_means_are_numpys(dtype: type) -> None:
    rng = np.random.default_rng(3)
    for shape in [(4, 60, 90, 3), (61, 91, 3), (1, 1, 3), (17, 3)]:
        x = (rng.standard_normal(shape) * 100).astype(dtype)
        flat = x.reshape(-1, 3)
        flat[: min(40, len(flat))] = rng.choice([0.0, -0.0], (min(40, len(flat)), 3))  # signed zeros
        for view in (x, x[::2]):
            assert _same(channels.total(view), view.sum(axis=-1))
            assert _same(channels.mean(view), view.mean(axis=-1))


def test_channel_means_of_bytes_and_maxima_are_numpys() -> None:
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (61, 77, 3)).astype(np.uint8)
    assert _same(channels.mean32(rgb), rgb.astype(np.float32).mean(axis=2))
    signed = rng.integers(-300, 300, (61, 77, 3)).astype(np.int16)
    assert _same(channels.largest(signed), signed.max(axis=2))


def _old_autocorrelation(signal: np.ndarray) -> np.ndarray:
    h, w = signal.shape
    rows, cols = cv2.getOptimalDFTSize(2 * h), cv2.getOptimalDFTSize(2 * w)
    padded = np.zeros((rows, cols), np.float32)
    padded[:h, :w] = signal - signal.mean()
    spectrum = cv2.dft(padded, flags=cv2.DFT_COMPLEX_OUTPUT)
    power = cv2.mulSpectrums(spectrum, spectrum, 0, conjB=True)
    corr = np.fft.fftshift(cv2.idft(power, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE))
    dx = np.maximum(w - np.abs(np.arange(cols, dtype=np.float32) - cols // 2), 0)
    dy = np.maximum(h - np.abs(np.arange(rows, dtype=np.float32) - rows // 2), 0)
    count = dy[:, None] * dx[None, :]
    norm = np.where(count > 0.25 * h * w, corr / np.maximum(count, 1.0), 0.0)
    return np.asarray(norm / max(float(norm[rows // 2, cols // 2]), 1e-6), np.float32)


def _old_sigma(corr: np.ndarray) -> float:
    values = corr[corr != 0]
    return 1.4826 * float(np.median(np.abs(values - np.median(values)))) + 1e-6


def _old_peaks(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ring_in, ring_out = lattice.RING
    rows, cols = corr.shape
    sigma = _old_sigma(corr)
    cy, cx = rows // 2, cols // 2
    ring = np.zeros((2 * ring_out + 1,) * 2, np.uint8)
    cv2.circle(ring, (ring_out, ring_out), ring_out, 1, -1)
    cv2.circle(ring, (ring_out, ring_out), ring_in - 1, 0, -1)
    around = cv2.dilate(corr, ring)
    local = cv2.dilate(corr, np.ones((2 * ring_in - 1,) * 2, np.uint8))
    keep = (corr == local) & (corr - around >= lattice.PROMINENCE * sigma) & (corr >= lattice.MIN_PEAK * sigma)
    keep[cy + 1 :] = False
    keep[cy, : cx + 1] = False
    step = lattice.MIN_STEP
    keep[max(cy - step, 0) : cy + 1, max(cx - step, 0) : cx + step + 1] &= (
        np.hypot(*np.mgrid[-min(step, cy) : 1, -min(step, cx) : min(step, cols - cx - 1) + 1]) >= step)
    ys, xs = np.nonzero(keep)
    shifts = np.column_stack([xs - cx, ys - cy]).astype(np.float64)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if 0 < x < cols - 1 and 0 < y < rows - 1:
            shifts[i] += [lattice._vertex(corr[y, x - 1 : x + 2]), lattice._vertex(corr[y - 1 : y + 2, x])]
    return shifts, corr[ys, xs]


def _lattice_fixtures() -> list[np.ndarray]:
    rng = np.random.default_rng(14)
    photo = overlays.photo("astronaut", 256, 192)
    return [photo, overlays.tiled_watermark(photo, rng)[0], periodic.periodic_scene(photo, rng),
            overlays.tiled_watermark(overlays.photo("coffee", 210, 175), rng)[0]]  # odd DFT sizes


def test_autocorrelation_and_peaks_are_the_old_ones() -> None:
    found = 0
    for rgb in _lattice_fixtures():
        signal = lattice.whitened(lattice.detail(channels.mean32(rgb)))
        corr = lattice.autocorrelation(signal)
        assert _same(corr, _old_autocorrelation(signal))
        assert lattice._sigma(corr) == _old_sigma(corr)
        new, old = lattice._peaks(corr), _old_peaks(corr)
        assert _same(new[0], old[0]) and _same(new[1], old[1])
        found += len(new[0])
    assert found > 0  # the fixtures have peaks to compare


def _old_step_rows(lum: np.ndarray, rows: range, xs: slice, sign: float) -> tuple[int, float] | None:
    best: tuple[int, float] | None = None
    for y in rows:
        if y < 1 or y >= lum.shape[0]:
            continue
        diff = lum[y, xs] - lum[y - 1, xs]
        median = float(np.median(diff))
        if median * sign < regions.BAND_STEP:
            continue
        consistent = float((diff * sign > 0.5 * abs(median)).mean())
        if consistent >= regions.BAND_CONSISTENT and (best is None or abs(median) > abs(best[1])):
            best = (y, median)
    return best


def test_band_edge_rows_are_the_old_ones() -> None:
    rng = np.random.default_rng(5)
    photo = overlays.photo("astronaut", 320, 200)
    banded, _ = overlays.band(photo, rng)
    found = 0
    for image in (photo, banded):
        lum = channels.mean32(image)
        for start, stop, x0, x1, sign in itertools.product((-5, 40, 150), (60, 210), (0, 33), (40, 200, 320),
                                                           (-1.0, 1.0)):
            old = _old_step_rows(lum, range(start, stop), slice(x0, x1), sign)
            assert regions._step_rows(lum, range(start, stop), slice(x0, x1), sign) == old
            found += old is not None
    assert found > 0


def _old_neighbourhood_counts(bins: np.ndarray) -> np.ndarray:
    side = strokes._SIDE
    grid = np.bincount(bins, minlength=side**3).astype(np.float32).reshape(side, side, side)
    for axis in range(3):
        padded = np.pad(grid, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        grid = padded.take(range(side), axis) + padded.take(range(1, side + 1), axis)
        grid += padded.take(range(2, side + 2), axis)
    return grid.reshape(-1)


def test_colour_neighbourhoods_are_the_old_ones() -> None:
    rng = np.random.default_rng(6)
    bins = strokes._colour_bins(rng.integers(0, 256, (50, 70, 3)).astype(np.uint8)).reshape(-1)
    assert _same(strokes._neighbourhood_counts(bins), _old_neighbourhood_counts(bins))
    corners = [0, strokes._SIDE**3 - 1, strokes._SIDE - 1, strokes._SIDE**2 * 5 + strokes._SIDE * 31 + 7]
    for peak in [*corners, *rng.integers(0, strokes._SIDE**3, 20)]:
        assert np.array_equal(strokes._near_bin(int(peak)), _old_neighbourhood_counts(np.array([peak])) > 0)


@pytest.mark.parametrize("margin", [0, 12, 60])
def test_moved_blurred_letters_are_blurred_moved_letters(margin: int) -> None:
    """Blurred once and moved, or blurred per move near the window's sides: the old values either way."""
    rng = np.random.default_rng(margin)
    layer = np.zeros((180, 260), np.float32)
    layer[margin : 180 - margin, margin : 260 - margin] = rng.random((180 - 2 * margin, 260 - 2 * margin)) > 0.7
    moved = shadow._Moved(layer)
    for dx, dy, sigma in itertools.product((-6, -1, 0, 2, 5), (-4, 0, 3), (0.8, 1.0, 1.7, 3.2)):
        direct = cv2.GaussianBlur(shadow._shifted(layer, dx, dy), (0, 0), sigma)
        assert _same(moved(dx, dy, sigma), direct)
    assert bool(moved.blurred) == (margin == 60)  # the fast way only where no border reaches the letters
