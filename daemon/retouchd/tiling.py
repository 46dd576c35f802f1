"""Tiled super-resolution inference: a pure function of (model, image, scale, tile, tile_pad, device).

The image is cut into a grid of tiles of at most `tile`×`tile` input pixels, split evenly so that no thin
remainder tile wastes work. Each tile is run with `tile_pad` pixels of context on every side, and only its
centre is written, converted to uint8, into one preallocated output buffer: the whole output never exists
in floating point. At the image border the context is the border pixels repeated `pre_pad` times (then
the network's own zero padding): a couple of repeated pixels spare the edge the dark rim that zero padding
leaves, which is worth up to 1 dB on a small photo. With `tile_pad` at least the network's receptive radius
the result equals untiled inference up to float rounding.

With `transposed` each tile also runs transposed (rows and columns swapped) and the two outputs, each
clipped to [0, 1], are averaged before rounding: a two-member self-ensemble at twice the network's work and
no more memory than one tile's output.

Out of memory on a tile halves the tile for it and every tile after it; below `min_tile` the function raises
DeviceOutOfMemoryError, and the caller decides whether to fall back to the CPU.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from retouchd.exceptions import DeviceOutOfMemoryError, RetouchdError, StepError
from retouchd.steps.options import MIN_TILE
from retouchd.typing import ProgressFn, RGBImage

MAX_AUTO_TILE = 2048
CPU_ACTIVATION_BUDGET = 512 * 2**20
"""Bytes of activations an auto-sized tile may take on the CPU: a job's peak RSS stays within its output
bytes + this + 200 MB (the process, its libraries and a model of up to MODEL_ALLOWANCE)."""
MODEL_ALLOWANCE = 128 * 2**20
"""The share of a job's 200 MB margin a loaded network may hold; a larger one (x4plus on ncnn: 340 MB)
takes the rest from the tile budget."""
AFTER_TILES_OUTPUTS = 3
"""Output-sized arrays a job may allocate after its tile loop (Pillow's copy for the encoder, a refinement or
resize result, the encoded bytes), counted against the tile budget when the ncnn pools are kept."""
CUDA_FREE_FRACTION = 0.5
"""Share of the device's free memory an auto-sized tile may take; the rest absorbs allocator slack."""

