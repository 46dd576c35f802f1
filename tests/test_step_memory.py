"""The upscale step's whole-image post-processing works in bands of rows: its float temporaries stay a small
fraction of the output (before, five float32 copies of the output: +565 MiB for a 1 MP ×4 job), and the
pixels are those of the whole-image formulas."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from retouchd.colourlevel import match_levels
from retouchd.steps.upscale_jpeg import blend_bicubic


def whole_image_match_levels(source: np.ndarray, output: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """The formula of match_levels on whole images (the former implementation)."""
    height, width = source.shape[:2]
    shrunk = cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    smooth = cv2.GaussianBlur(source.astype(np.float32) - shrunk, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    correction = cv2.resize(smooth, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.rint(np.clip(output.astype(np.float32) + correction, 0, 255)).astype(np.uint8)


def whole_image_blend(source: np.ndarray, output: np.ndarray, share: float) -> np.ndarray:
    height, width = output.shape[:2]
    bicubic = np.asarray(Image.fromarray(source).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    return np.rint(np.clip(bicubic + share * (output.astype(np.float32) - bicubic), 0, 255)).astype(np.uint8)


def shifted_pair(width: int, height: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo and a ×scale enlargement of it, darkened by 7 levels with a fine stripe pattern."""
    source = np.asarray(Image.fromarray(data.coffee()).resize((width, height)))
    output = cv2.resize(source, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
    stripes = (np.arange(width * scale)[None, :, None] % 5).astype(np.int16)
    return source, np.clip(output.astype(np.int16) - 7 + stripes, 0, 255).astype(np.uint8)


def traced_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes numpy allocated while `fn` ran (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("width", "height", "scale"), [(160, 120, 4), (97, 61, 3), (64, 300, 8)])
def test_banded_match_levels_equals_the_whole_image_formula(width: int, height: int, scale: int) -> None:
    source, output = shifted_pair(width, height, scale)
    expected = whole_image_match_levels(source, output)
    copy, shift = match_levels(source, output)
    assert shift == pytest.approx(7, abs=2.5)
    assert np.array_equal(copy, expected)
    assert not np.array_equal(output, expected)  # not in place unless asked
    fixed, _ = match_levels(source, output, in_place=True)
    assert fixed is output and np.array_equal(output, expected)


def test_match_levels_in_place_on_a_read_only_output_corrects_a_copy() -> None:
    """A resample through Pillow hands back a read-only array: in_place then falls back to a copy."""
    source, output = shifted_pair(80, 60, 3)
    output.flags.writeable = False
    fixed, _ = match_levels(source, output, in_place=True)
    assert fixed is not output and np.array_equal(fixed, whole_image_match_levels(source, output))


def test_match_levels_without_a_shift_returns_the_output_unchanged() -> None:
    source, _ = shifted_pair(120, 90, 2)
    output = cv2.resize(source, (240, 180), interpolation=cv2.INTER_CUBIC)
    fixed, _ = match_levels(source, output)
    assert np.array_equal(fixed, whole_image_match_levels(source, output))


def test_match_levels_temporaries_stay_a_few_bands() -> None:
    """Whole-image float32 copies were ≥ 8× the output's bytes; bands of 128 rows stay under 2.5× here (an
    output of 1 600 rows) and do not grow with the image."""
    source, output = shifted_pair(600, 400, 4)  # 2400×1600 output (11 MiB)
    peak = traced_peak(lambda: match_levels(source, output, in_place=True))
    assert peak < 2.5 * output.nbytes, f"{peak / 2**20:.0f} MiB for a {output.nbytes / 2**20:.0f} MiB output"


def test_banded_blend_equals_the_whole_image_formula_and_stays_small() -> None:
    source, output = shifted_pair(600, 400, 4)
    expected = whole_image_blend(source, output, 0.37)
    peak = traced_peak(lambda: blend_bicubic(source, output, 0.37))
    assert np.array_equal(output, expected)  # written into the output itself
    # The bicubic enlargement itself (uint8, one output's bytes) plus bands; whole-image floats were ≥ 8×.
    assert peak < 3 * output.nbytes, f"{peak / 2**20:.0f} MiB for a {output.nbytes / 2**20:.0f} MiB output"


def whole_image_back_projection(output: np.ndarray, target: np.ndarray, steps: int = 5,
                                rate: float = 0.5) -> np.ndarray:
    """The former back-projection: whole-image float32 copies (36 bytes per output pixel at its peak)."""
    height, width = target.shape[:2]
    image = output.astype(np.float32)
    for _ in range(steps):
        residual = target - cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        image += rate * cv2.resize(residual, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.rint(np.clip(image, 0, 255)).astype(np.uint8)


@pytest.mark.parametrize(("width", "height", "scale"), [(160, 120, 4), (97, 61, 3), (300, 200, 2), (64, 300, 8)])
def test_banded_back_projection_equals_the_whole_image_formula(width: int, height: int, scale: int) -> None:
    """Bands of rows, the correction kept at the target's size: the same pixels as the whole-image loop but
    for float rounding (a pixel in 10⁵ off by one level at most)."""
    from retouchd.steps.upscale_jpeg import back_project

    source, output = shifted_pair(width, height, scale)
    target = source.astype(np.float32) + 1.5
    expected = whole_image_back_projection(output, target)
    assert not np.array_equal(expected, output)
    banded = back_project(output, target)
    difference = np.abs(banded.astype(np.int16) - expected)
    assert int(difference.max()) <= 1 and np.count_nonzero(difference) <= max(2, difference.size // 100_000)
    fixed = back_project(output, target, in_place=True)
    assert fixed is output and np.array_equal(output, banded)


def test_back_projection_temporaries_stay_small() -> None:
    """The whole-image loop peaked at 12.5× the output's bytes here; in place, the banded one stays under twice the
    output's own bytes at ×4 (three float32 arrays of the input's size and a few bands)."""
    from retouchd.steps.upscale_jpeg import back_project

    source, output = shifted_pair(600, 400, 4)  # 2400×1600 output (11 MiB)
    target = source.astype(np.float32)
    old = traced_peak(lambda: whole_image_back_projection(output, target))
    peak = traced_peak(lambda: back_project(output, target, in_place=True))
    assert old > 10 * output.nbytes
    assert peak < 2.0 * output.nbytes, f"{peak / 2**20:.0f} MiB for a {output.nbytes / 2**20:.0f} MiB output"
