"""Tiled watermarks found as a repeated pattern, without reading any text (retouchd.textdetect.lattice/repeats)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from retouchd import textdetect
from retouchd.textdetect import lattice, repeats, watermark, zoom

from tests_support import overlays, periodic

PHOTOS = ("astronaut", "coffee", "chelsea")


def tiled(clean: np.ndarray, step_x: int, step_y: int, text: str = "SAMPLE", alpha: int = 100,
          angle: float = 30.0, colour: tuple[int, int, int] = (255, 255, 255),
          leave_out: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(`clean` with `text` tiled in `colour` at `alpha`/255, rows shifted by half a step, but for the copy
    whose top-left corner lands at `leave_out` (image x, y); the overlay's footprint)."""
    h, w = clean.shape[:2]
    glyphs = overlays.font(18)
    probe = ImageDraw.Draw(Image.new("RGBA", (8, 8))).textbbox((0, 0), text, font=glyphs)
    tile = Image.new("RGBA", (probe[2] - probe[0] + 8, probe[3] - probe[1] + 8), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((4 - probe[0], 4 - probe[1]), text, font=glyphs, fill=(*colour, alpha))
    tile = tile.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    canvas = Image.new("RGBA", (w + 2 * step_x, h + 2 * step_y), (0, 0, 0, 0))
    for row, y in enumerate(range(7, h + step_y, step_y)):
        for x in range(11 + (step_x // 2) * (row % 2), w + step_x, step_x):
            if leave_out != (x - step_x, y - step_y):
                canvas.alpha_composite(tile, (x, y))
    layer = canvas.crop((step_x, step_y, step_x + w, step_y + h))
    out = Image.alpha_composite(Image.fromarray(clean).convert("RGBA"), layer)
    return np.asarray(out.convert("RGB")), np.asarray(layer)[..., 3] > 0


def restore(image: np.ndarray, blend: watermark.TileBlend) -> np.ndarray:
    out, clipped = watermark.apply(image, blend)
    return np.asarray(cv2.inpaint(out, clipped.astype(np.uint8), 3, cv2.INPAINT_TELEA))


def restored(result: np.ndarray, image: np.ndarray, clean: np.ndarray, where: np.ndarray | None = None) -> float:
    visible = np.abs(image.astype(np.int16) - clean.astype(np.int16)).mean(axis=2) >= overlays.VISIBLE
    if where is not None:
        visible &= where
    error = np.abs(result.astype(np.int16) - clean.astype(np.int16)).mean(axis=2)
    return float((error[visible] < overlays.VISIBLE).mean())


def same_lattice(found: lattice.Lattice, steps: np.ndarray) -> bool:
    """True when the found steps and `steps` (columns) span the same lattice."""
    mine = np.linalg.solve(steps, found.basis)
    theirs = np.linalg.solve(found.basis, steps)
    return bool(np.allclose(mine, np.round(mine), atol=0.02) and np.allclose(theirs, np.round(theirs), atol=0.02))


@pytest.mark.parametrize("step_x", [130, 131])
@pytest.mark.parametrize("name", PHOTOS)
def test_lattice_is_found_without_reading_text(monkeypatch: pytest.MonkeyPatch, name: str, step_x: int) -> None:
    """With the text detector and recogniser switched off, the tiled watermark is still found (its exact
    lattice: with an odd step the rows' half shift repeats only every two rows), scored as an overlay and
    un-blended: ≥ 97 % of its pixels come back, and < 0.1 % of the image away from it changes."""
    clean = overlays.photo(name, 576, 384)
    image, footprint = tiled(clean, step_x, 70)

    def no_text(models: object, rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return np.zeros((size[1], size[0]), np.float32)

    def no_reading(*args: object) -> None:
        raise AssertionError("nothing may be read")

    for module in (textdetect, zoom):  # the closer look (zoom) reads with the same detector
        monkeypatch.setattr(module, "probability_map", no_text)
        monkeypatch.setattr(module, "read_lines", no_reading)
    found = textdetect.detect(None, image)  # type: ignore[arg-type]
    assert found.tiles is not None and found.score >= 0.6 and not found.mask.any()
    pair = lattice.find(image)
    assert pair is not None
    whole = np.array([[step_x, step_x // 2], [0, 70]], np.float64) if step_x % 2 == 0 else \
        np.array([[step_x, 0], [0, 140]], np.float64)
    assert same_lattice(pair, whole)
    result = restore(image, found.tiles)
    assert restored(result, image, clean) >= 0.97
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    changed = np.abs(result.astype(np.int16) - image.astype(np.int16)).max(axis=2) > 10
    assert (changed & ~near).mean() < 0.001


@pytest.mark.parametrize("name", PHOTOS)
def test_partial_copies_at_the_border_are_unblended(name: str) -> None:
    """Copies cut by the image's edges are un-blended like whole ones: ≥ 95 % of the overlay pixels within
    16 px of the border come back."""
    clean = overlays.photo(name)
    image, _ = tiled(clean, 124, 66)
    blend = repeats.find(image)
    assert blend is not None
    border = np.ones(clean.shape[:2], bool)
    border[16:-16, 16:-16] = False
    assert restored(restore(image, blend), image, clean, border) >= 0.95


@pytest.mark.parametrize("keystone", [0.0, 0.04])
@pytest.mark.parametrize("kind", periodic.KINDS)
def test_repeating_surface_is_not_a_watermark(kind: str, keystone: float) -> None:
    """Wall tiles, a brick wall and a facade's windows filling the frame — square-on (exactly periodic) or
    turned slightly away — are the scene's own texture: no watermark is found in them."""
    for seed, name in enumerate(PHOTOS):
        scene = periodic.periodic_scene(overlays.photo(name), np.random.default_rng(seed), kind, keystone)
        assert repeats.find(scene) is None


def test_opaque_repeats_are_not_unblended() -> None:
    """An opaque tiled pattern (the same mark at full opacity) does not lie over the photo as a blend does:
    it is left for the text path, not un-blended."""
    clean = overlays.photo("coffee")
    image, _ = tiled(clean, 124, 66, alpha=255)
    assert repeats.find(image) is None


@pytest.mark.parametrize("colour", [(200, 200, 200), (20, 20, 20)])
@pytest.mark.parametrize("name", PHOTOS)
def test_mark_colour_is_measured_from_its_copies(name: str, colour: tuple[int, int, int]) -> None:
    """A grey or black mark is un-blended with its own colour, measured from how its step over the photo
    follows the photo's distance from that colour (within 25 levels in each channel): ≥ 97 % of its pixels
    come back."""
    clean = overlays.photo(name, 576, 384)
    image, _ = tiled(clean, 124, 66, colour=colour, alpha=110)
    blend = repeats.find(image)
    assert blend is not None
    assert np.abs(np.array(blend.colour) - colour).max() <= 25
    assert restored(restore(image, blend), image, clean) >= 0.97


def test_a_copy_the_layout_left_out_is_not_drawn_in_negative() -> None:
    """Where the lattice has a place but the layout drew no copy, un-blending would draw the mark in negative:
    that place is left as it is (< 1 % of its pixels change), while the copies around it come back."""
    clean = overlays.photo("chelsea", 576, 384)
    image, footprint = tiled(clean, 124, 66, leave_out=(11 + 2 * 124 + 62 - 124, 7 + 3 * 66 - 66))
    blend = repeats.find(image)
    assert blend is not None
    result = restore(image, blend)
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    hole = np.zeros(footprint.shape, bool)
    hole[7 + 2 * 66 : 7 + 3 * 66, 11 + 62 + 124 : 11 + 62 + 2 * 124] = True
    changed = np.abs(result.astype(np.int16) - image.astype(np.int16)).max(axis=2) > 10
    assert (changed & hole & ~near).mean() / (hole & ~near).mean() < 0.01
    assert restored(result, image, clean) >= 0.95


def board(seed: int, height: int = 384, width: int = 576) -> np.ndarray:
    """A pale wooden board filling the frame: fine grain, no shade that changes more than a few levels."""
    rng = np.random.default_rng(seed)
    grain = cv2.GaussianBlur(rng.normal(0, 6, (height, width)).astype(np.float32), (0, 0), sigmaX=4, sigmaY=0.7)
    base = np.array([186, 192, 158], np.float32)
    return np.clip(base + grain[..., None] + rng.normal(0, 1.5, (height, width, 1)), 0, 255).astype(np.uint8)


def changed_outside(result: np.ndarray, image: np.ndarray, footprint: np.ndarray) -> float:
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    changed = np.abs(result.astype(np.int16) - image.astype(np.int16)).max(axis=2) > 10
    return float((changed & ~near).mean())


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_faint_watermark_over_a_busy_photo_is_found(name: str) -> None:
    """A faint mark (opacity 45/255) over a photo full of its own detail: its lattice stands out of the
    whitened detail's autocorrelation, and it is un-blended (≥ 95 % of its pixels back, < 0.1 % of the image
    away from it changed)."""
    clean = overlays.photo(name, 576, 384)
    image, footprint = tiled(clean, 131, 70, alpha=45)
    blend = repeats.find(image)
    assert blend is not None
    result = restore(image, blend)
    assert restored(result, image, clean) >= 0.95
    assert changed_outside(result, image, footprint) < 0.001


@pytest.mark.parametrize("seed", [0, 1])
def test_watermark_over_an_even_surface_is_unblended(seed: int) -> None:
    """Over a surface that hardly varies between the copies no blend line can be fitted; a mark every copy
    of which steps toward white by the same translucent share, and whose removal takes the repeats away, is
    un-blended as white: ≥ 97 % of its pixels come back, < 0.1 % of the image away from it changes."""
    clean = board(seed)
    image, footprint = tiled(clean, 131, 70, alpha=90)
    blend = repeats.find(image)
    assert blend is not None and blend.colour == (255.0, 255.0, 255.0)
    result = restore(image, blend)
    assert restored(result, image, clean) >= 0.97
    assert changed_outside(result, image, footprint) < 0.001


def test_opaque_repeats_over_an_even_surface_are_not_unblended() -> None:
    """An opaque pattern over the same even surface steps all the way to its colour: no translucent mark."""
    image, _ = tiled(board(0), 131, 70, alpha=255)
    assert repeats.find(image) is None


def dark_busy(clean: np.ndarray) -> np.ndarray:
    """`clean` as a dark, busy photo (moss at dusk): darkened (gamma 1.6, gain 0.35) with its fine detail
    doubled — the photo beneath a white mark then varies little against its distance from the mark."""
    level = (clean.astype(np.float32) / 255) ** 1.6
    level = level + 2 * (level - cv2.GaussianBlur(level, (0, 0), 2.0))
    return np.asarray(np.clip(level * 0.35 * 255, 0, 255).round(), np.uint8)


@pytest.mark.parametrize(("name", "seed"), [("astronaut", 0), ("coffee", 0), ("coffee", 3)])
def test_watermark_over_a_dark_busy_photo_is_unblended(name: str, seed: int) -> None:
    """A stock-photo watermark over a dark busy photo: each stroke pixel's colour is uncertain by tens of
    levels there (the photo varies little against its distance from white), so their spread is judged in
    their own standard errors, not in levels, and the colour they cannot pin down is taken as white (the
    lines, tilted by the guess's errors, put it 30–45 levels too dark): ≥ 95 % of its pixels come back,
    < 0.1 % of the image away from it changes."""
    clean = dark_busy(overlays.photo(name, 576, 384))
    image, footprint = overlays.tiled_watermark(clean, np.random.default_rng(seed))
    blend = repeats.find(image)
    assert blend is not None and blend.colour == (255.0, 255.0, 255.0)
    result = restore(image, blend)
    assert restored(result, image, clean) >= 0.95
    assert changed_outside(result, image, footprint) < 0.001


def test_a_peak_pulled_off_its_lattice_point_does_not_tilt_the_lattice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The autocorrelation's peaks of a staggered layout (rows 122 px apart, shifted by half of a 195 px
    step: the odd rows' peaks fall between pixels), two of them pulled 1.2 px off their points by the photo's
    own detail (a dark busy photo, where the mark's peaks are weak): the single copies' steps come out within
    0.02 px of the layout's, not tilted a tenth of a pixel per step (three steps: a blurred cell)."""
    shifts, heights = [], []
    for m in range(-4, 5):
        for n in range(-3, 1):
            x, y = 195.0 * m + (97.5 if n % 2 else 0.0), 122.0 * n
            if (y < 0 or (y == 0 and x > 0)) and abs(x) <= 500:
                pulled = 1.2 if n == -3 and x in (97.5, -292.5) else 0.0
                shifts.append([x, y + pulled])
                heights.append(60.0 if n % 2 else 140.0)
    peaks = (np.array(shifts), np.array(heights, np.float32))
    monkeypatch.setattr(lattice, "_peaks", lambda corr: peaks)
    found = lattice.find(np.zeros((512, 768, 3), np.uint8))
    assert found is not None and found.motif is not None
    assert same_lattice(found, np.array([[195.0, 0.0], [0.0, 244.0]]))
    steps = np.abs(np.array(found.motif))
    assert np.abs(steps - [[97.5, 122.0], [97.5, 122.0]]).max() <= 0.02
