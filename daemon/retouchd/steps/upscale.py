"""`upscale`: enlarge ×N with a super-resolution network (or Lanczos), tiled, then resample to the exact size.

Any scale in (1, 8]: the network runs at its native scale(s) and a high-quality resample makes the exact
size. Alpha is resampled on its own. Importing this module imports no torch; running a network does.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, ClassVar, cast

import numpy as np

from retouchd import degradation
from retouchd.colourlevel import match_levels
from retouchd.exceptions import DeviceOutOfMemoryError, LimitError
from retouchd.models.registry import is_weights_path, native_scales
from retouchd.steps.base import Step, StepContext, StepResult
from retouchd.steps.options import StepOptions, UpscaleOptions
from retouchd.steps.upscale_jpeg import Choice, choose, load_noise_aware, refine
from retouchd.tiling import auto_tile, tiled_upscale
from retouchd.typing import Alpha, Frame, Metrics, RGBImage

if TYPE_CHECKING:
    from retouchd.models.registry import SRNet

PRE_PAD = 2
"""Border pixels repeated around the image: measured +0.2 to +1.3 dB PSNR-Y for `fast` on small photos
(the network's zero padding darkens the rim otherwise), for about 1 % more work on a 1000-px image."""


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def plan_passes(natives: tuple[int, ...], scale: float) -> tuple[int, ...]:
    """Native scales to run, in order, before the final resample to `scale`.

    One pass with the smallest native scale that reaches `scale`. Beyond the largest, a model with several
    native scales chains two passes (the smallest product that reaches `scale`, smaller pass first: it is
    the cheaper order); a single-scale network is not chained, because running it on its own output costs
    scale² times more and invents texture, so Lanczos makes up the rest.
    """
    reaching = [n for n in natives if n >= scale]
    if reaching:
        return (min(reaching),)
    pairs = [(a, b) for a, b in itertools.product(natives, repeat=2) if a * b >= scale and a <= b]
    if len(natives) > 1 and pairs:
        return min(pairs, key=lambda pair: (pair[0] * pair[1], pair[0]))
    return (max(natives),)


def _cv2_resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return np.asarray(cv2.resize(array, size, interpolation=cv2.INTER_LANCZOS4))


def _pil_resize(array: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    from PIL import Image

    out = Image.fromarray(array, mode).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(out, dtype=np.uint8).copy()


def resample_rgb(rgb: RGBImage, size: tuple[int, int]) -> RGBImage:
    """High-quality Lanczos resample of an RGB image to `size` = (width, height).

    Enlarging goes through OpenCV straight into one numpy buffer (Pillow would hold the result twice, as
    padded RGBX and as bytes); shrinking goes through Pillow, whose Lanczos widens with the ratio and so
    does not alias.
    """
    height, width = rgb.shape[:2]
    if size[0] >= width and size[1] >= height:
        return _cv2_resize(np.ascontiguousarray(rgb), size)
    return _pil_resize(rgb, size, "RGB")


def resample_alpha(alpha: Alpha, size: tuple[int, int]) -> Alpha:
    height, width = alpha.shape[:2]
    if size[0] >= width and size[1] >= height:
        return _cv2_resize(np.ascontiguousarray(alpha), size)
    return _pil_resize(alpha, size, "L")


def _prepare(net: SRNet, device: str, fp16: bool) -> SRNet:
    """Move a freshly loaded network to its device and dtype, in the layout oneDNN / cuDNN run fastest."""
    if net.backend != "torch":
        return net
    import torch

    module = net.module.to(torch.device(device), memory_format=torch.channels_last)
    module = module.half() if fp16 else module.float()
    module.eval().requires_grad_(False)
    return net


def _inference_mode(net: SRNet) -> AbstractContextManager[object]:
    if net.backend != "torch":
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


class UpscaleStep(Step[UpscaleOptions]):
    name = "upscale"
    options_model: ClassVar[type[StepOptions]] = UpscaleOptions

    def run(self, frame: Frame, ctx: StepContext) -> StepResult:
        size = target_size(frame.width, frame.height, self.options.scale)
        self._check_pixels(size, ctx, "output")
        metrics: Metrics = {"scale": self.options.scale, "model": self.options.model,
                            "width": size[0], "height": size[1]}
        if self.options.model == "lanczos":
            rgb = resample_rgb(frame.rgb, size)
            metrics.update(native_scale=1, device="cpu", fp16=False)
        else:
            found = degradation.estimate(frame.rgb, ctx.source)
            metrics.update(found.metrics())
            choice = choose(found, plan_passes(native_scales(self.options.model), self.options.scale)[0]) \
                if self.options.model == "fast" else None
            rgb = self._super_resolve(frame.rgb, size, ctx, metrics, choice)
            # A network may shift colour levels (x4plus darkened a JPEG crop by ~7): keep the input's.
            rgb, shift = match_levels(frame.rgb, rgb, in_place=True)  # rgb is this step's own new array
            metrics["level_shift_fixed"] = round(shift, 2)
        alpha = resample_alpha(frame.alpha, size) if frame.alpha is not None else None
        return StepResult(Frame(rgb, alpha), metrics)

    def _check_pixels(self, size: tuple[int, int], ctx: StepContext, what: str) -> None:
        pixels = size[0] * size[1]
        if pixels > ctx.max_output_pixels:
            raise LimitError(
                f"{what} would be {size[0]}×{size[1]} = {pixels:,} pixels, over max_output_pixels "
                f"{ctx.max_output_pixels:,}; lower the rule's scale or raise limits.max_output_pixels",
                step=self.name,
            )

    def _network(
        self, scale: int | None, device: str, fp16: bool, ctx: StepContext, noise_aware: bool = False
    ) -> SRNet:
        from retouchd.models.registry import load_network

        model = "fast-jpeg" if noise_aware else self.options.model
        key = f"upscale:{model}:x{scale}:{device}:{'fp16' if fp16 else 'fp32'}"
        threads = ctx.cpu_threads or (os.cpu_count() or 1)
        if noise_aware:  # the JPEG path's srmd_x* files take the degradation code as input channels
            assert scale is not None
            return cast("SRNet", ctx.models.get(
                key, lambda: _prepare(load_noise_aware(scale, device=device, threads=threads), device, fp16)))

        def load() -> SRNet:
            net = load_network(model, scale, device=device, threads=threads, backend="auto")
            if net.backend == "torch" and ctx.cpu_threads > 0:  # before its first forward pass
                import torch

                torch.set_num_threads(ctx.cpu_threads)
            return _prepare(net, device, fp16)

        return cast("SRNet", ctx.models.get(key, load))

    def _super_resolve(
        self, rgb: RGBImage, size: tuple[int, int], ctx: StepContext, metrics: Metrics, choice: Choice | None
    ) -> RGBImage:
        if ctx.cpu_threads > 0 and "torch" in sys.modules:  # the ncnn backend takes its threads at load
            sys.modules["torch"].set_num_threads(ctx.cpu_threads)
        try:
            return self._on_device(rgb, size, ctx, ctx.device, metrics, choice)
        except DeviceOutOfMemoryError as exc:
            if ctx.device == "cpu" or not ctx.allow_cpu_fallback:
                raise
            ctx.log.warning("upscale_cpu_fallback", device=ctx.device, error=str(exc))
            metrics["cpu_fallback"] = True
            return self._on_device(rgb, size, ctx, "cpu", metrics, choice)

    def _on_device(
        self, rgb: RGBImage, size: tuple[int, int], ctx: StepContext, device: str, metrics: Metrics,
        choice: Choice | None,
    ) -> RGBImage:
        opts = self.options
        fp16 = device.startswith("cuda") and opts.fp16 in (True, "auto")
        if is_weights_path(opts.model):
            natives: tuple[int, ...] = (self._network(None, device, fp16, ctx).scale,)
        else:
            natives = native_scales(opts.model)
        passes = plan_passes(natives, opts.scale)
        height, width = rgb.shape[:2]
        for index in range(len(passes)):
            factor = int(np.prod(passes[: index + 1]))
            self._check_pixels((width * factor, height * factor), ctx, f"the ×{factor} intermediate")
        image, tiles, tile_used, offset, backend = rgb, 0, None, 0, "torch"

        def progress(done: int, total: int) -> None:
            ctx.progress(offset + done, offset + total)

        for index, native in enumerate(passes):
            # Only the first pass sees the compressed input; a second pass enlarges a clean network output.
            coded = choice if index == 0 and choice is not None and choice.files == "srmd" else None
            net = self._network(None if is_weights_path(opts.model) else native, device, fp16, ctx, coded is not None)
            pad = net.receptive_radius if opts.tile_pad == "auto" else opts.tile_pad
            tile = opts.tile if isinstance(opts.tile, int) else auto_tile(net.bytes_per_pixel, device, fp16, pad,
                                                                              net.resident_bytes)
            if coded is not None and net.backend == "ncnn":
                module = net.module
                module.code = coded.code  # folded into the first convolution (models/ncnnrun.py)
            elif coded is not None:
                from retouchd.models.srmd import with_code

                module = with_code(net.module, coded.code)
            else:
                module = net.module
            with _inference_mode(net):
                result = tiled_upscale(
                    module, image, net.scale, tile=tile, tile_pad=pad, pre_pad=PRE_PAD, device=device,
                    fp16=fp16, channels_last=True, progress=progress,
                    transposed=index == 0 and choice is not None and choice.transposed,
                )
            image, tiles, offset = result.image, tiles + result.tiles, offset + result.tiles
            if coded is not None:
                image = refine(rgb, image, coded)
            tile_used = result.tile if tile_used is None else min(tile_used, result.tile)
            backend = net.backend
        if image.shape[:2] != (size[1], size[0]):
            image = resample_rgb(image, size)
        metrics.update(native_scale=int(np.prod(passes)), passes="×".join(map(str, passes)), tile=tile_used,
                       tiles=tiles, device=device, fp16=fp16, backend=backend,
                       **(choice.metrics() if choice is not None else {}))
        return image
