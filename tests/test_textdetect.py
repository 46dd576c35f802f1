"""Overlaid-text detection: model files, detector geometry, evidence, masks and scores (retouchd.textdetect)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retouchd import textdetect
from retouchd.textdetect import db, evidence, runtime

from tests_support import overlays


@pytest.fixture(scope="module")
def models() -> textdetect.OcrModels:
    return textdetect.load_models("cpu", threads=2)


def changed_pixels(overlaid: np.ndarray, clean: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(overlaid.astype(np.int16) - clean.astype(np.int16)).max(axis=2) > 8)


def test_model_files_come_from_the_installed_wheel() -> None:
    """Both ONNX files are found through the package's import locations, and the alphabet is read."""
    folder = runtime.model_dir()
    assert (folder / runtime.DET_FILE).stat().st_size > 4_000_000
    assert (folder / runtime.REC_FILE).stat().st_size > 10_000_000


def test_alphabet_has_blank_first_and_space_last(models: textdetect.OcrModels) -> None:
    """The CTC alphabet matches the recogniser's 6625 outputs: blank, 6623 characters, space."""
    assert len(models.charset) == 6625
    assert models.charset[0] == "" and models.charset[-1] == " "
    assert "7" in models.charset and "A" in models.charset


def test_detection_size_is_bounded() -> None:
    """Small images are scaled up (at most ×2) to a 736-px short side, large ones down to a 2048-px long side."""
    assert db.detection_size(512, 768) == (736, 1088)
    assert db.detection_size(100, 150) == (192, 288)
    assert db.detection_size(4000, 6000) == (1376, 2048)
    assert db.detection_size(5, 7) == (32, 32)


def test_evidence_factors() -> None:
    """A confident level line is overlay-like; single glyphs, repeated ideographs and tilt are not."""
    line = evidence.weigh(0.9, "IMG_0423.JPG", 0.98, 0.5)
    assert line.value == pytest.approx(0.98)
    assert evidence.weigh(0.9, "米", 0.99, 0.0).value == pytest.approx(0.3 * 0.99)
    assert evidence.weigh(0.9, "米米米", 0.99, 0.0).repetition == pytest.approx(1 / 3)
    assert evidence.weigh(0.9, "11 11", 0.99, 0.0).repetition == 1.0
    assert evidence.weigh(0.9, "SAMPLE", 0.99, 30.0).tilt == pytest.approx(0.3)
    assert evidence.weigh(0.55, "SALE", 1.0, 0.0).det == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["coffee", "astronaut", "chelsea"])
def test_caption_white_with_black_stroke(models: textdetect.OcrModels, name: str) -> None:
    """A stroked white caption scores high, its letters are masked, and the mask stays close to them."""
    clean = overlays.photo(name)
    image = overlays.caption(clean)
    found = textdetect.detect(models, image)
    visible = overlays.overlay_pixels(image, clean)
    assert found.score >= 0.8
    assert found.mask[visible].mean() >= 0.97
    assert found.mask.sum() <= 1.6 * changed_pixels(image, clean).sum()
    assert any("holidays" in box.text for box in found.masked)


def test_orange_date_stamp(models: textdetect.OcrModels) -> None:
    """Blurred orange mono digits in a corner are read as a date and masked with their blur."""
    clean = overlays.photo("camera")
    image = overlays.date_stamp(clean)
    found = textdetect.detect(models, image)
    assert found.score >= 0.8
    assert found.mask[overlays.overlay_pixels(image, clean)].mean() >= 0.9
    assert found.mask.sum() <= 2.0 * changed_pixels(image, clean).sum()


@pytest.mark.parametrize("name", ["rocket", "camera"])
def test_semi_transparent_watermark(models: textdetect.OcrModels, name: str) -> None:
    """50 %-alpha white lettering is found and covered although its colour follows the background: masked, or
    (a word this large, `bigmark`) un-blended with its outline masked."""
    clean = overlays.photo(name)
    image = overlays.watermark(clean)
    found = textdetect.detect(models, image)
    assert found.score >= 0.8
    taken = found.mask | (found.tiles.alpha > 0) if found.tiles is not None else found.mask
    assert taken[overlays.overlay_pixels(image, clean)].mean() >= 0.9


