"""The remove_text step: options, routing by overlay score, removal quality, metrics (retouchd.steps.remove_text)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from retouchd.exceptions import ConfigError, ModelError
from retouchd.steps import build_step, step_class
from retouchd.steps.base import StepContext
from retouchd.steps.remove_text import RemoveTextOptions, RemoveTextStep
from retouchd.typing import Frame

from tests_support import overlays


class CountingCache:
    """A model cache that counts loads, shared by the tests of this module so the detector loads once."""

    def __init__(self) -> None:
        self.items: dict[str, object] = {}
        self.loads = 0

    def get(self, key: str, load: Callable[[], object]) -> object:
        if key not in self.items:
            self.loads += 1
            self.items[key] = load()
        return self.items[key]


CACHE = CountingCache()


def context() -> StepContext:
    return StepContext(rule="catalog", source=Path("shot.jpg"), cpu_threads=2, models=CACHE)


def run(image: np.ndarray, **options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    options.setdefault("engine", "telea")
    result = RemoveTextStep(RemoveTextOptions(**options)).run(Frame(image), context())
    return result.frame.rgb, dict(result.metrics)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def restored(out: np.ndarray, clean: np.ndarray, overlaid: np.ndarray) -> float:
    """Share of the overlay's pixels brought back within 30/255 of the clean photo."""
    visible = overlays.overlay_pixels(overlaid, clean)
    error = np.abs(out.astype(np.int16) - clean.astype(np.int16)).mean(axis=2)
    return float((error[visible] < overlays.VISIBLE).mean())


def test_registered_and_removes_content() -> None:
    """The registry resolves the op, and the step declares it removes content (so it runs before upscale)."""
    assert step_class("remove_text") is RemoveTextStep
    step = build_step(RemoveTextOptions())
    assert isinstance(step, RemoveTextStep)
    assert step.removes_content()


