"""Tiled inference: seamless against untiled, exact grids, out-of-memory backoff and typed failures."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch
from skimage import data

from retouchd.exceptions import DeviceOutOfMemoryError, StepError
from retouchd.models.ncnnrun import NcnnModule
from retouchd.models.registry import SRNet, load_bundled
from retouchd.tiling import MIN_TILE, auto_tile, grid, tiled_upscale


@functools.cache
def bundled(name: str, scale: int) -> SRNet:
    return load_bundled(name, scale)


def nearest(
    scale: int, limit: int | None = None, calls: list[tuple[int, int]] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fake model: nearest-neighbour ×scale that runs out of memory on tiles with a side over `limit`."""

    def model(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if calls is not None:
            calls.append((h, w))
        if limit is not None and max(h, w) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x.repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    return model


@pytest.mark.parametrize(("name", "scale", "tile"), [("fast", 2, 32), ("anime", 4, 32)])
def test_tiled_matches_untiled_on_a_photo(name: str, scale: int, tile: int) -> None:
    """With the model's receptive radius as pad, tiles agree with one pass within 1/255 on ≥ 99.9 % of values."""
    net = bundled(name, scale)
    image = data.astronaut()[100:172, 180:276]
    with torch.inference_mode():
        whole = tiled_upscale(net.module, image, scale, tile=512, tile_pad=0, pre_pad=2)
        tiled = tiled_upscale(net.module, image, scale, tile=tile, tile_pad=net.receptive_radius, pre_pad=2)
    assert whole.tiles == 1 and tiled.tiles == 3 * 3
    diff = np.abs(whole.image.astype(np.int16) - tiled.image.astype(np.int16))
    assert np.mean(diff <= 1) >= 0.999
    assert diff.max() <= 2


@pytest.mark.parametrize("backend", ["torch", "ncnn"])
def test_transposed_tiles_average_the_plain_and_the_transposed_image(backend: str) -> None:
    """`transposed` averages each tile's output with the transposed tile's: tiled, on either backend, it
    is the mean of the whole image's plain and transposed results (within a level: those two are rounded
    before averaging here), and it differs from the plain result (the network is not orientation-free)."""
    net = load_bundled("fast", 4, backend=backend, threads=1)
    image = np.ascontiguousarray(data.astronaut()[100:150, 180:250])
    with torch.inference_mode():
        plain = tiled_upscale(net.module, image, 4, tile=512, tile_pad=0, pre_pad=2).image
        turned = tiled_upscale(net.module, np.ascontiguousarray(image.transpose(1, 0, 2)), 4, tile=512,
                               tile_pad=0, pre_pad=2).image.transpose(1, 0, 2)
        both = tiled_upscale(net.module, image, 4, tile=32, tile_pad=net.receptive_radius, pre_pad=2,
                             transposed=True)
    assert both.tiles == 2 * 3 and both.image.shape == plain.shape
    mean = (plain.astype(np.float32) + turned) / 2
    diff = np.abs(both.image - mean)
    assert np.mean(diff <= 1) >= 0.999 and diff.max() <= 2
    assert np.mean(np.abs(plain.astype(np.int16) - turned)) > 0.5


def test_small_pad_shows_seams_that_the_receptive_pad_removes() -> None:
    """Without context the tile borders differ visibly, so the agreement above is not vacuous."""
    net = bundled("fast", 2)
    image = data.astronaut()[100:172, 180:276]
    with torch.inference_mode():
        whole = tiled_upscale(net.module, image, 2, tile=512, tile_pad=0).image
        seamy = tiled_upscale(net.module, image, 2, tile=32, tile_pad=0).image
    assert np.mean(np.abs(whole.astype(np.int16) - seamy.astype(np.int16)) <= 1) < 0.99


def test_pre_pad_repeats_the_border_pixels() -> None:
    """pre_pad runs the model on the edge-padded image and crops back, whatever the tiling."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    seen: list[np.ndarray] = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append((x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
        return nearest(2)(x)

    result = tiled_upscale(spy, image, 2, tile=64, tile_pad=5, pre_pad=3)
    assert np.array_equal(seen[0], np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="edge"))
    assert np.array_equal(result.image, image.repeat(2, 0).repeat(2, 1))


@pytest.mark.parametrize(("width", "height", "tile"), [(100, 90, 32), (33, 200, 64), (7, 5, 32), (640, 480, 512)])
def test_grid_covers_every_pixel_once(width: int, height: int, tile: int) -> None:
    """Grid regions tile the image exactly, each at most tile×tile, sides differing by at most one pixel."""
    cover = np.zeros((height, width), dtype=np.int32)
    regions = grid(width, height, tile)
    for x0, y0, x1, y1 in regions:
        assert 0 < x1 - x0 <= tile and 0 < y1 - y0 <= tile
        cover[y0:y1, x0:x1] += 1
    assert cover.min() == cover.max() == 1
    assert len({x1 - x0 for x0, _, x1, _ in regions}) <= 2


def test_out_of_memory_halves_the_tile_and_finishes() -> None:
    """A model that fails on sides over 40 px ends with 32-px tiles, a correct output and full progress."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)
    calls: list[tuple[int, int]] = []
    reports: list[tuple[int, int]] = []
    result = tiled_upscale(nearest(3, limit=40, calls=calls), image, 3, tile=128, tile_pad=4,
                           progress=lambda done, total: reports.append((done, total)))
    assert result.tile == 32
    assert result.tiles == 16  # the failed 64-px quarter and the three after it, each split in four
    assert np.array_equal(result.image, image.repeat(3, 0).repeat(3, 1))
    assert [max(c) > 40 for c in calls].count(True) == 2  # the 128 and the 64 attempt
    assert reports[0][0] == 0 and reports[-1] == (result.tiles, result.tiles)
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(reports))


