"""One large translucent word across a photo ("SAMPLE", "PREVIEW"; issue 14): found by its blend, un-blended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from retouchd.steps.base import StepContext
from retouchd.steps.remove_text import RemoveTextOptions, RemoveTextStep
from retouchd.textdetect import bigmark, load_models
from retouchd.typing import Frame

from tests_support import overlays

MODELS = load_models("cpu", 2)


def marked(name: str, text: str, colour: int, alpha: int, size: int = 110) -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray]:
    """(clean, overlaid, the mark's alpha 0–1): `text` in Noto Sans Bold `size` px, grey level `colour` at
    `alpha`/255, across the middle of a bundled photo at 640×400."""
    missing = overlays.missing_fonts()
    assert not missing, f"fonts missing (.ci/run installs fonts-noto-core fonts-liberation): {missing}"
    clean = overlays.photo(name, 640, 400)
    layer = Image.new("RGBA", (640, 400), (0, 0, 0, 0))
    glyphs = overlays.face(overlays.NOTO / "NotoSans-Bold.ttf", size)
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=glyphs)
    draw.text(((640 - (right - left)) // 2 - left, (400 - (bottom - top)) // 2 - top), text, font=glyphs,
              fill=(colour, colour, colour, alpha))
    out = Image.alpha_composite(Image.fromarray(clean).convert("RGBA"), layer).convert("RGB")
    return clean, np.asarray(out), np.asarray(layer)[..., 3] / 255.0


def run(image: np.ndarray, **options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    options.setdefault("engine", "telea")
    ctx = StepContext(rule="catalog", source=Path("shot.jpg"), cpu_threads=2)
    result = RemoveTextStep(RemoveTextOptions(**options)).run(Frame(image), ctx)
    return result.frame.rgb, dict(result.metrics)


CASES = [("rocket", "SAMPLE", 255, 90), ("rocket", "PREVIEW", 0, 80)]
"""White at 90/255 and black at 80/255 over the launch pad's steel, cloud and trees."""


@pytest.mark.parametrize(("name", "text", "colour", "alpha"), CASES)
def test_the_blend_is_measured(name: str, text: str, colour: int, alpha: int) -> None:
    """The word's opacity and colour come out of its edges: α within 0.05, the colour within 30 levels, and the
    opacity map covers the letters (≥ 90 % of the fully covered pixels) and little else (≤ 8 % as many)."""
    _, image, truth = marked(name, text, colour, alpha)
    found = bigmark.find(MODELS, image)
    assert found is not None
    assert found.alpha.max() == pytest.approx(alpha / 255, abs=0.05)
    assert found.colour[0] == pytest.approx(colour, abs=30)
    taken = found.alpha > 0.5 * found.alpha.max()
    assert float(taken[truth >= truth.max()].mean()) >= 0.9
    assert float((taken & (truth == 0)).sum()) <= 0.08 * float((truth >= truth.max()).sum())


@pytest.mark.parametrize("when", ["auto", "always"])
@pytest.mark.parametrize(("name", "text", "colour", "alpha"), CASES)
def test_the_word_is_unblended_not_painted(name: str, text: str, colour: int, alpha: int, when: str) -> None:
    """Under the letters the photo comes back within a few levels (its texture, which no fill could invent):
    median error ≤ 3 levels, 90th percentile ≤ 12, on the pixels the word covers fully (painted over before:
    90th percentile 39–40)."""
    clean, image, truth = marked(name, text, colour, alpha)
    out, metrics = run(image, when=when)
    assert metrics["treated"] is True and metrics["tiles"] == 1
    under = truth >= truth.max()
    error = np.abs(out.astype(np.int16) - clean.astype(np.int16)).max(axis=2)[under]
    assert float(np.median(error)) <= 3
    assert float(np.percentile(error, 90)) <= 12


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut", "rocket", "cat", "grass"])
def test_no_word_in_a_clean_photo(name: str) -> None:
    """A clean photo has no large translucent word: nothing to un-blend."""
    assert bigmark.find(MODELS, overlays.photo(name, 640, 400)) is None


@pytest.mark.parametrize("name", ["grass", "coffee"])
def test_a_photo_without_a_line_stops_at_the_detector(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A textured clean photo in which the detector sees no line of letter height: `log|C − I|` is computed
    once per colour the detector looks in (white, black, mid grey: both windows share it), and the light grey
    looked for only inside lines is never computed (7 computations before, 3 now)."""
    levels: list[float] = []
    distance = bigmark._log_distance

    def counted(image: np.ndarray, level: float) -> np.ndarray:
        levels.append(level)
        return distance(image, level)

    monkeypatch.setattr(bigmark, "_log_distance", counted)
    assert bigmark.find(MODELS, overlays.photo(name, 640, 400)) is None
    assert sorted(levels) == sorted(bigmark.LEVELS)
