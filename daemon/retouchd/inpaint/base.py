"""The work every inpainting engine shares: crops around mask components, scale, paste-back.

An engine only fills the hole of one crop (`solve`). The base finds the mask's connected components,
gives each a crop with a generous margin (merging crops that overlap), solves very large crops at a
reduced scale, and pastes back only the masked pixels, feathered outward at the edge. Memory therefore
follows the crop, not the image.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from retouchd.exceptions import ConfigError, DeviceOutOfMemoryError, ModelError
from retouchd.typing import Mask, RGBImage

if TYPE_CHECKING:
    import torch

    from retouchd.steps.base import StepContext

_NOTHING_TO_COPY = 128
"""Grey for a crop that is all hole: there is no pixel to continue."""


@dataclass(frozen=True, slots=True)
class Box:
    """A half-open pixel rectangle [x0, x1) × [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def union(self, other: Box) -> Box:
        return Box(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1))


@dataclass(frozen=True, slots=True)
class Group:
    """Mask components solved together in one crop."""

    box: Box
    labels: tuple[int, ...]


class InpaintEngine(abc.ABC):
    """Base of the engines. Subclasses set `name` and the crop policy and implement `solve`."""

    name: ClassVar[str]
    min_margin: ClassVar[int] = 48
    max_margin: ClassVar[int] = 256
    margin_factor: ClassVar[float] = 1.0
    """Margin around a component, as a fraction of its longer side, clipped to [min_margin, max_margin]."""
    max_solve_pixels: ClassVar[int | None] = None
    """Crops larger than this are solved at a reduced scale, then refined; None: never."""
    max_hole_pixels: ClassVar[int | None] = None
    """Holes larger than this are solved at a reduced scale, then refined; None: never."""
    feather: ClassVar[int] = 2
    """Width in pixels of the outward blend between filled and original pixels."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.device = ctx.device

    @classmethod  # noqa: B027 - an optional hook: most engines need nothing
    def preflight(cls, engines: dict[str, str]) -> None:
        """Raise ConfigError when something the engine needs is missing. Default: needs nothing."""

    @abc.abstractmethod
    def solve(self, rgb: RGBImage, hole: Mask) -> RGBImage:
        """Fill `hole` in one crop and return the crop; pixels outside the hole are not pasted back."""

    def solve_scaled(self, rgb: RGBImage, hole: Mask, scale: float) -> RGBImage:
        """Solve a large crop at `scale` (< 1), then bring the fill back to full size.

        The default refinement is a bicubic enlargement of the fill; engines that can do better override it.
        """
        import cv2

        small, small_hole = downscale(rgb, hole, scale)
        filled = self.solve(small, small_hole)
        up = cv2.resize(filled, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)
        return np.where(hole[..., None], up, rgb)

    def fill(self, rgb: RGBImage, mask: Mask) -> RGBImage:
        """Fill every masked pixel of a whole image, one crop at a time."""
        import cv2

        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        groups = self.plan(stats[1:count], rgb.shape[1], rgb.shape[0])
        out = rgb.copy()
        done = np.zeros(mask.shape, dtype=bool)
        for index, group in enumerate(groups):
            sl = group.box.slices
            crop = out[sl]
            hole = mask[sl] & ~done[sl]
            own = np.isin(labels[sl], group.labels)
            result = self._solve_crop(crop.copy(), hole)
            paste(crop, result, own, self.feather)
            done[sl] |= own
            self.ctx.progress(index + 1, len(groups))
        return out

    def plan(self, stats: np.ndarray, width: int, height: int) -> list[Group]:
        """Crops for the components (OpenCV stats rows), merged while they overlap and stay small enough."""
        groups: list[Group] = []
        for label, (x, y, w, h, _area) in enumerate(stats.tolist(), start=1):
            margin = round(min(self.max_margin, max(self.min_margin, self.margin_factor * max(w, h))))
            box = Box(max(0, x - margin), max(0, y - margin), min(width, x + w + margin), min(height, y + h + margin))
            groups.append(Group(box, (label,)))
        limit = self.max_solve_pixels
        changed = True
        while changed:
            changed = False
            kept: list[Group] = []
            for group in groups:
                for k, other in enumerate(kept):
                    union = group.box.union(other.box)
                    fits = limit is None or union.area <= max(limit, group.box.area, other.box.area)
                    if fits and group.box.overlaps(other.box):
                        kept[k] = Group(union, other.labels + group.labels)
                        changed = True
                        break
                else:
                    kept.append(group)
            groups = kept
        return groups

    def _solve_crop(self, crop: RGBImage, hole: Mask) -> RGBImage:
        if not hole.any():
            return crop
        if hole.all():
            return np.full_like(crop, _NOTHING_TO_COPY)
        scale = 1.0
        if self.max_solve_pixels is not None:
            scale = min(scale, (self.max_solve_pixels / (crop.shape[0] * crop.shape[1])) ** 0.5)
        if self.max_hole_pixels is not None:
            scale = min(scale, (self.max_hole_pixels / int(hole.sum())) ** 0.5)
        try:
            return self.solve_scaled(crop, hole, scale) if scale < 1 else self.solve(crop, hole)
        except Exception as exc:
            if not _is_device_oom(exc):
                raise
            if self.device == "cpu" or not self.ctx.allow_cpu_fallback:
                raise DeviceOutOfMemoryError(
                    f"{self.name} inpainting ran out of memory on {self.device} for a {crop.shape[1]}×"
                    f"{crop.shape[0]} crop; free device memory or allow CPU fallback",
                ) from exc
            self.ctx.log.warning("inpaint_cpu_fallback", engine=self.name, device=self.device)
            self.device = "cpu"
            return self._solve_crop(crop, hole)

    def torch_device(self) -> torch.device:
        """The torch device for this engine; CUDA that is not there falls back to CPU if allowed."""
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            if not self.ctx.allow_cpu_fallback:
                raise ModelError(f"device {self.device} is not available; fix `devices` or allow CPU fallback")
            self.device = "cpu"
        return torch.device(self.device)


@contextmanager
def single_thread(device: torch.device | None = None) -> Iterator[None]:
    """Run torch's CPU work on one thread, then restore the worker's setting (nothing to do on a GPU `device`).

    Fills are many small gathers and products; on 2 shared cores a second intra-op thread mostly waits: 768×512
    with a 5 % hole took 1.9 s of CPU on one thread and 9–14 s on two (bench/inpaint_quality.py).
    """
    import torch

    if device is not None and device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def require_model_file(engine: str, engines: dict[str, str], what: str) -> Path:
    """The configured file of a weights-based engine; ConfigError when it is not set or not there."""
    configured = engines.get(engine)
    if not configured:
        raise ConfigError(
            f"inpaint engine {engine!r} needs {what}, and none is configured; set engines.{engine} to its path "
            f"in the configuration, or use engine = \"patch\", which needs no weights"
        )
    path = Path(configured).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"inpaint engine {engine!r}: {path} does not exist or is not a file; it should be {what}. "
            f"Fix engines.{engine} in the configuration"
        )
    return path


def downscale(rgb: RGBImage, hole: Mask, scale: float) -> tuple[RGBImage, Mask]:
    """Area-shrink a crop; a small pixel that covers any hole pixel is hole, so no masked content remains."""
    import cv2

    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    small = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    small_hole = np.asarray(cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0)
    return small, small_hole


def paste(dst: RGBImage, src: RGBImage, own: Mask, feather: int) -> None:
    """Write `src` into `dst` on `own`, blending over `feather` pixels outside it."""
    import cv2

    if feather <= 0:
        dst[own] = src[own]
        return
    distance = cv2.distanceTransform((~own).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    alpha = np.clip(1.0 - distance / (feather + 1), 0.0, 1.0)
    band = (alpha > 0) & ~own
    dst[own] = src[own]
    a = alpha[band][:, None]
    dst[band] = np.rint(a * src[band] + (1 - a) * dst[band]).astype(np.uint8)


def _is_device_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)