@pytest.mark.parametrize("name", ["chelsea", "camera"])
def test_small_dark_label(models: textdetect.OcrModels, name: str) -> None:
    """An 11-px dark file name on a light corner is found, read and masked."""
    clean = overlays.photo(name)
    image = overlays.label(clean, ink=20)
    found = textdetect.detect(models, image)
    assert found.score >= 0.8
    assert "0423" in found.masked[0].text
    assert found.mask[overlays.overlay_pixels(image, clean)].mean() >= 0.85


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "camera"])
def test_clean_photos_score_low(models: textdetect.OcrModels, name: str) -> None:
    """Photos without overlays score far below the default threshold and get an empty mask."""
    found = textdetect.detect(models, overlays.photo(name))
    assert found.score < 0.3
    assert not found.mask.any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_petals_are_not_text(models: textdetect.OcrModels, seed: int) -> None:
    """Daisies make the raw detector fire, but they read as lone or repeated glyphs: the score stays low."""
    found = textdetect.detect(models, overlays.daisies(seed=seed))
    assert found.boxes, "the raw detector is expected to fire on petals"
    assert found.score < 0.3
    assert not found.mask.any()


def test_regions_limit_where_text_is_looked_for(models: textdetect.OcrModels) -> None:
    """With only the bottom fifth allowed, a caption at the top is ignored and the date below is kept."""
    clean = overlays.photo("camera")
    image = overlays.date_stamp(overlays.caption(clean, y=12))
    height, width = clean.shape[:2]
    bottom = [(0, int(height * 0.8), width, height - int(height * 0.8))]
    found = textdetect.detect(models, image, regions=bottom)
    assert found.score >= 0.8
    assert not found.mask[: height // 2].any()
    assert found.mask[int(height * 0.8) :].any()
    assert all(box.quad[:, 1].mean() > height * 0.7 for box in found.boxes)
    everywhere = textdetect.detect(models, image)
    assert everywhere.mask[: height // 2].any()


def test_large_image_is_detected_smaller_and_mapped_back(
    models: textdetect.OcrModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1536×1024 photo is detected at a bounded size; the mask comes back at full size on the caption."""
    clean = overlays.photo("coffee", 1536, 1024)
    image = overlays.caption(clean, text="Lake Como", y=40, size=96)
    seen: list[tuple[int, ...]] = []
    run_det = type(models).run_det

    def spy(self: textdetect.OcrModels, batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return run_det(self, batch)

    monkeypatch.setattr(type(models), "run_det", spy)
    found = textdetect.detect(models, image, max_side=768)
    # The caption's look, and `bigmark`'s (a large translucent word) on its step maps, smaller still.
    assert seen.count((1, 3, 512, 768)) == 1 and all(shape[2] <= 512 and shape[3] <= 768 for shape in seen)
    assert found.mask.shape == (1024, 1536)
    assert found.score >= 0.8
    assert found.mask[overlays.overlay_pixels(image, clean)].mean() >= 0.95


def test_halo_grows_the_mask(models: textdetect.OcrModels) -> None:
    """A halo of 3 px adds a band around the letters and keeps everything the plain mask had."""
    image = overlays.caption(overlays.photo("chelsea"))
    plain = textdetect.detect(models, image).mask
    grown = textdetect.detect(models, image, halo=3).mask
    assert grown[plain].all()
    assert grown.sum() > 1.3 * plain.sum()


@pytest.mark.gpu
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
    reason="needs onnxruntime with the CUDA provider",
)
def test_cuda_session_matches_cpu(models: textdetect.OcrModels) -> None:
    """On the GPU the detector scores and masks a caption as it does on the CPU."""
    clean = overlays.photo("coffee")
    image = overlays.caption(clean)
    gpu = textdetect.load_models("cuda:0")
    assert gpu.det.get_providers()[0] == "CUDAExecutionProvider"
    on_gpu, on_cpu = textdetect.detect(gpu, image), textdetect.detect(models, image)
    assert abs(on_gpu.score - on_cpu.score) < 0.05
    assert (on_gpu.mask ^ on_cpu.mask).sum() < 0.02 * on_cpu.mask.sum()


def test_band_blend_is_fitted_and_inverted() -> None:
    """Across the edges of a band composited as αC + (1 − α)B the fit finds gain 1 − α and offset αC, and
    un-blending brings the photo back within rounding."""
    from retouchd.textdetect import unblend

    clean = overlays.photo("astronaut")
    alpha, colour = 0.55, np.array([10.0, 20.0, 60.0])
    image = clean.copy()
    rows = slice(180, 220)
    image[rows] = np.round(alpha * colour + (1 - alpha) * clean[rows]).astype(np.uint8)
    letters = np.zeros(clean.shape[:2], bool)
    band = unblend.fit_band(image, (180, 220, 0, clean.shape[1]), letters)
    assert band is not None
    assert band.gain == pytest.approx((0.45,) * 3, abs=0.02)
    assert band.offset == pytest.approx(tuple(alpha * colour), abs=3)
    out, clipped = unblend.apply(image, [band])
    assert not clipped.any()
    assert np.abs(out[rows].astype(int) - clean[rows]).mean() < 1.5
    assert np.array_equal(out[:180], image[:180])


def test_flat_page_is_not_a_box_and_its_text_is_masked_rims_and_all(models: textdetect.OcrModels) -> None:
    """Text on a flat page: the flat colour runs on past the line, so it is no box (the page stays out of the
    mask), and every pixel the text touched, faint rims included, is masked."""
    page = np.full((256, 384, 3), 248, np.uint8)
    image = overlays.label(page, "Price: EUR 24.90", xy=(40, 100), size=18, ink=90)
    found = textdetect.detect(models, image)
    touched = np.any(image != page, axis=2)
    assert found.masked
    assert found.mask[touched].all()
    ys, xs = np.nonzero(touched)
    near = np.zeros_like(touched)
    near[ys.min() - 8 : ys.max() + 9, xs.min() - 8 : xs.max() + 9] = True
    assert not (found.mask & ~near).any()


@pytest.mark.parametrize(("name", "seed"), [("astronaut", 3), ("coffee", 5), ("rocket", 8)])
def test_price_tag_mask_is_the_whole_box(models: textdetect.OcrModels, name: str, seed: int) -> None:
    """The mask of a price tag is its rounded box, not only its letters: it covers the whole footprint and
    hardly more (the box's anti-aliased rim)."""
    assert not overlays.missing_fonts()
    clean = overlays.photo(name)
    image, footprint = overlays.price_tag(clean, np.random.default_rng(seed))
    found = textdetect.detect(models, image)
    assert found.mask[footprint].mean() >= 0.98
    assert found.mask.sum() <= 1.5 * footprint.sum()


def test_hangul_is_not_vetoed_by_the_recogniser(models: textdetect.OcrModels) -> None:
    """The recogniser has no Hangul; a Korean caption still scores as an overlay (a row of aligned glyphs)
    and its letters are masked."""
    from PIL import ImageDraw

    assert not overlays.missing_fonts()
    clean = overlays.photo("coffee")
    glyphs = overlays.face(overlays.NOTO_CJK / "NotoSansCJK-Bold.ttc", 22, 3)
    image = overlays.compose(clean, lambda d: ImageDraw.ImageDraw.text(
        d, (90, 200), "서울의 봄 여행", font=glyphs, fill=(255, 255, 255, 255), stroke_width=1,
        stroke_fill=(0, 0, 0, 255)))
    found = textdetect.detect(models, image)
    assert found.score >= 0.6
    assert found.mask[changed_pixels(image, clean)].mean() > 0.9


def test_glyph_row_needs_aligned_glyphs() -> None:
    """Three equal blocks on one baseline make a row; blobs of unequal heights at different levels do not."""
    from retouchd.textdetect.glyphs import glyph_row

    quad = np.array([[0, 0], [60, 0], [60, 20], [0, 20]], np.float32)
    row = np.zeros((30, 70), bool)
    for x in (4, 22, 40):
        row[5:17, x : x + 12] = True
    assert glyph_row(row, quad) == 3
    blobs = np.zeros((30, 70), bool)
    blobs[2:8, 4:16] = True
    blobs[10:19, 22:30] = True
    blobs[4:18, 40:44] = True
    assert glyph_row(blobs, quad) == 0


def test_tiled_copies_vote_one_shape() -> None:
    """Copies of one watermark, each with its own stray pixels (grass) and gaps: the voted shape is put back
    at every copy, the strays of single copies are dropped and each copy's gaps are filled."""
    from retouchd.textdetect import tiles

    shape = (120, 200)
    glyph = np.zeros((12, 30), bool)
    glyph[2:10, 2:6] = glyph[2:10, 12:16] = glyph[2:4, 20:28] = True
    copies, truth = [], np.zeros(shape, bool)
    for k, (x, y) in enumerate([(20, 20), (120, 20), (20, 80), (120, 80)]):
        letters = np.zeros(shape, bool)
        letters[y : y + 12, x : x + 30] = glyph
        truth |= letters
        if k == 1:
            letters[y + 2 : y + 6, x + 2 : x + 6] = False  # this copy misses part of a stroke
        if k == 2:
            letters[y - 10, x + 40] = True  # this one takes in a stray pixel away from the letters
        quad = np.array([[x, y], [x + 30, y], [x + 30, y + 12], [x, y + 12]], np.float32)
        copies.append((quad, letters))
    assert tiles.tiled_text(["Sample", "SAMPLE", "sam ple", "other"]) == "sample"
    assert tiles.tiled_text(["Sample", "SAMPLE", "other"]) is None
    voted = tiles.stack(copies, shape)
    assert voted[truth].all()
    assert not voted[70, 60]
    assert voted.sum() <= 2.5 * truth.sum()  # the letters and their one-pixel rim


def test_grain_inside_letters_marks_scene_text() -> None:
    """Thick letters of one exact colour (rendered) are not grainy; the same letters lit unevenly, blurred
    and with the photo's noise (photographed) are; thin or edge-only insides say nothing."""
    from retouchd.textdetect.grain import grainy

    rng = np.random.default_rng(5)
    quad = np.array([[10, 10], [150, 10], [150, 50], [10, 50]], np.float32)
    letters = np.zeros((60, 160), bool)
    for x in range(14, 140, 30):
        letters[14:46, x : x + 14] = True
    rendered = np.full((60, 160, 3), 90, np.uint8)
    rendered[letters] = (250, 240, 20)
    assert not grainy(rendered, quad, letters)
    light = np.linspace(0.8, 1.0, 160)[None, :, None]
    photographed = cv2.GaussianBlur(rendered.astype(np.float32) * light, (0, 0), 1.0)
    photographed = (photographed + rng.normal(0, 1.6, photographed.shape)).clip(0, 255).astype(np.uint8)
    assert grainy(photographed, quad, letters)
    thin = np.zeros_like(letters)
    thin[14:46, 14:17] = True
    assert not grainy(photographed, quad, thin)


def test_grain_bound_follows_the_photos_own_noise() -> None:
    """Letters as noisy as a noisy photo (median grain above the fixed bound) are grainy there; the same
    letters in a quiet photo are not, nor are rendered letters (exact colour) in the noisy photo."""
    from retouchd.textdetect.grain import NOISE, grainy, photo_grain

    rng = np.random.default_rng(7)
    h, w = 200, 320
    quad = np.array([[90, 80], [230, 80], [230, 120], [90, 120]], np.float32)
    letters = np.zeros((h, w), bool)
    for x in range(94, 220, 30):
        letters[84:116, x : x + 14] = True
    base = np.full((h, w, 3), 90.0, np.float32)
    base[letters] = (250, 240, 20)
    signed = cv2.GaussianBlur(base, (0, 0), 1.0)
    noise = rng.normal(0, 14, (h, w, 3))
    noisy = (signed + noise).clip(0, 255).astype(np.uint8)
    grain = np.abs(noisy - cv2.blur(noisy.astype(np.float32), (3, 3))).mean(axis=2)[letters]
    assert float(np.median(grain)) > NOISE
    assert photo_grain(noisy, quad) > 10
    assert grainy(noisy, quad, letters)
    quiet = noisy.copy()
    outside = np.ones((h, w), bool)
    outside[60:140, 60:260] = False
    quiet[outside] = 90
    assert photo_grain(quiet, quad) < 1
    assert not grainy(quiet, quad, letters)
    rendered = noisy.copy()
    rendered[letters] = (250, 240, 20)
    assert not grainy(rendered, quad, letters)


def test_tiled_watermark_is_unblended_at_every_copy_of_its_lattice() -> None:
    """A translucent white mark repeated on a brick lattice over a textured photo, five of its copies given:
    its opacity is voted from them, the copies not given are placed on the lattice, and un-blending brings
    the photo back under every copy (not filled), leaving every pixel away from the mark as it was."""
    from retouchd.textdetect import watermark

    rng = np.random.default_rng(3)
    height, width = 240, 360
    photo = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), 6)
    photo = np.clip(110 + 25 * photo / photo.std() + np.linspace(-30, 30, width)[None, :, None], 0, 255)
    glyph = np.zeros((16, 44), np.float32)
    glyph[2:14, 2:6] = glyph[2:5, 2:14] = glyph[12:15, 2:14] = glyph[2:14, 20:24] = glyph[2:14, 32:42] = 1
    glyph = cv2.GaussianBlur(glyph, (0, 0), 0.7) * 0.4
    alpha = np.zeros((height, width), np.float32)
    copies, origins = [], []
    for row, y in enumerate(range(10, height - 20, 50)):
        for x in range(10 + 45 * (row % 2), width - 50, 90):
            alpha[y : y + 16, x : x + 44] = glyph
            origins.append((x, y))
    image = np.clip(photo * (1 - alpha[..., None]) + 255 * alpha[..., None], 0, 255).astype(np.uint8)
    for x, y in origins[:5]:
        letters = np.zeros((height, width), bool)
        letters[y : y + 16, x : x + 44] = glyph > 0.1
        quad = np.array([[x, y], [x + 44, y], [x + 44, y + 16], [x, y + 16]], np.float32)
        copies.append((quad, letters))
    blend = watermark.estimate(image, copies)
    assert blend is not None and blend.copies >= len(origins)
    out, clipped = watermark.apply(image, blend)
    truth = np.clip(photo, 0, 255).astype(np.uint8)
    mark = alpha > 0.1
    error = np.abs(out.astype(int) - truth).max(axis=2)
    # The mark moved these pixels by 58 levels (median); un-blended, most come back within a few levels.
    assert float(np.median(error[mark])) <= 8
    assert (error[mark] <= 15).mean() >= 0.88
    assert not clipped.any()
    away = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert np.array_equal(out[away], image[away])


def test_normalise_gives_bgr_planes_in_unit_range() -> None:
    """The detector's input: 3×H×W, blue plane first, 0 → −1 and 255 → 1."""
    from retouchd.textdetect.db import normalise

    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 1] = (255, 0, 51)
    planes = normalise(rgb)
    assert planes.shape == (3, 2, 3) and planes.dtype == np.float32 and planes.flags.c_contiguous
    assert planes[:, 0, 1].tolist() == pytest.approx([51 / 127.5 - 1, -1.0, 1.0])
    assert (planes[:, 1] == -1.0).all()
