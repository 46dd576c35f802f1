"""The default inpainting continues structure: edges, periodic stripes, flat colour without a seam, strokes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from retouchd.inpaint import inpaint
from retouchd.inpaint.patch import PatchEngine
from retouchd.inpaint.periodic import PeriodParams, find_lattice
from retouchd.inpaint.thin import ThinFill, ThinParams, sparse_fill, thin_components
from retouchd.steps.base import StepContext
from retouchd.typing import Mask, RGBImage


@pytest.fixture
def ctx() -> StepContext:
    return StepContext(rule="test", source=Path("test.png"))


def noise(height: int, width: int, sigma: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sigma, (height, width, 1)).astype(np.float32)


def disc(height: int, width: int, cy: float, cx: float, radius: float) -> Mask:
    yy, xx = np.mgrid[:height, :width]
    return np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2)


def grey_hole(image: RGBImage, hole: Mask) -> RGBImage:
    out = image.copy()
    out[hole] = 128
    return out


def psnr(a: RGBImage, b: RGBImage, where: Mask) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64))[where] ** 2).mean())
    return 10 * float(np.log10(255**2 / max(mse, 1e-10)))


def test_tilted_edge_is_continued_to_the_far_side(ctx: StepContext) -> None:
    """A straight, tilted boundary between two textures leaves the hole where the line says, within 1.5 px."""
    h, w, slope, y0 = 120, 160, 0.3, 36.0
    yy, xx = np.mgrid[:h, :w]
    line = y0 + slope * xx
    value = np.where(yy < line, 60.0, 190.0)[..., None] + noise(h, w, 8, 1)
    truth = np.clip(np.repeat(value, 3, axis=2), 0, 255).astype(np.uint8)
    hole = disc(h, w, y0 + slope * 80, 80, 22)
    out = inpaint(grey_hole(truth, hole), hole, engine="patch", ctx=ctx)
    gray = cv2.GaussianBlur(out.mean(axis=2).astype(np.float32), (0, 0), 1.0)
    errors = []
    for x in range(62, 99):
        column = hole[:, x]
        rows = np.nonzero(column)[0]
        inside = gray[rows, x]
        crossing = rows[np.argmax(inside > 125)] if (inside > 125).any() else rows[-1]
        errors.append(abs(float(crossing) - float(line[0, x])))
    far_side = errors[-6:]
    assert float(np.median(errors)) <= 1.5
    assert max(far_side) <= 2.0


def test_periodic_stripes_continue_in_phase(ctx: StepContext) -> None:
    """Stripes with an 11 px period (not a divisor of the patch) come back in phase through a wide hole."""
    h, w, period = 112, 144, 11.0
    yy, xx = np.mgrid[:h, :w]
    phase = 2 * np.pi * (xx + 0.4 * yy) / period
    value = 128 + 70 * np.sign(np.sin(phase))[..., None] + noise(h, w, 4, 2)
    truth = np.clip(np.repeat(value, 3, axis=2), 0, 255).astype(np.uint8)
    hole = disc(h, w, 56, 72, 26)
    out = inpaint(grey_hole(truth, hole), hole, engine="patch", ctx=ctx)
    gray = out.mean(axis=2) - 128
    # The fill's phase at the stripes' frequency, against the truth's (0 when in phase).
    carrier = np.exp(-1j * phase[hole])
    fill_phase = np.angle(np.sum(gray[hole] * carrier))
    truth_phase = np.angle(np.sum((truth.mean(axis=2) - 128)[hole] * carrier))
    assert abs(np.angle(np.exp(1j * (fill_phase - truth_phase)))) < 0.3
    assert psnr(out, truth, hole) > 22


def test_flat_colour_hole_has_no_seam_and_keeps_the_noise(ctx: StepContext) -> None:
    """A sky-like gradient with sensor noise: the fill matches the shade around it and is as noisy."""
    h, w = 128, 192
    yy, xx = np.mgrid[:h, :w]
    sky = np.stack([90 + 0.35 * xx, 140 + 0.25 * xx, 215 - 0.1 * yy], axis=2) + noise(h, w, 2.5, 3)
    truth = np.clip(sky, 0, 255).astype(np.uint8)
    hole = disc(h, w, 64, 96, 30)
    out = inpaint(grey_hole(truth, hole), hole, engine="patch", ctx=ctx)
    # No seam: the mean colour of a ring just inside the hole matches a ring just outside it (per channel).
    hole8 = hole.astype(np.uint8)
    kernel = np.ones((7, 7), np.uint8)
    inner = hole & ~(cv2.erode(hole8, kernel) > 0)
    outer = (cv2.dilate(hole8, kernel) > 0) & ~hole
    step = np.abs(out[inner].astype(np.float64).mean(0) - out[outer].astype(np.float64).mean(0))
    assert float(step.max()) < 1.5
    # And the shade follows the gradient inside: the error against the truth is the noise, not a blob.
    assert psnr(out, truth, hole) > 34
    spread = float((out[hole].astype(np.float64) - cv2.GaussianBlur(out, (0, 0), 3)[hole]).std())
    truth_spread = float((truth[hole].astype(np.float64) - cv2.GaussianBlur(truth, (0, 0), 3)[hole]).std())
    assert 0.6 < spread / truth_spread < 1.6


def test_a_line_beside_a_sky_hole_adds_no_speckle(ctx: StepContext) -> None:
    """Two dark cables pass beside a hole in a noisy sky: the fill keeps the sky's grain. Without the cap on
    the ring's grain energy, the cables' edges counted as grain and the hole became a disc of speckle
    (5.3× the sky's fine spread, 24.7 dB)."""
    h, w = 128, 192
    yy, xx = np.mgrid[:h, :w]
    sky = np.stack([90 + 0.35 * xx, 140 + 0.25 * xx, 215 - 0.1 * yy], axis=2) + noise(h, w, 2.5, 3)
    for offset in (0, 6):
        sky = np.where((np.abs(xx - 0.5 * yy - 102 - offset) < 1.5)[..., None], 30.0, sky)
    truth = np.clip(sky, 0, 255).astype(np.uint8)
    hole = disc(h, w, 64, 96, 30)
    out = inpaint(grey_hole(truth, hole), hole, engine="patch", ctx=ctx)
    spread = float((out[hole].astype(np.float64) - cv2.GaussianBlur(out, (0, 0), 3)[hole]).std())
    truth_spread = float((truth[hole].astype(np.float64) - cv2.GaussianBlur(truth, (0, 0), 3)[hole]).std())
    assert 0.6 < spread / truth_spread < 1.6
    assert psnr(out, truth, hole) > 33


def test_thin_components_are_told_from_wide_ones() -> None:
    hole = np.zeros((80, 120), dtype=bool)
    hole[10:15, 5:110] = True  # a 5 px stroke
    hole |= disc(80, 120, 55, 60, 15)  # a blob
    thin = thin_components(hole, 4.0)
    assert thin[12, 50] and not thin[55, 60]
    assert not (thin & disc(80, 120, 55, 60, 15)).any()


def test_sparse_fill_beats_telea_across_a_textured_stroke() -> None:
    """Oblique stripes crossed by a 5 px scratch: the DCT fill restores them; Telea smears across."""
    h, w = 96, 128
    yy, xx = np.mgrid[:h, :w]
    value = 128 + 60 * np.sin(2 * np.pi * (xx + 0.5 * yy) / 9.0)[..., None] + noise(h, w, 3, 4)
    truth = np.clip(np.repeat(value, 3, axis=2), 0, 255).astype(np.uint8)
    hole = np.zeros((h, w), dtype=bool)
    hole[45:50, 8:120] = True
    given = grey_hole(truth, hole)
    sparse = psnr(sparse_fill(given, hole), truth, hole)
    telea = psnr(cv2.inpaint(given, hole.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA), truth, hole)
    assert sparse > telea + 2.5


def test_patch_engine_routes_strokes_to_the_thin_fill(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stroke given to the patch engine is filled by the thin fill; switched off, patch search fills it."""
    truth = np.clip(128 + noise(96, 128, 20, 5).repeat(3, axis=2), 0, 255).astype(np.uint8)
    hole = np.zeros((96, 128), dtype=bool)
    hole[45:50, 8:120] = True
    given = grey_hole(truth, hole)
    routed = inpaint(given, hole, engine="patch", ctx=ctx)
    assert np.array_equal(routed, ThinFill(ctx).fill(given, hole))
    monkeypatch.setattr(PatchEngine, "thin", None)
    assert not np.array_equal(inpaint(given, hole, engine="patch", ctx=ctx), routed)


@pytest.mark.parametrize(("slope", "radius"), [(-0.2, 40), (1.5, 34)])
def test_thin_line_is_drawn_across_a_wide_hole(ctx: StepContext, slope: float, radius: int) -> None:
    """A 3 px dark line over grain, cut by a hole much wider than a patch, comes out whole and in place.

    Patch search alone stops the line a few pixels inside the hole (a third of it comes back); the edge
    guides find it on both sides and make the search copy along it.
    """
    h, w = 160, 200
    yy, xx = np.mgrid[:h, :w]
    across = (yy - (80 - slope * 100 + slope * xx)) / np.sqrt(1 + slope**2)
    grain = cv2.GaussianBlur(np.random.default_rng(1).normal(0, 25, (h, w)).astype(np.float32), (0, 0), 1.2)
    value = 150 + grain - 90 * (np.abs(across) < 1.6)
    truth = np.clip(np.repeat(value[..., None], 3, axis=2), 0, 255).astype(np.uint8)
    hole = disc(h, w, 80, 100, radius)
    out = inpaint(grey_hole(truth, hole), hole, engine="patch", ctx=ctx)
    dark = hole & (out.mean(axis=2) < 100)
    on_line = hole & (np.abs(across) < 1.6)
    assert (dark & on_line).sum() >= 0.9 * on_line.sum()
    assert float(np.abs(across[dark]).mean()) < 1.5
    assert psnr(out, truth, hole) > 27


def gradient_energy(image: RGBImage) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.asarray(cv2.Sobel(gray, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(gray, cv2.CV_32F, 0, 1) ** 2)


def test_thin_fill_keeps_the_contrast_of_fine_texture() -> None:
    """Fine grain crossed by 3–5 px scratches: thresholding alone gives back half the gradient energy
    (a visibly smoother stroke); the luma detail restored after it brings it near the truth's."""
    h, w = 96, 128
    grain = cv2.GaussianBlur(np.random.default_rng(0).normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    truth = np.clip(128 + 30 * grain / grain.std(), 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    hole = np.zeros((h, w), dtype=bool)
    for k, y in enumerate((20, 45, 70)):
        hole[y : y + 3 + k, 8:120] = True
    given = grey_hole(truth, hole)
    truth_energy = float(gradient_energy(truth)[hole].mean())
    sharp, plain = sparse_fill(given, hole), sparse_fill(given, hole, ThinParams(sharpen=0.0))
    assert float(gradient_energy(plain)[hole].mean()) / truth_energy < 0.6
    assert 0.8 < float(gradient_energy(sharp)[hole].mean()) / truth_energy < 1.6
    telea = cv2.inpaint(given, hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    assert psnr(sharp, truth, hole) > max(psnr(plain, truth, hole) - 1.0, psnr(telea, truth, hole))


def _patchwork(sigma: float) -> tuple[RGBImage, Mask, RGBImage]:
    """A sky-like gradient with grain `sigma`, and a fill of its hole that is the truth in two wrong shades
    (±12 on either half): the collage patch search makes of a smooth background."""
    h, w = 128, 160
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([100 + 0.3 * xx + 0.2 * yy, 150 - 0.1 * xx, 200 - 0.2 * yy], axis=2)
    truth = np.clip(base + noise(h, w, sigma, 7), 0, 255).astype(np.uint8)
    hole = disc(h, w, 64, 80, 30)
    shade = np.where(xx < 80, 12.0, -12.0)[..., None] * hole[..., None]
    return truth, hole, np.clip(truth + shade, 0, 255).astype(np.uint8)


def test_smooth_surroundings_pull_a_patchwork_fill_smooth() -> None:
    """Around a flat sky, the fill's coarse shading moves toward the membrane fill (+2.7 dB here: the grain of
    the sky counts as a little activity, so about half of the wrong shades go), and its grain stays; around
    busy texture only a share of the broad shading moves (`busy_share`), and none of the fill's detail."""
    from retouchd.inpaint.smooth import SmoothParams, blend_smooth

    def run(truth: RGBImage, hole: Mask, fill: RGBImage, params: SmoothParams | None = None) -> RGBImage:
        t = torch.from_numpy(fill).permute(2, 0, 1).float()
        rgb, hole_t = torch.from_numpy(truth).permute(2, 0, 1).float(), torch.from_numpy(hole)
        out = blend_smooth(rgb, hole_t, t, params or SmoothParams())
        return out.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()

    truth, hole, fill = _patchwork(1.5)
    out = run(truth, hole, fill)
    assert psnr(out, truth, hole) > psnr(fill, truth, hole) + 2
    # The grain, away from the steps the wrong shades make (between them, at the edge), which stay in part.
    away = disc(128, 160, 64, 80, 24) & (np.abs(np.mgrid[:128, :160][1] - 80) > 8)
    grain = float((out.astype(np.float64) - cv2.GaussianBlur(out, (0, 0), 2))[away].std())
    truth_grain = float((truth.astype(np.float64) - cv2.GaussianBlur(truth, (0, 0), 2))[away].std())
    assert 0.8 < grain / truth_grain < 1.25
    busy, hole, fill = _patchwork(30.0)
    alone = run(busy, hole, fill, SmoothParams(busy_share=0.0))
    assert float(np.abs(alone.astype(np.float64) - fill)[hole].mean()) < 1.5


def test_busy_surroundings_pull_only_the_broad_shading_of_a_wrong_shade() -> None:
    """Around busy texture a fill in wrong shades (a light patch copied into a dark part) moves partway to the
    membrane's broad shading (+1.0 dB here), while its detail (what a 2 px blur removes) stays to 0.25 of 29."""
    from retouchd.inpaint.smooth import SmoothParams, blend_smooth

    busy, hole, fill = _patchwork(30.0)
    t = torch.from_numpy(fill).permute(2, 0, 1).float()
    out_t = blend_smooth(torch.from_numpy(busy).permute(2, 0, 1).float(), torch.from_numpy(hole), t, SmoothParams())
    out = out_t.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    assert psnr(out, busy, hole) > psnr(fill, busy, hole) + 0.7

    def detail(image: RGBImage) -> np.ndarray:
        return np.asarray(image.astype(np.float64) - cv2.GaussianBlur(image, (0, 0), 2))

    assert float(np.abs(detail(out) - detail(fill))[hole].mean()) < 0.5


def stripes(height: int, width: int, period: float, angle: float) -> tuple[RGBImage, np.ndarray]:
    """Square-wave stripes across direction `angle` (radians from x), with sensor noise; and their phase."""
    yy, xx = np.mgrid[:height, :width]
    phase = 2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period
    value = 128 + 60 * np.sign(np.sin(phase))[..., None] + noise(height, width, 4, 5)
    return np.clip(np.repeat(value, 3, axis=2), 0, 255).astype(np.uint8), phase


def facade(height: int, width: int, period_y: int, period_x: int) -> RGBImage:
    """Dark windows on a grid in a noisy light wall."""
    yy, xx = np.mgrid[:height, :width]
    window = ((yy % period_y) < 0.55 * period_y) & ((xx % period_x) < 0.6 * period_x)
    value = np.where(window[..., None], 60.0, 170.0) + noise(height, width, 8, 6)
    return np.clip(value * np.array([1.0, 0.95, 0.9]), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("period", "angle"), [(7.0, 0.0), (7.0, 0.5), (9.5, 1.2), (13.0, 2.0)])
def test_period_detector_measures_stripes(period: float, angle: float) -> None:
    """Stripes give one lattice vector, across them, as long as the period (within 0.3 px)."""
    image, _ = stripes(120, 160, period, angle)
    lattice = find_lattice(image, disc(120, 160, 60, 80, 28), PeriodParams())
    assert len(lattice) == 1
    vy, vx = lattice[0]
    assert abs(float(np.hypot(vy, vx)) - period) <= 0.3
    # Across the stripes: parallel to (sin, cos) of the angle, up to sign.
    assert abs(vy * np.cos(angle) - vx * np.sin(angle)) <= 0.3


def test_period_detector_measures_a_grid_and_ignores_random_texture() -> None:
    """A window grid gives its two periods; a texture that does not repeat, or a smooth gradient, gives none."""
    lattice = find_lattice(facade(200, 260, 31, 22), disc(200, 260, 100, 130, 60), PeriodParams())
    assert sorted((round(abs(vy)), round(abs(vx))) for vy, vx in lattice) == [(0, 22), (31, 0)]
    hole = disc(112, 112, 56, 56, 18)
    random = np.clip(np.repeat(128 + noise(112, 112, 30, 7), 3, axis=2), 0, 255).astype(np.uint8)
    assert find_lattice(cv2.GaussianBlur(random, (0, 0), 1.5), hole, PeriodParams()) == ()
    yy, xx = np.mgrid[:112, :112]
    gradient = np.repeat((40 + xx + 0.5 * yy)[..., None], 3, axis=2).astype(np.uint8)
    assert find_lattice(gradient, hole, PeriodParams()) == ()


def test_stripes_of_period_7_continue_in_phase(ctx: StepContext) -> None:
    """Tilted 7 px stripes through a wide hole: in every 12 px block of the fill the phase is off by ≤ 1 px."""
    period = 7.0
    truth, phase = stripes(120, 160, period, 0.5)
    hole = disc(120, 160, 60, 80, 28)
    out = inpaint(grey_hole(truth, hole), hole, engine="patch", ctx=ctx)
    fill, given = out.mean(axis=2) - 128, truth.mean(axis=2) - 128
    carrier = np.exp(-1j * phase)
    yy, xx = np.mgrid[:120, :160]
    errors = []
    for block in np.unique((yy // 12) * 100 + xx // 12):
        sel = hole & ((yy // 12) * 100 + xx // 12 == block)
        if sel.sum() >= 100:
            turn = np.angle(np.sum(fill[sel] * carrier[sel]) / np.sum(given[sel] * carrier[sel]))
            errors.append(abs(float(turn)) / (2 * np.pi) * period)
    assert len(errors) >= 12
    assert max(errors) <= 1.0


def test_a_window_grid_continues_through_a_large_hole(ctx: StepContext) -> None:
    """A façade grid with a hole two windows wide comes back in phase; without the period detector it does not."""
    truth = facade(200, 260, 40, 30)
    hole = disc(200, 260, 100, 130, 70)
    given = grey_hole(truth, hole)

    class NoPeriod(PatchEngine):
        period = None

    with_period = psnr(inpaint(given, hole, engine="patch", ctx=ctx), truth, hole)
    without = psnr(NoPeriod(ctx).fill(given, hole), truth, hole)
    assert with_period > 22
    assert with_period > without + 2