Region = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in input pixels, end-exclusive."""


@dataclass(frozen=True, slots=True)
class TiledResult:
    image: RGBImage
    tile: int
    """The tile side finally used (smaller than asked for after out-of-memory backoff)."""
    tiles: int


def grid(width: int, height: int, tile: int) -> list[Region]:
    """Regions of at most `tile`×`tile` covering the image, split evenly along each axis."""
    nx, ny = math.ceil(width / tile), math.ceil(height / tile)
    xs = [width * i // nx for i in range(nx + 1)]
    ys = [height * j // ny for j in range(ny + 1)]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(ny) for i in range(nx)]


def auto_tile(bytes_per_pixel: int, device: str = "cpu", fp16: bool = False, pad: int = 0,
              resident: int = 0) -> int:
    """The largest tile side whose activations, `pad` of context included, fit the device's budget (a
    multiple of 16). On the CPU, a network whose own `resident` bytes exceed MODEL_ALLOWANCE shrinks it."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        budget = int(free * CUDA_FREE_FRACTION)
        per_pixel = bytes_per_pixel // 2 if fp16 else bytes_per_pixel
    else:
        budget = CPU_ACTIVATION_BUDGET - max(0, resident - MODEL_ALLOWANCE)
        per_pixel = bytes_per_pixel
    side = (math.isqrt(max(budget // max(per_pixel, 1), 1)) - 2 * pad) // 16 * 16
    return max(MIN_TILE, min(MAX_AUTO_TILE, side))


_OUT_OF_MEMORY_TEXT = ("can't allocate memory", "out of memory", "CUDNN_STATUS_ALLOC_FAILED",
                       "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE")
"""Plain RuntimeErrors that mean memory ran out: torch's CPU allocator and ncnn (ours) say "can't allocate
memory"; cuDNN and cuBLAS report a failed workspace allocation under their own status names (not as
torch.OutOfMemoryError), which a nearly full device gives. A smaller tile helps in every case."""


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only a torch model can raise torch's error; never import it here
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OUT_OF_MEMORY_TEXT)


def _context(start: int, end: int, size: int, pad: int, pre_pad: int) -> tuple[int, int]:
    """The span a tile reads along one axis: `pad` of context, exactly `pre_pad` past an image edge."""
    low = -pre_pad if start == 0 else max(start - pad, -pre_pad)
    high = size + pre_pad if end == size else min(end + pad, size + pre_pad)
    return low, high


@dataclass(frozen=True)
class _Run:
    """The fixed inputs of one tiled_upscale call, so that tile helpers take one argument for them."""

    model: Callable[[Any], Any]
    image: RGBImage
    out: RGBImage
    scale: int
    pad: int
    pre_pad: int
    device: str
    fp16: bool
    channels_last: bool
    numpy_io: bool
    """The model takes and returns numpy arrays (the ncnn backend): no torch on this path."""
    transposed: bool = False
    """Average each tile's output with that of the transposed tile (see the module's docstring)."""

    def region(self, region: Region) -> None:
        """Run one tile and write its centre into the output buffer."""
        height, width = self.image.shape[:2]
        x0, y0, x1, y1 = region
        px0, px1 = _context(x0, x1, width, self.pad, self.pre_pad)
        py0, py1 = _context(y0, y1, height, self.pad, self.pre_pad)
        rows = np.clip(np.arange(py0, py1), 0, height - 1)
        cols = np.clip(np.arange(px0, px1), 0, width - 1)
        # Fancy indexing copies, which both backends need anyway: the input may be read-only.
        crop = self.image[rows[:, None], cols[None, :]]
        s = self.scale
        expected = (1, 3, (py1 - py0) * s, (px1 - px0) * s)
        oy, ox = (y0 - py0) * s, (x0 - px0) * s
        h, w = (y1 - y0) * s, (x1 - x0) * s
        if self.numpy_io:
            batch = np.empty((1, 3, py1 - py0, px1 - px0), dtype=np.float32)
            np.divide(crop.transpose(2, 0, 1), 255.0, out=batch[0], dtype=np.float32)
            result = self.model(batch)
            _check_shape(tuple(result.shape), expected)
            if self.transposed:
                flipped = self.model(np.ascontiguousarray(batch.swapaxes(2, 3)))
                _check_shape(tuple(flipped.shape[:2]) + tuple(flipped.shape[:1:-1]), expected)
                result = (np.clip(result, 0.0, 1.0) + np.clip(flipped, 0.0, 1.0).swapaxes(2, 3)) * 0.5
            # In place on the model's output (ours to change): clip(x, 0, 1) × 255 equals clip(x × 255, 0, 255)
            # exactly in float32, and the centre is rounded and cast straight into the output buffer.
            centre = result[0, :, oy : oy + h, ox : ox + w]
            np.multiply(centre, 255.0, out=centre)
            np.clip(centre, 0.0, 255.0, out=centre)
            np.rint(centre, out=centre)
            np.copyto(self.out[y0 * s : y1 * s, x0 * s : x1 * s], centre.transpose(1, 2, 0), casting="unsafe")
            return
        import torch

        device = torch.device(self.device)
        tensor = torch.from_numpy(crop).to(device, non_blocking=True).permute(2, 0, 1).unsqueeze(0)
        tensor = tensor.to(torch.float16 if self.fp16 else torch.float32).div_(255.0)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        output = self.model(tensor)
        _check_shape(tuple(output.shape), expected)
        if self.transposed:
            flipped = tensor.transpose(2, 3)
            flipped = self.model(flipped.contiguous(memory_format=torch.channels_last) if self.channels_last
                                 else flipped.contiguous())
            _check_shape(tuple(flipped.shape[:2]) + tuple(flipped.shape[:1:-1]), expected)
            output = output.clamp_(0.0, 1.0).add_(flipped.clamp_(0.0, 1.0).transpose(2, 3)).mul_(0.5)
        pixels = output[0, :, oy : oy + h, ox : ox + w].clamp_(0.0, 1.0).mul_(255.0).round_()
        self.out[y0 * s : y1 * s, x0 * s : x1 * s] = pixels.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _check_shape(shape: tuple[int, ...], expected: tuple[int, int, int, int]) -> None:
    if shape != expected:
        raise StepError(f"model returned {shape} for a tile that needs {expected}")


def tiled_upscale(
    model: Callable[[Any], Any],
    image: RGBImage,
    scale: int,
    *,
    tile: int,
    tile_pad: int,
    pre_pad: int = 0,
    device: str = "cpu",
    fp16: bool = False,
    channels_last: bool = False,
    progress: ProgressFn | None = None,
    min_tile: int = MIN_TILE,
    transposed: bool = False,
) -> TiledResult:
    """Upscale `image` ×`scale` with `model` (B×3×h×w in [0, 1] → B×3×sh×sw), tile by tile.

    A torch model must already be on `device` in the right dtype; call it under `torch.inference_mode()`.
    An ncnn model (models.ncnnrun.NcnnModule) gets numpy arrays, and torch is not imported.
    """
    from retouchd.models.ncnnrun import NcnnModule

    height, width = image.shape[:2]
    if tile < min_tile:
        raise StepError(f"tile {tile} is below the smallest tile {min_tile}; use a larger tile")
    out: RGBImage = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    run = _Run(model, image, out, scale, tile_pad, pre_pad, device, fp16, channels_last,
               isinstance(model, NcnnModule), transposed)
    queue = deque(grid(width, height, tile))
    done = 0
    if progress is not None:
        progress(0, len(queue))
    try:
        while queue:
            region = queue.popleft()
            x0, y0, x1, y1 = region
            if x1 - x0 > tile or y1 - y0 > tile:
                parts = [(x0 + a, y0 + b, x0 + c, y0 + d) for a, b, c, d in grid(x1 - x0, y1 - y0, tile)]
                queue.extendleft(reversed(parts))
                continue
            if not _attempt(run, region, f"{width}×{height} image on {device}"):
                # Out of memory. Outside the except block: the traceback no longer pins the tile's tensors.
                if device.startswith("cuda"):
                    import torch

                    torch.cuda.empty_cache()
                if tile // 2 < min_tile:
                    raise DeviceOutOfMemoryError(
                        f"{device} ran out of memory even with {tile}×{tile} tiles on a {width}×{height} "
                        "image; free device memory, lower slots_per_device or allow CPU fallback"
                    )
                tile //= 2
                queue.appendleft(region)
                continue
            done += 1
            if progress is not None:
                progress(done, done + len(queue))
    except BaseException:
        if isinstance(model, NcnnModule):
            model.release()
        raise
    if isinstance(model, NcnnModule):
        # The ncnn pools keep one tile's blocks between tiles; past the loop only while they and what the job
        # still allocates (refinement, a resize, the encoder's copies) fit the tile budget (NcnnModule.settle).
        model.settle(CPU_ACTIVATION_BUDGET - AFTER_TILES_OUTPUTS * out.nbytes)
    return TiledResult(out, tile, done)


def _attempt(run: _Run, region: Region, what: str) -> bool:
    """Run one tile; False if the device ran out of memory, StepError for any other failure."""
    try:
        run.region(region)
    except RetouchdError:
        raise
    except Exception as exc:
        if _is_out_of_memory(exc):
            return False
        raise StepError(
            f"super-resolution failed on tile {region} of a {what}: {type(exc).__name__}: {exc}; "
            'try a smaller tile or model = "lanczos"'
        ) from exc
    return True
