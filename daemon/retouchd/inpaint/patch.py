"""`patch`, the default engine: exemplar completion that copies texture from the crop; needs no weights."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from retouchd.inpaint.base import InpaintEngine, downscale, single_thread
from retouchd.inpaint.completion import complete, vote_upscaled
from retouchd.inpaint.patchmatch import Chord, Field, Params
from retouchd.inpaint.periodic import Lattice, PeriodParams, find_lattice
from retouchd.inpaint.smooth import SmoothParams, blend_smooth
from retouchd.inpaint.structure import StructureParams, find_lines, guides
from retouchd.inpaint.thin import ThinFill, ThinParams, thin_components
from retouchd.typing import Mask, RGBImage


class PatchEngine(InpaintEngine):
    """Multi-scale PatchMatch completion (see `completion` and `patchmatch`); runs on the job's torch device."""

    name: ClassVar[str] = "patch"
    min_margin: ClassVar[int] = 48
    max_margin: ClassVar[int] = 256
    margin_factor: ClassVar[float] = 1.0
    max_solve_pixels: ClassVar[int | None] = 1_000_000
    # Time grows with the hole; bigger holes are solved smaller and copied back at full size.
    max_hole_pixels: ClassVar[int | None] = 40_000
    # Known pixels leave the solver untouched, so there is no seam to blend.
    feather: ClassVar[int] = 0
    params: ClassVar[Params] = Params()
    thin: ClassVar[ThinParams | None] = ThinParams()
    """Thin components (strokes, scratches) go to the sparse DCT fill, which beats patch search on them."""
    structure: ClassVar[StructureParams | None] = StructureParams()
    """Straight edges crossing a hole guide the search (`structure`); None: patch search alone."""
    period: ClassVar[PeriodParams | None] = PeriodParams()
    """A pattern that repeats around the hole is continued in phase (`periodic`); None: no period detector."""
    smooth: ClassVar[SmoothParams | None] = SmoothParams()
    """Where the hole's surroundings are smooth, the fill's coarse shading follows a membrane fill (`smooth`)."""

    def fill(self, rgb: RGBImage, mask: Mask) -> RGBImage:
        """Strokes first with the thin fill, then the wide components by patch search around them."""
        if self.thin is not None:
            thin = thin_components(mask, self.thin.max_radius)
            if thin.any():
                # Silent: the wide pass reports the job's progress, and a count that restarts would confuse.
                rgb = ThinFill(dataclasses.replace(self.ctx, progress=_no_progress)).fill(rgb, thin)
                mask = mask & ~thin
                if not mask.any():
                    return rgb
        return super().fill(rgb, mask)

    def solve(self, rgb: RGBImage, hole: Mask) -> RGBImage:
        device = self.torch_device()
        with single_thread(device), torch.inference_mode():
            hole_t = torch.from_numpy(hole).to(device)
            rgb_t = _to_tensor(rgb, device)
            guided = self._guides(rgb, hole, device)
            filled, _ = complete(rgb_t, hole_t, self.params, *guided, *self._lattice(rgb, hole))
            return _merge(rgb, hole, self._smoothed(rgb_t, hole_t, filled))

    def solve_scaled(self, rgb: RGBImage, hole: Mask, scale: float) -> RGBImage:
        """Solve a shrunk crop, then copy full-size patches along the enlarged field: sharp, bounded memory."""
        device = self.torch_device()
        small, small_hole = downscale(rgb, hole, scale)
        field: Field | None
        with single_thread(device), torch.inference_mode():
            small_t, small_hole_t = _to_tensor(small, device), torch.from_numpy(small_hole).to(device)
            # Only the field is kept: the seam step and the grain of the small fill would be thrown away.
            search_only = dataclasses.replace(self.params, seam=False, grain=0.0)
            guided = self._guides(small, small_hole, device)
            _, field = complete(small_t, small_hole_t, search_only, *guided, *self._lattice(small, small_hole))
            if field is not None:
                full_hole = torch.from_numpy(hole).to(device)
                rgb_t = _to_tensor(rgb, device)
                filled = vote_upscaled(rgb_t, full_hole, field, self.params)
                return _merge(rgb, hole, self._smoothed(rgb_t, full_hole, filled))
        return super().solve_scaled(rgb, hole, scale)

    def _smoothed(self, rgb: torch.Tensor, hole: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        return filled if self.smooth is None else blend_smooth(rgb, hole, filled, self.smooth)

    def _lattice(self, rgb: RGBImage, hole: Mask) -> tuple[Lattice, PeriodParams | None]:
        """The lattice of a periodic pattern around the hole (`periodic`), if any, and its tuning."""
        if self.period is None:
            return (), None
        return find_lattice(rgb, hole, self.period), self.period

    def _guides(self, rgb: RGBImage, hole: Mask, device: torch.device) -> tuple[torch.Tensor | None, tuple[Chord, ...]]:
        """Guide channels and chords of the straight edges that cross the hole (`structure`), if any."""
        if self.structure is None:
            return None, ()
        lines = find_lines(rgb, hole, self.structure)
        if not lines:
            return None, ()
        chords = tuple((ln.py, ln.px, ln.dy, ln.dx, ln.t0, ln.t1) for ln in lines)
        return torch.from_numpy(guides(hole.shape, lines, self.structure)).to(device), chords


def _no_progress(done: int, total: int) -> None:
    """Progress sink of the thin pass: ignore."""


def _to_tensor(rgb: RGBImage, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float()


def _merge(rgb: RGBImage, hole: Mask, filled: torch.Tensor) -> RGBImage:
    values = filled.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.where(hole[..., None], values, rgb)