def test_out_of_memory_at_the_smallest_tile_raises_typed_error() -> None:
    """When even MIN_TILE tiles run out of memory the caller gets DeviceOutOfMemoryError (transient)."""
    image = np.zeros((70, 70, 3), dtype=np.uint8)
    with pytest.raises(DeviceOutOfMemoryError, match="even with 32×32 tiles") as info:
        tiled_upscale(nearest(2, limit=10), image, 2, tile=64, tile_pad=2)
    assert info.value.permanent is False


@pytest.mark.parametrize("message", [
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
])
def test_cudnn_and_cublas_allocation_failures_shrink_the_tile(message: str) -> None:
    """cuDNN / cuBLAS report a full device as plain RuntimeErrors: they shrink the tile like an OOM."""

    def model(x: torch.Tensor) -> torch.Tensor:
        if max(x.shape[-2:]) > 40:
            raise RuntimeError(message)
        return nearest(2)(x)

    image = np.random.default_rng(3).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    result = tiled_upscale(model, image, 2, tile=64, tile_pad=0)
    assert result.tile == 32
    assert np.array_equal(result.image, image.repeat(2, 0).repeat(2, 1))


def test_model_failures_and_wrong_shapes_become_step_errors() -> None:
    """Any other exception, or an output of the wrong size, is a StepError naming the tile."""

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise ValueError("weights on the wrong device")

    image = np.zeros((20, 30, 3), dtype=np.uint8)
    with pytest.raises(StepError, match=r"tile \(0, 0, 30, 20\).*wrong device"):
        tiled_upscale(broken, image, 2, tile=64, tile_pad=0)
    with pytest.raises(StepError, match="model returned"):
        tiled_upscale(nearest(3), image, 2, tile=64, tile_pad=0)
    with pytest.raises(StepError, match="smallest tile"):
        tiled_upscale(nearest(2), image, 2, tile=MIN_TILE - 1, tile_pad=0)


def test_output_is_uint8_clamped_and_rounded() -> None:
    """Values outside [0, 1] clamp to 0 / 255 and the rest round to the nearest level."""
    image = np.full((4, 6, 3), 100, dtype=np.uint8)

    def offset(x: torch.Tensor) -> torch.Tensor:
        out = x.repeat_interleave(2, -2).repeat_interleave(2, -1).clone()
        out[:, 0] += 2.0
        out[:, 1] -= 2.0
        out[:, 2] += 0.4 / 255
        return out

    result = tiled_upscale(offset, image, 2, tile=32, tile_pad=0).image
    assert result.dtype == np.uint8 and result.shape == (8, 12, 3)
    assert set(result[..., 0].ravel()) == {255} and set(result[..., 1].ravel()) == {0}
    assert set(result[..., 2].ravel()) == {100}


class _NumpyNearest(NcnnModule):
    """A stand-in for the ncnn backend (numpy in, numpy out): nearest ×2, then per channel x × gain + bias."""

    def __init__(self) -> None:  # no network behind it
        self._pools, self._pool_pixels = None, 0
        self.gain = np.array([1.7, 30.0, 1.0], np.float32)[:, None, None]
        self.bias = np.array([-0.35, -10.0, 0.5 / 255], np.float32)[:, None, None]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch.repeat(2, -2).repeat(2, -1) * self.gain + self.bias


def test_numpy_backend_output_is_clamped_rounded_like_the_formula() -> None:
    """On the ncnn path the tile's output is clamped, scaled and rounded in place: the result equals
    rint(clip(x, 0, 1) × 255) of the whole image exactly, values near halves and far outside [0, 1] included."""
    image = np.random.default_rng(3).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    model = _NumpyNearest()
    tiled = tiled_upscale(model, image, 2, tile=16, tile_pad=0, min_tile=16).image
    whole = model(np.divide(image.transpose(2, 0, 1)[None], 255.0, dtype=np.float32))[0]
    expected = np.rint(np.clip(whole, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)
    assert tiled.shape == (46, 74, 3) and tiled.dtype == np.uint8
    assert {0, 255} <= set(np.unique(tiled[..., 1]))
    np.testing.assert_array_equal(tiled, expected)


def test_read_only_input_is_accepted_without_warnings() -> None:
    """A read-only input array (as decoders hand out) runs without torch's non-writable warning."""
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image.setflags(write=False)
    assert tiled_upscale(nearest(2), image, 2, tile=32, tile_pad=2).image.shape == (20, 20, 3)


def test_auto_tile_on_cpu_fits_the_budget() -> None:
    """The CPU auto tile is a multiple of 16 whose activations fit the budget, smaller for heavier models."""
    srmd = auto_tile(bundled("fast", 2).bytes_per_pixel)
    photo = auto_tile(24 * 64 * 4)
    assert srmd % 16 == 0 and photo % 16 == 0
    assert 256 <= photo < srmd <= 2048