def test_options_defaults_and_a_rule_table() -> None:
    """Defaults follow the spec; a TOML-shaped table with percent regions validates."""
    defaults = RemoveTextOptions()
    assert (defaults.when, defaults.threshold, defaults.min_score, defaults.engine) == ("always", 0.6, 0.5, "patch")
    assert defaults.review_below is None and defaults.regions is None and defaults.dilate == 0
    table = {"op": "remove_text", "when": "auto", "threshold": 0.7, "review_below": 0.4, "dilate": 2,
             "regions": [[0, "85%", "100%", "15%"]], "engine": "telea"}
    options = RemoveTextOptions.model_validate(table)
    assert options.regions == [(0, "85%", "100%", "15%")]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"when": "sometimes"}, "when"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": 0.5, "review_below": 0.5}, "review_below"),
        ({"engine": "magic"}, "unknown inpaint engine"),
        ({"regions": [[0, 0, 10]]}, r"\[x, y, w, h\]"),
        ({"regions": [[0, "120%", 10, 10]]}, "more than 100%"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_options_are_rejected(table: dict[str, object], message: str) -> None:
    """Invalid option values fail validation with a message naming the problem."""
    with pytest.raises(ValidationError, match=message):
        RemoveTextOptions.model_validate({"op": "remove_text", **table})


def test_importing_the_step_loads_no_heavy_module() -> None:
    """Rules can be checked without onnxruntime, OpenCV or torch being imported."""
    code = (
        "import sys; from retouchd.steps.remove_text import RemoveTextOptions; RemoveTextOptions(when='auto'); "
        "print(sorted(m for m in ('onnxruntime', 'cv2', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auto_leaves_a_clean_photo_untouched() -> None:
    """A photo without text passes through pixel-identical, with its (low) score recorded."""
    clean = overlays.photo("chelsea")
    out, metrics = run(clean, when="auto")
    assert np.array_equal(out, clean)
    assert metrics["treated"] is False and metrics["review"] is False
    assert isinstance(metrics["overlay_score"], float) and metrics["overlay_score"] < 0.3
    assert metrics["boxes"] == 0 and metrics["text_area"] == 0.0


def test_auto_treats_a_captioned_photo() -> None:
    """A captioned photo is treated: the caption's pixels come back and the rest of the photo is untouched."""
    clean = overlays.photo("astronaut")
    image = overlays.caption(clean)
    out, metrics = run(image, when="auto")
    assert metrics["treated"] is True and metrics["overlay_score"] >= 0.8
    assert metrics["boxes"] >= 1 and 0.02 < metrics["text_area"] < 0.1
    assert psnr(out, clean) >= psnr(image, clean) + 8
    assert restored(out, clean, image) >= 0.75
    assert np.array_equal(out[120:], image[120:])


def test_always_removes_a_date_stamp() -> None:
    """With when = "always" a date stamp is filled in: the photo ends above 45 dB, the input was below."""
    clean = overlays.photo("camera")
    image = overlays.date_stamp(clean)
    out, metrics = run(image, when="always")
    assert metrics["treated"] is True
    assert psnr(out, clean) > 45 > psnr(image, clean)
    assert restored(out, clean, image) >= 0.9


def test_always_leaves_petals_alone() -> None:
    """Even with when = "always", petals that only the raw detector takes for text are not touched."""
    meadow = overlays.daisies(seed=1)
    out, metrics = run(meadow, when="always")
    assert np.array_equal(out, meadow)
    assert metrics["treated"] is False and metrics["overlay_score"] < 0.3


def test_review_between_review_below_and_threshold() -> None:
    """A score under the threshold but over review_below flags the result for review and is not treated."""
    clean = overlays.photo("coffee")
    image = overlays.caption(clean)
    out, metrics = run(image, when="auto", threshold=0.99, review_below=0.5)
    assert 0.5 <= metrics["overlay_score"] < 0.99
    assert metrics["review"] is True and metrics["treated"] is False
    assert np.array_equal(out, image)
    _, metrics = run(image, when="auto", threshold=0.6, review_below=0.5)
    assert metrics["review"] is False and metrics["treated"] is True


def test_regions_protect_the_rest_of_the_image() -> None:
    """With the bottom 20 % as the only region, the date there is removed and the caption on top is kept."""
    clean = overlays.photo("camera")
    image = overlays.date_stamp(overlays.caption(clean, y=12))
    out, metrics = run(image, regions=[[0, "80%", "100%", "20%"]])
    assert metrics["treated"] is True
    assert np.array_equal(out[:128], image[:128])
    bottom = slice(int(0.8 * clean.shape[0]), None)
    assert psnr(out[bottom], clean[bottom]) > psnr(image[bottom], clean[bottom]) + 10


def test_alpha_is_carried_and_the_detector_is_cached() -> None:
    """The alpha channel passes through unchanged, and the detector session is loaded once per worker."""
    clean = overlays.photo("rocket")
    alpha = np.full(clean.shape[:2], 200, np.uint8)
    step = RemoveTextStep(RemoveTextOptions(engine="telea"))
    ctx = context()
    first = step.run(Frame(overlays.watermark(clean), alpha), ctx)
    second = step.run(Frame(clean, alpha), ctx)
    assert first.frame.alpha is alpha and second.frame.alpha is alpha
    assert first.metrics["treated"] is True
    assert CACHE.loads == 1


def test_default_patch_engine_end_to_end() -> None:
    """The default engine fills a caption well enough to gain over 6 dB on the whole photo."""
    clean = overlays.photo("coffee")
    image = overlays.caption(clean)
    result = RemoveTextStep(RemoveTextOptions(when="auto")).run(Frame(image), context())
    assert result.metrics["engine"] == "patch" and result.metrics["treated"] is True
    assert psnr(result.frame.rgb, clean) >= psnr(image, clean) + 6


def test_preflight_reports_a_missing_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the detector wheel start-up stops with a ConfigError that says what to install."""
    from retouchd.textdetect import runtime

    def missing() -> Path:
        raise ModelError("the text detector package 'rapidocr_onnxruntime' is not installed; install it")

    monkeypatch.setattr(runtime, "model_dir", missing)
    with pytest.raises(ConfigError, match="rapidocr_onnxruntime"):
        RemoveTextStep(RemoveTextOptions()).preflight({})


def test_preflight_checks_the_inpaint_engine() -> None:
    """A weights engine without a configured file is refused at start-up, with the engine named."""
    RemoveTextStep(RemoveTextOptions()).preflight({})
    with pytest.raises(ConfigError, match="lama"):
        RemoveTextStep(RemoveTextOptions(engine="lama")).preflight({})


def styled(style: str, name: str = "coffee", seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(clean, overlaid) for one of the issue-14 overlay styles on a bundled photo."""
    missing = overlays.missing_fonts()
    assert not missing, f"fonts missing (.ci/run installs fonts-noto-core fonts-noto-cjk fonts-liberation): {missing}"
    clean = overlays.photo(name)
    return clean, overlays.MAKERS[style](clean, np.random.default_rng(seed))[0]


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_price_tag_box_is_removed_whole(name: str) -> None:
    """A price in a coloured rounded box: the box goes too, not only the letters (restored ≥ 0.9)."""
    clean, image = styled("price", name)
    out, metrics = run(image, when="auto")
    assert metrics["treated"] is True
    assert restored(out, clean, image) >= 0.9
    assert psnr(out, clean) >= psnr(image, clean) + 8


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_translucent_band_is_unblended(name: str) -> None:
    """A caption on a dark translucent band: the band is un-blended (the photo beneath comes back close to
    exact, which a fill could not do) and the caption's letters are filled."""
    clean, image = styled("band", name)
    out, metrics = run(image, when="auto")
    assert metrics["treated"] is True and metrics["bands"] == 1
    assert restored(out, clean, image) >= 0.9
    assert psnr(out, clean) >= 33


@pytest.mark.parametrize(("name", "seed"), [("coffee", 1), ("coffee", 3), ("chelsea", 3), ("astronaut", 4)])
def test_natural_scene_text_is_left_alone_under_auto(name: str, seed: int) -> None:
    """A sign photographed in perspective (lit, blurred and noisy like the photo) is scene text: "auto"
    leaves the photo pixel-identical. Seeds 3/3/4 are signs turned only slightly, read level: their letters'
    grain (`textdetect.grain`) is what gives them away."""
    assert not overlays.missing_fonts()
    scene = overlays.scene_sign(overlays.photo(name, 768, 512), np.random.default_rng(seed))
    out, metrics = run(scene, when="auto")
    assert metrics["treated"] is False
    assert np.array_equal(out, scene)


@pytest.mark.parametrize(("name", "seed"), [("coffee", 2), ("chelsea", 4)])
def test_tiled_watermark_is_treated_everywhere(name: str, seed: int) -> None:
    """A diagonal watermark tiled over the photo: its repeats make it an overlay despite the tilt, and it is
    un-blended at every copy (the detected ones and those on their lattice), not filled: the photo beneath
    comes back and nothing away from the watermark changes. (Filling the copies, as before, restored 0.44 /
    0.69 of the overlay pixels and gained 1.9 / 4.3 dB.) It is found by its repeats before any reading, so
    no line is left to fill once it is un-blended."""
    assert not overlays.missing_fonts()
    clean = overlays.photo(name)
    image, footprint = overlays.tiled_watermark(clean, np.random.default_rng(seed))
    out, metrics = run(image, when="auto")
    assert metrics["treated"] is True and metrics["boxes"] == 0 and metrics["tiles"] >= 10
    assert restored(out, clean, image) >= 0.7
    assert psnr(out, clean) >= psnr(image, clean) + 5
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    changed = np.abs(out.astype(int) - image).max(axis=2) > 10
    assert (changed & ~near).mean() <= 0.001


def test_screenshot_text_is_filled_with_its_page() -> None:
    """A shop page: white title on a dark bar, grey body lines, a button label. Every line is removed down to
    its anti-aliased rims (no ghosts, no fragments): the page comes back within 20 levels everywhere."""
    assert not overlays.missing_fonts()
    clean, image, _ = overlays.screenshot(np.random.default_rng(0))
    out, metrics = run(image, when="auto")
    assert metrics["treated"] is True and metrics["boxes"] >= 6
    assert restored(out, clean, image) >= 0.99
    assert np.abs(out.astype(int) - clean).max() <= 20


CORNER_SHAPE = (512, 768)


def _warm_corner(seed: int, left: int, top: int) -> np.ndarray:
    """A dark photo with a smooth warm patch in the bottom right corner from (`left`, `top`), its top sloping up
    to the right, cut by the image's bottom and right sides."""
    rng = np.random.default_rng(seed)
    h, w = CORNER_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dark = np.stack([40 + 10 * xx / w, 48 + 10 * yy / h, np.full_like(xx, 36)], axis=-1)
    patch = cv2.GaussianBlur(((xx >= left) & (yy >= top - 0.12 * (xx - left))).astype(np.float32), (0, 0), 2)
    image = dark * (1 - patch[..., None]) + np.array([92, 80, 66], np.float32) * patch[..., None]
    image += cv2.GaussianBlur(rng.normal(0, 1.0, (h, w, 3)).astype(np.float32), (0, 0), 1)
    return np.asarray(np.clip(image, 0, 255), np.uint8)


@pytest.mark.parametrize("seed", [0, 2])
def test_a_date_stamp_on_a_patch_the_corner_cuts_is_removed(seed: int) -> None:
    """A date stamp on a smooth patch of photo that the image's corner cuts: the patch's flat colour, its top
    sloping and its height cut by the image's bottom, passed for a plate seen in perspective, and the stamp for
    scene text (score 0.30, untouched). Cut by the image, the patch shows not its own height: no perspective is
    judged, and the stamp is treated and filled."""
    assert not overlays.missing_fonts()
    _, footprint = overlays.date_style(np.zeros((*CORNER_SHAPE, 3), np.uint8),
                                       np.random.default_rng(seed))
    ys, xs = np.nonzero(footprint)
    clean = _warm_corner(seed, int(xs.min()) - 12, int(ys.min()) - 8)
    image, _ = overlays.date_style(clean, np.random.default_rng(seed))
    out, metrics = run(image, when="auto", threshold=0.6)
    assert metrics["treated"] is True and metrics["overlay_score"] >= 0.9
    assert restored(out, clean, image) >= 0.95
    assert np.array_equal(out[: int(ys.min()) - 30], image[: int(ys.min()) - 30])
