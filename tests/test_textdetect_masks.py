"""Letter masks that match the overlay (issue #14, session 7): photo the letters' colours match along the
line, stripes beside a line taken for its shadow or its letters (retouchd.textdetect.strokes, shadow)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from retouchd.textdetect.glyphs import glyph_row
from retouchd.textdetect.strokes import add_letters

from tests_support import overlays


def _drawn(background: np.ndarray, text: str, font: object, xy: tuple[int, int], stroke: int = 1
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """White `text` with a black `stroke` on `background`: (image, overlay footprint, its quad, grown like the
    detector's by ~0.3 line heights)."""
    layer = overlays._blank(background)
    draw = ImageDraw.Draw(layer)
    draw.text(xy, text, font=font, fill=(255, 255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    image = np.asarray(Image.alpha_composite(Image.fromarray(background).convert("RGBA"), layer).convert("RGB"))
    footprint = np.asarray(layer)[..., 3] > 0
    return image, footprint, _quad(footprint)


def _quad(footprint: np.ndarray) -> np.ndarray:
    """The footprint's box grown like the detector's quad, by ~0.3 line heights on every side."""
    ys, xs = np.nonzero(footprint)
    pad = 0.3 * (ys.max() - ys.min())
    x0, x1, y0, y1 = xs.min() - pad, xs.max() + pad, ys.min() - pad, ys.max() + pad
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def test_a_streak_running_along_the_line_is_no_text_colour() -> None:
    """Hangul over a dark evening sky with a pale streak running along the line through its letters: the
    streak's colours are novel to the ring above and below (seeds) and were taken as a second and third
    text colour, masking the whole band (no gaps between glyphs: 0 glyphs, never detected). A colour that is
    as dense past both of the box's ends as beside it is photo, not lettering."""
    rng = np.random.default_rng(3)
    rows = np.arange(200, dtype=np.float32)[:, None, None]
    sky = np.array([40, 44, 52], np.float32) + 90 * np.exp(-(((rows - 96) / 9.0) ** 2)) * np.array([1.0, 1.1, 1.3])
    background = np.asarray(np.clip(sky + rng.normal(0, 2, (200, 640, 3)), 0, 255), np.uint8)
    font = overlays.face(overlays.NOTO_CJK / "NotoSansCJK-Bold.ttc", 30, 3)
    image, footprint, quad = _drawn(background, "서울의 봄 여행", font, (200, 78))
    out = np.zeros(footprint.shape, bool)
    add_letters(image, quad, out)
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert out[footprint].mean() >= 0.85
    assert (out & ~near).sum() <= 0.02 * footprint.sum()
    assert glyph_row(out, quad) >= 3


def _on_a_dark_band(top: int, bottom: int, blur: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Japanese white letters with a thin black stroke over a dark treeline (rows `top`–`bottom`) about as tall
    as they are, pale sky above, pale water below."""
    rng = np.random.default_rng(5)
    rows = np.arange(200, dtype=np.float32)[:, None, None]
    band = (rows >= top) & (rows < bottom)
    photo = np.where(band, np.array([25, 45, 100], np.float32), np.array([190, 185, 140], np.float32))
    photo = cv2.GaussianBlur(photo + np.zeros((200, 640, 3), np.float32), (0, 0), blur)
    background = np.asarray(np.clip(photo + rng.normal(0, 3, (200, 640, 3)), 0, 255), np.uint8)
    font = overlays.face(overlays.NOTO_CJK / "NotoSansCJK-Bold.ttc", 34, 2)
    return _drawn(background, "東京の夜景を楽しむ", font, (140, 74))


@pytest.mark.parametrize(("top", "bottom"), [(85, 118), (82, 112)])
def test_a_dark_band_along_the_line_is_not_taken_by_its_letters(top: int, bottom: int) -> None:
    """The treeline fills the core of the line, so its colour is novel to the ring above and below and makes
    seeds; it was no text colour only by the consistency test, and the novel-colour fallback then masked all
    the seeds, treeline too (3 900 px outside the overlay). A colour running on past both ends is photo: its
    seeds are not counted and not kept."""
    image, footprint, quad = _on_a_dark_band(top, bottom, 3)
    out = np.zeros(footprint.shape, bool)
    add_letters(image, quad, out)
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert out[footprint].mean() >= 0.85
    assert (out & ~near).sum() <= 0.02 * footprint.sum()


def test_flat_letters_among_crossing_stems_keep_their_colour() -> None:
    """White shadowed letters over dune grass: the stems and the shadow bring so many novel colours that white
    explains under a quarter of the seeds in some stretches of the line, and the novel-colour fallback took
    every seed, stems and all (3 300–4 900 px outside the overlay). A flat colour peak was found: the letters
    are its pixels and the seeds within a tenth of a line height of them."""
    rng = np.random.default_rng(0)
    rows = np.arange(200, dtype=np.float32)[:, None, None]
    photo = np.where(rows < 110, np.array([70, 150, 210], np.float32), np.array([90, 140, 50], np.float32))
    photo = cv2.GaussianBlur(photo + np.zeros((200, 640, 3), np.float32), (0, 0), 6)
    for _ in range(40):
        x, tilt = float(rng.uniform(-100, 700)), float(rng.uniform(-0.5, 0.5))
        colour = tuple(float(c) for c in rng.uniform([150, 110, 40], [230, 180, 100]))
        cv2.line(photo, (int(x), 200), (int(x + 200 * tilt), 0), colour, int(rng.integers(2, 5)), cv2.LINE_AA)
    photo = cv2.GaussianBlur(photo, (0, 0), 0.8) + rng.normal(0, 3, photo.shape)
    background = np.asarray(np.clip(photo, 0, 255), np.uint8)
    image, ink, _, footprint = overlays.white_with_shadow(background, "Lake Como, Italy", (100, 70), 40, 3, 2.8)
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    out = np.zeros(ink.shape, bool)
    add_letters(image, _quad(ink), out)
    assert out[ink].mean() >= 0.99
    assert (out & ~near).sum() <= 0.05 * ink.sum()


@pytest.mark.parametrize(("noise", "top", "bottom", "x0", "x1"), [(4, 88, 108, 150, 440), (3, 88, 108, 150, 440),
                                                           (4, 88, 108, 140, 430)])
def test_a_dark_shore_under_rendered_letters_is_no_text_colour(noise: float, top: int, bottom: int, x0: int,
                                                               x1: int) -> None:
    """Pink serif letters over a pink evening sky with a dark shore inside the line's rows, no longer than the
    line (tune foliage summer_1am-1: the box reaches the image's side, so the shore cannot run on past both
    ends). The shore's colour is novel to the ring above and below and holds enough seeds to be a third colour
    peak: it was masked with the letters (~1 000 px outside the overlay; the fill painted pink streaks across
    the shore). After a rendered colour (≥ 0.8 of its pixels in one colour bin) a peak that is not one, and does
    not hug it (half of its pixels within 2 px), is photo."""
    rng = np.random.default_rng(7)
    rows = np.arange(200, dtype=np.float32)[:, None, None]
    photo = np.array([200, 120, 170], np.float32) - 0.2 * rows + np.zeros((200, 640, 3), np.float32)
    photo[top:bottom, x0:x1] = (52, 60, 100)
    photo = cv2.GaussianBlur(photo, (0, 0), 1.5)
    background = np.asarray(np.clip(photo + rng.normal(0, noise, photo.shape), 0, 255), np.uint8)
    layer = overlays._blank(background)
    font = overlays.face(overlays.NOTO / "NotoSerif-Bold.ttf", 36)
    ImageDraw.Draw(layer).text((160, 70), "Spring garden", font=font, fill=(244, 84, 160, 255))
    image = np.asarray(Image.alpha_composite(Image.fromarray(background).convert("RGBA"), layer).convert("RGB"))
    footprint = np.asarray(layer)[..., 3] > 0
    out = np.zeros(footprint.shape, bool)
    add_letters(image, _quad(footprint), out)
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert out[footprint].mean() >= 0.95
    assert (out & ~near).sum() <= 0.02 * footprint.sum()
