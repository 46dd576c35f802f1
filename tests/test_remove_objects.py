"""The remove_objects step: options, masks from sidecars and regions, metrics (retouchd.steps.remove_objects)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from retouchd.exceptions import ConfigError, InputError
from retouchd.steps import build_step, step_class
from retouchd.steps.base import StepContext
from retouchd.steps.remove_objects import RemoveObjectsOptions, RemoveObjectsStep
from retouchd.typing import Frame

MAGENTA = np.array([255, 0, 255], dtype=np.uint8)


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random 8×8 tile repeated: a hole in it has an exact answer."""
    tile = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.tile(tile, (height // 8 + 1, width // 8 + 1, 1))[:height, :width])


def context(tmp_path: Path, sidecar: Path | None = None) -> StepContext:
    return StepContext(rule="catalog", source=tmp_path / "shot.jpg", sidecar_mask=sidecar)


def test_registered_and_removes_content() -> None:
    """The registry resolves the op; the step declares it removes content (so it runs before upscale)."""
    assert step_class("remove_objects") is RemoveObjectsStep
    step = build_step(RemoveObjectsOptions(mask="sidecar"))
    assert isinstance(step, RemoveObjectsStep)
    assert step.removes_content()


def test_options_parse_a_rule_table() -> None:
    """A TOML-shaped table validates: pixel and percent regions, dilate, engine default patch."""
    options = RemoveObjectsOptions.model_validate(
        {"op": "remove_objects", "mask": "sidecar", "regions": [[0, 0, "10%", 20], ["90%", "95%", "10%", "5%"]],
         "dilate": 3}
    )
    assert options.regions == [(0, 0, "10%", 20), ("90%", "95%", "10%", "5%")]
    assert options.engine == "patch"
    assert options.dilate == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"op": "remove_objects"}, "needs mask"),
        ({"op": "remove_objects", "mask": "auto"}, "sidecar"),
        ({"op": "remove_objects", "mask": "sidecar", "engine": "gimp"}, "unknown inpaint engine"),
        ({"op": "remove_objects", "regions": [[0, 0, "150%", 5]]}, "more than 100%"),
        ({"op": "remove_objects", "regions": [[0, 0, 5]]}, r"\[x, y, w, h\]"),
        ({"op": "remove_objects", "mask": "sidecar", "dilate": -1}, "greater than or equal"),
        ({"op": "remove_objects", "mask": "sidecar", "colour": "red"}, "Extra inputs"),
    ],
)
def test_options_reject(raw: dict[str, object], message: str) -> None:
    """Rules that cannot work are refused when the rule is loaded, with the reason."""
    with pytest.raises(ValidationError, match=message):
        RemoveObjectsOptions.model_validate(raw)


def test_sidecar_object_is_removed(tmp_path: Path) -> None:
    """A sidecar at half size marks the object; it is filled, the rest is untouched, metrics add up."""
    truth = texture(64, 96)
    given = truth.copy()
    given[20:36, 30:54] = MAGENTA
    small = np.zeros((32, 48), dtype=np.uint8)
    small[10:18, 15:27] = 255
    sidecar = tmp_path / "shot.mask.png"
    Image.fromarray(small).save(sidecar)
    step = RemoveObjectsStep(RemoveObjectsOptions(mask="sidecar"))
    result = step.run(Frame(given), context(tmp_path, sidecar))
    hole = np.zeros((64, 96), dtype=bool)
    hole[20:36, 30:54] = True
    assert np.array_equal(result.frame.rgb[~hole], truth[~hole])
    assert float(np.abs(result.frame.rgb[hole].astype(int) - truth[hole]).mean()) < 2
    assert result.metrics["mask_fraction"] == pytest.approx(16 * 24 / (64 * 96))
    assert result.metrics["mask_components"] == 1
    assert result.metrics["engine"] == "patch"
    assert isinstance(result.metrics["inpaint_seconds"], float)


def test_missing_sidecar_is_permanent(tmp_path: Path) -> None:
    """A rule that needs a sidecar fails the image permanently, saying which file to add."""
    step = RemoveObjectsStep(RemoveObjectsOptions(mask="sidecar"))
    with pytest.raises(InputError, match=r"shot\.mask\.png") as info:
        step.run(Frame(texture(16, 16)), context(tmp_path))
    assert info.value.permanent
    assert info.value.step == "remove_objects"


def test_all_black_sidecar_is_identity(tmp_path: Path) -> None:
    """An all-black sidecar means nothing to do: the frame comes back unchanged."""
    sidecar = tmp_path / "shot_mask.png"
    Image.new("L", (10, 10), 0).save(sidecar)
    frame = Frame(texture(40, 40))
    result = RemoveObjectsStep(RemoveObjectsOptions(mask="sidecar")).run(frame, context(tmp_path, sidecar))
    assert result.frame.rgb is frame.rgb
    assert result.metrics["mask_fraction"] == 0.0
    assert result.metrics["mask_components"] == 0


def test_regions_with_dilate_and_alpha(tmp_path: Path) -> None:
    """Percent regions plus dilation give the expected area; alpha passes through untouched."""
    alpha = np.full((80, 100), 200, dtype=np.uint8)
    frame = Frame(texture(80, 100), alpha)
    options = RemoveObjectsOptions(regions=[("10%", "10%", "10%", "10%")], dilate=2, engine="telea")
    result = RemoveObjectsStep(options).run(frame, context(tmp_path))
    # A 10×8 box grown by a 2 px disc: the box, 2 px bands on each side, one pixel per rounded corner.
    assert result.metrics["mask_fraction"] == pytest.approx((10 * 8 + 2 * 2 * (10 + 8) + 4) / 8000)
    assert result.frame.alpha is alpha
    assert result.metrics["engine"] == "telea"


def test_sidecar_and_regions_combine(tmp_path: Path) -> None:
    """Sidecar and regions add up into one mask with two parts."""
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[2:6, 2:6] = 255
    sidecar = tmp_path / "shot.mask.png"
    Image.fromarray(mask).save(sidecar)
    options = RemoveObjectsOptions(mask="sidecar", regions=[(30, 30, 5, 5)], engine="telea")
    result = RemoveObjectsStep(options).run(Frame(texture(40, 40)), context(tmp_path, sidecar))
    assert result.metrics["mask_components"] == 2
    assert result.metrics["mask_fraction"] == pytest.approx((16 + 25) / 1600)


def test_preflight_checks_the_engine(tmp_path: Path) -> None:
    """A lama rule without a configured file stops start-up; patch needs nothing."""
    RemoveObjectsStep(RemoveObjectsOptions(mask="sidecar")).preflight({})
    with pytest.raises(ConfigError, match="lama"):
        RemoveObjectsStep(RemoveObjectsOptions(mask="sidecar", engine="lama")).preflight({})
