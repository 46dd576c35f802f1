"""The second opinion on the fill's shading (retouchd.inpaint.ensemble)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from retouchd.inpaint import inpaint
from retouchd.inpaint.base import downscale
from retouchd.inpaint.ensemble import EnsembleParams, blend_shading
from retouchd.inpaint.patch import PatchEngine
from retouchd.steps.base import StepContext
from retouchd.typing import Mask, RGBImage


@pytest.fixture
def ctx() -> StepContext:
    return StepContext(rule="test", source=Path("test.png"))


def texture(height: int, width: int, seed: int, shading: float) -> RGBImage:
    """Fine blurred noise on top of a slow random shading of amplitude about `shading` (leaves, grass)."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1.2)
    slow = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 20)
    value = 120 + 40 * fine / fine.std() + shading * slow / slow.std()
    return np.clip(np.repeat(value[..., None], 3, axis=2) * np.array([0.8, 1.0, 0.6]), 0, 255).astype(np.uint8)


def disc(height: int, width: int, cy: int, cx: int, radius: int) -> Mask:
    yy, xx = np.mgrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def tensor(image: RGBImage) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float()


def detail(image: np.ndarray) -> np.ndarray:
    return np.asarray(image - cv2.GaussianBlur(image, (0, 0), 1.5))


def mse(image: RGBImage, truth: RGBImage, hole: Mask) -> float:
    return float(((image.astype(np.float64) - truth)[hole] ** 2).mean())


def test_blend_averages_the_shading_of_two_fills_and_keeps_the_first_ones_detail() -> None:
    """A fill 24 levels too bright and a half-size one 24 too dark: the hole's core comes out right on
    average, with the bright fill's detail; outside the hole nothing changes."""
    truth = texture(96, 96, seed=1, shading=0.0)
    hole = disc(96, 96, 48, 48, 24)
    offset = np.where(hole[..., None], 24.0, 0.0)
    bright = np.clip(truth + offset, 0, 255).astype(np.uint8)
    dark, small_hole = downscale(np.clip(truth - offset, 0, 255).astype(np.uint8), hole, 0.5)
    small = torch.from_numpy(small_hole)
    out = blend_shading(torch.from_numpy(hole), tensor(bright), tensor(dark), small, EnsembleParams())
    out_np = out.permute(1, 2, 0).numpy()
    core = disc(96, 96, 48, 48, 14)
    error = (out_np - truth)[..., 1]
    assert abs(float(error[core].mean())) < 2.5
    assert float(error[hole].mean()) < 8  # the average falls off toward the known ring, where it is 0
    kept = detail(out_np[..., 1]) - detail(bright[..., 1].astype(np.float32))
    assert float(np.abs(kept[core]).mean()) < 1.0
    assert np.array_equal(out_np[~hole], bright[~hole].astype(np.float32))


def test_second_opinion_improves_the_shading_of_busy_texture(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """On texture with a slow shading that patch search can only guess, averaging the shading of a second,
    independent fill lowers the hole's error summed over five seeds (by 2 %: either guess is often as good),
    changes the fill only above the blend's scale, and keeps the texture."""
    errors = []
    for seed in range(5):
        truth = texture(128, 128, seed=seed, shading=40.0)
        hole = disc(128, 128, 64, 64, 26)
        given = truth.copy()
        given[hole] = 128
        with_second = inpaint(given, hole, engine="patch", ctx=ctx)
        monkeypatch.setattr(PatchEngine, "ensemble", None)
        alone = inpaint(given, hole, engine="patch", ctx=ctx)
        monkeypatch.undo()
        errors.append((mse(with_second, truth, hole), mse(alone, truth, hole)))
        change = with_second.astype(np.float32) - alone
        low = cv2.GaussianBlur(change, (0, 0), 2.0)
        assert float(np.abs(change - low)[hole].mean()) < 0.5 * float(np.abs(change)[hole].mean())
        energy = float(np.abs(detail(with_second.astype(np.float32))).mean())
        assert energy > 0.8 * float(np.abs(detail(alone.astype(np.float32))).mean())
    assert sum(e for e, _ in errors) < 0.99 * sum(e for _, e in errors)
