"""Named types shared across the package: the one image convention of the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

RGBImage: TypeAlias = npt.NDArray[np.uint8]
"""H×W×3 RGB, uint8, C-contiguous: the only colour image type inside the pipeline."""

Alpha: TypeAlias = npt.NDArray[np.uint8]
"""H×W opacity, uint8, carried beside the colour image."""

Mask: TypeAlias = npt.NDArray[np.bool_]
"""H×W, True where pixels are to be filled in."""

MetricValue: TypeAlias = float | int | str | bool | None
Metrics: TypeAlias = dict[str, MetricValue]

ProgressFn: TypeAlias = Callable[[int, int], None]
"""progress(done, total): reported by long steps (tiles done / total)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """An image between decode and encode: colour plus optional alpha of the same size."""

    rgb: RGBImage
    alpha: Alpha | None = None

    def __post_init__(self) -> None:
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise TypeError(f"Frame.rgb must be H×W×3 uint8, got {self.rgb.dtype} {self.rgb.shape}")
        if self.alpha is not None and self.alpha.shape != self.rgb.shape[:2]:
            raise TypeError(f"Frame.alpha shape {self.alpha.shape} != image {self.rgb.shape[:2]}")

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


class ModelCache(Protocol):
    """Per-worker cache of loaded models, keyed by a string the caller chooses."""

    def get(self, key: str, load: Callable[[], object]) -> object: ...
