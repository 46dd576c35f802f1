"""Degradation estimates: JPEG quality from the tables and from blocking, noise in flat regions, level fix."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from retouchd.colourlevel import match_levels
from retouchd.degradation import estimate, ijg_table, noise_sigma, quality_from_table


def thumbnail(scale: int, filt: Image.Resampling, quality: int | None) -> tuple[np.ndarray, bytes | None]:
    """A crop of scikit-image's astronaut, downscaled ×`scale` with `filt`, optionally saved as a JPEG."""
    hr = Image.fromarray(data.astronaut()[64:448, 64:448])
    low = hr.resize((hr.width // scale, hr.height // scale), filt)
    if quality is None:
        return np.asarray(low), None
    buffer = io.BytesIO()
    low.save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB")), buffer.getvalue()


@pytest.mark.parametrize("quality", [35, 60, 75, 83, 90, 97])
def test_quality_from_the_tables_is_exact(tmp_path: Path, quality: int) -> None:
    """The quality a JPEG was saved at is read back exactly from its quantisation tables."""
    rgb, encoded = thumbnail(3, Image.Resampling.BOX, quality)
    assert encoded is not None
    path = tmp_path / "thumb.jpg"
    path.write_bytes(encoded)
    found = estimate(rgb, path)
    assert (found.jpeg_quality, found.quality_source) == (quality, "tables")
    assert found.metrics()["jpeg_quality"] == quality


def test_ijg_tables_round_trip() -> None:
    """Every IJG quality maps back to itself; a table from another encoder maps to the nearest one."""
    assert all(quality_from_table(ijg_table(q)) == q for q in range(20, 101))
    assert quality_from_table(ijg_table(80) + 1) in (78, 79, 80)


def test_tables_of_another_size_are_not_trusted(tmp_path: Path) -> None:
    """When the frame is not the file's decode (an earlier step resized it), the tables are not used."""
    rgb, encoded = thumbnail(2, Image.Resampling.BOX, 60)
    assert encoded is not None
    path = tmp_path / "thumb.jpg"
    path.write_bytes(encoded)
    found = estimate(np.ascontiguousarray(rgb[:-8]), path)
    assert found.quality_source == "blocking"
    assert found.jpeg_quality is not None and found.jpeg_quality < 90


@pytest.mark.parametrize("filt", [Image.Resampling.BOX, Image.Resampling.LANCZOS, Image.Resampling.BICUBIC])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_blocking_separates_jpeg_from_clean_downscales(filt: Image.Resampling, scale: int) -> None:
    """Without tables, a clean downscale reads as uncompressed and a quality-60 JPEG of it as compressed."""
    clean, _ = thumbnail(scale, filt, None)
    compressed, _ = thumbnail(scale, filt, 60)
    assert estimate(clean).quality_source == "none"
    assert estimate(clean).jpeg_quality is None
    found = estimate(compressed)
    assert found.quality_source == "blocking"
    assert found.blockiness > estimate(clean).blockiness + 0.1


def test_noise_is_measured_in_flat_regions() -> None:
    """Added Gaussian noise of σ 5 reads as about 5 on a photo with texture; the clean photo reads near 0."""
    rng = np.random.default_rng(1)
    y = np.asarray(Image.fromarray(data.camera()).resize((256, 256)), dtype=np.float64)
    assert noise_sigma(y) < 1.5
    assert noise_sigma(y + rng.normal(0, 5, y.shape)) == pytest.approx(5, abs=1.0)


def test_level_shift_is_removed_and_detail_kept() -> None:
    """An output darkened by 7 levels comes back within one level of its input per channel, and its
    fine detail (the difference from a smooth version) is left as it was."""
    import cv2

    source = np.asarray(Image.fromarray(data.coffee()).resize((160, 120)))
    output = cv2.resize(source, (640, 480), interpolation=cv2.INTER_CUBIC)
    darker = np.clip(output.astype(np.int16) - 7, 0, 255).astype(np.uint8)
    fixed, shift = match_levels(source, darker)
    assert shift == pytest.approx(7, abs=1.0)
    means = fixed.reshape(-1, 3).mean(axis=0) - source.reshape(-1, 3).mean(axis=0)
    assert np.abs(means).max() < 1.0
    detail = darker.astype(np.float32) - cv2.GaussianBlur(darker, (0, 0), 4).astype(np.float32)
    kept = fixed.astype(np.float32) - cv2.GaussianBlur(fixed, (0, 0), 4).astype(np.float32)
    assert np.abs(detail - kept).mean() < 0.6


def luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    from retouchd.degradation import luma

    return float(10 * np.log10(255.0**2 / np.mean((luma(a) - luma(b)) ** 2)))


@pytest.mark.parametrize("quality", [60, 90])
def test_deblocking_brings_a_jpeg_thumbnail_back_towards_its_original(quality: int) -> None:
    """The deblocked decode of a JPEG thumbnail is closer to the uncompressed thumbnail (PSNR-Y) than the
    decode itself, and its 8×8 blocking is lower."""
    from retouchd.deblock import deblock
    from retouchd.degradation import blockiness, luma

    clean, _ = thumbnail(2, Image.Resampling.BOX, None)
    decoded, _ = thumbnail(2, Image.Resampling.BOX, quality)
    cleaned = deblock(decoded, quality)
    assert cleaned.shape == decoded.shape and cleaned.dtype == np.float32
    assert luma_psnr(clean, cleaned) > luma_psnr(clean, decoded) + 0.5
    assert blockiness(luma(cleaned)) < blockiness(luma(decoded)) - 0.01


@pytest.mark.parametrize(("scale", "filt", "quality", "floor"), [
    (2, Image.Resampling.BOX, 60, 0.68), (3, Image.Resampling.LANCZOS, 75, 0.85), (2, Image.Resampling.BOX, 90, 0.95),
])
def test_weighted_deblocking_gains_enough(scale: int, filt: Image.Resampling, quality: int, floor: float) -> None:
    """64 shifted grids, each block weighted by its sparsity: the deblocked luma gains +0.72 / +0.92 / +1.03 dB
    over the decode on these fixtures; the former 16 plainly averaged grids gained +0.60 / +0.73 / +0.82."""
    from retouchd.deblock import deblock

    clean, _ = thumbnail(scale, filt, None)
    decoded, _ = thumbnail(scale, filt, quality)
    assert luma_psnr(clean, deblock(decoded, quality)) - luma_psnr(clean, decoded) > floor


def test_deblocking_keeps_within_the_quantisation_steps() -> None:
    """On the file's own 8×8 grid every luma DCT coefficient stays within half a quantisation step of the
    decoded one: the deblocked image is one the file could have come from."""
    from retouchd.deblock import dct_blocks, deblock_luma

    decoded, _ = thumbnail(2, Image.Resampling.LANCZOS, 60)
    y = np.asarray(decoded, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    table = ijg_table(60).reshape(8, 8)
    cleaned = deblock_luma(y, table)
    rows, cols = y.shape[0] // 8 * 8, y.shape[1] // 8 * 8
    moved = np.abs(dct_blocks(cleaned[:rows, :cols] - 128) - dct_blocks(y[:rows, :cols] - 128))
    assert float((moved - table / 2).max()) < 1e-6
    assert float(np.abs(cleaned - y).mean()) > 0.3  # and it did change the image


def test_back_projection_makes_the_output_agree_with_its_input() -> None:
    """After back-projection, the output's area-downscale is within a fraction of a level of the target;
    a bicubic enlargement of a box thumbnail starts over a level away."""
    import cv2

    from retouchd.steps.upscale_jpeg import back_project

    low, _ = thumbnail(2, Image.Resampling.BOX, None)
    h, w = low.shape[:2]
    start = cv2.resize(low, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)

    def mismatch(image: np.ndarray) -> float:
        return float(np.abs(cv2.resize(image.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) - low).mean())

    fixed = back_project(start, low.astype(np.float32))
    assert fixed.shape == start.shape and fixed.dtype == np.uint8
    assert mismatch(start) > 1.0
    assert mismatch(fixed) < 0.3 * mismatch(start)
