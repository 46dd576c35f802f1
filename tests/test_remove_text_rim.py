"""The fill of remove_text does not bring an outline back from the rim the mask left out (issue #14, session 8):
`retouchd.textdetect.rim` and its use in `retouchd.steps.remove_text`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

import retouchd.textdetect
from retouchd.steps import remove_text
from retouchd.steps.base import StepContext
from retouchd.steps.remove_text import RemoveTextOptions, RemoveTextStep
from retouchd.textdetect import TextDetection
from retouchd.textdetect.rim import take_rim
from retouchd.typing import Frame

from tests_support import overlays


def _outlined_on_grey() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """White Cyrillic with a 2 px black outline over an even grey ramp (held-out Grey-0's case): (clean, image,
    the overlay's footprint)."""
    assert not overlays.missing_fonts()
    rng = np.random.default_rng(0)
    ramp = np.repeat(np.repeat(np.linspace(100, 150, 320, dtype=np.float32)[None, :, None], 96, 0), 3, 2)
    clean = np.asarray(np.clip(ramp + rng.normal(0, 2, ramp.shape), 0, 255), np.uint8)
    layer = overlays._blank(clean)
    ImageDraw.Draw(layer).text((12, 20), "Привет", font=overlays.face(overlays.NOTO / "NotoSans-Bold.ttf", 34),
                               fill=(255, 255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0, 255))
    image = np.asarray(Image.alpha_composite(Image.fromarray(clean).convert("RGBA"), layer).convert("RGB"))
    return clean, image, np.asarray(layer)[..., 3] > 0


def test_an_outline_rim_left_out_of_the_mask_is_not_filled_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mask that covers all of the letters but their outline's outermost pixel (what the detector leaves
    over a dark or busy photo): the fill had taken that dark rim for photo and filled every stroke from it,
    so the caption came back as dark letters (0.08 of its pixels restored, 95 % more than 20 levels too
    dark). The rim pixels that look like the outline join the hole: ≥ 0.9 restored, ≤ 15 % too dark."""
    clean, image, footprint = _outlined_on_grey()
    hole = cv2.erode(footprint.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    found = TextDetection(hole, (), (), 1.0)

    def detect(*args: Any, **kwargs: Any) -> TextDetection:
        return found

    monkeypatch.setattr(retouchd.textdetect, "detect", detect)
    monkeypatch.setattr(remove_text, "_models", lambda ctx: None)
    ctx = StepContext(rule="rim", source=Path("shot.png"), cpu_threads=2)
    out = RemoveTextStep(RemoveTextOptions(when="always", engine="patch")).run(Frame(image), ctx).frame.rgb
    visible = overlays.overlay_pixels(image, clean)
    error = np.abs(out.astype(np.int16) - clean.astype(np.int16)).mean(axis=2)
    assert float((error[visible] < 30).mean()) >= 0.9
    darker = out.astype(np.float32).mean(axis=2) - clean.astype(np.float32).mean(axis=2)
    assert float((darker[footprint] < -20).mean()) <= 0.15


def test_the_rim_taken_is_the_outline_one_pixel_out() -> None:
    """Only pixels one pixel outside the hole are taken, and of those the outline's: nothing farther out, and
    nearly every rim pixel the overlay darkened by more than 40 levels."""
    clean, image, footprint = _outlined_on_grey()
    hole = cv2.erode(footprint.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    taken = take_rim(image, hole)
    assert (taken & hole).sum() == hole.sum()
    added = taken & ~hole
    assert not (added & ~(cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)).any()
    rim = footprint & ~hole
    dark = rim & (clean.astype(np.float32).mean(axis=2) - image.astype(np.float32).mean(axis=2) > 40)
    assert dark.sum() > 200
    assert float(added[dark].mean()) >= 0.9


def test_a_hole_over_photo_takes_no_rim() -> None:
    """A false detection over texture (a masked patch of grass whose colours its neighbours share): its
    rim looks like the masked pixels, but those are no overlay (as near the photo's estimate as its
    neighbours), and nothing is taken: the fill changes no pixel outside the detection."""
    rng = np.random.default_rng(1)
    grass = np.asarray(np.clip(cv2.GaussianBlur(rng.normal(110, 40, (120, 200, 3)).astype(np.float32), (0, 0), 1.2)
                               * np.array([0.6, 1.0, 0.4], np.float32), 0, 255), np.uint8)
    hole = np.zeros(grass.shape[:2], bool)
    hole[40:60, 30:170] = True
    assert np.array_equal(take_rim(grass, hole), hole)
    assert np.array_equal(take_rim(grass, np.zeros_like(hole)), np.zeros_like(hole))
