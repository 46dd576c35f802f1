"""A second opinion on the fill's shading: the hole's low frequencies averaged with a second, independent fill.

In busy texture (grass, leaves, a forest floor) patch search copies plausible texture whose local brightness
is a guess: half or more of the hole's squared error is low-frequency (bench/inpaint_causes.py), and the
guess of one search is as good as that of another with a different seed. Two independent guesses averaged
err less than either. The second fill is solved at half resolution, where it costs about a quarter of the
first, and only its shading above `sigma` is used; the first fill keeps all its detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from retouchd.inpaint.smooth import gaussian


@dataclass(frozen=True, slots=True)
class EnsembleParams:
    """Tuning of the second opinion; the defaults are what bench/inpaint_quality.py measured best on tune."""

    share: float = 0.5
    """Weight of the second fill's shading (0: the first fill alone; 0.5: the plain average)."""
    sigma: float = 8.0
    """Scale (pixels) above which shading is averaged; finer detail is the first fill's alone. At 4 px the
    hole PSNR gained a little more on tune photos, but the texture ratio fell by 0.02–0.04; at 8 px it holds."""
    scale: float = 0.5
    """Resolution of the second fill, as a fraction of the crop's."""
    seed_offset: int = 1
    """The second search's seed is the first's plus this (another seed: another, independent guess)."""


def blend_shading(
    hole: torch.Tensor, filled: torch.Tensor, other: torch.Tensor, other_hole: torch.Tensor, params: EnsembleParams
) -> torch.Tensor:
    """`filled` (3×H×W) with its shading above `sigma` moved `share` of the way to that of `other`, a fill of
    the same crop at a smaller size whose hole is `other_hole`.

    The two are compared on `other`'s grid (`filled` area-averaged to it), where a pattern finer than that
    grid averages out in both alike; the difference is enlarged and blurred, and only the hole changes.
    """
    down = F.interpolate(filled[None], size=other_hole.shape, mode="area")[0]
    diff = torch.where(other_hole[None], other - down, 0.0)
    up = F.interpolate(diff[None], size=hole.shape, mode="bilinear", align_corners=False)[0]
    low = gaussian(up, params.sigma)
    return torch.where(hole[None], (filled + params.share * low).clamp(0, 255), filled)
