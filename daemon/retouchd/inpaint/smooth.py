"""Smooth regions filled smooth: the patch fill's coarse shading pulled toward a membrane fill where the
surroundings of the hole are smooth (bokeh, sky, a blurred background).

Patch search copies whole patches, so in a soft background the fill is a patchwork of shades, each
plausible, with the hard borders of a collage between them (a blue flower pasted into green bokeh, a
lighter wedge of sky). What a smooth background hides is best guessed smooth: the membrane (harmonic)
fill of the hole from its boundary. Here the fill keeps its own fine detail and grain, and only its
low frequencies (a Gaussian of `sigma`) move toward the membrane's, by `strength` where the known
pixels around the hole are flat, and less and less where they are busy (their mean gradient magnitude
against `activity`), where patch search has texture and structure to continue. There only the broadest
shading (a Gaussian of `busy_sigma`) moves, by `busy_share`: a wrong-shade patch fades, the texture stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from retouchd.inpaint.completion import known_half, push_pull
from retouchd.masks import box_around


@dataclass(frozen=True, slots=True)
class SmoothParams:
    """Tuning of the smooth-region blend; the defaults are what bench/inpaint_quality.py measured best on tune."""

    sigma: float = 8.0
    """Scale (pixels) below which the fill keeps its own detail."""
    strength: float = 0.75
    """Share of the low-frequency difference to the membrane fill taken where the surroundings are flat."""
    activity: float = 4.0
    """Mean gradient magnitude (0–255 units per pixel) of the surroundings at which the share falls to 1/e."""
    iters: int = 30
    """Jacobi sweeps per pyramid level of the membrane fill."""
    busy_share: float = 0.45
    """Share of the very coarse (`busy_sigma`) difference to the membrane taken where the surroundings are busy."""
    busy_sigma: float = 16.0
    """Scale (pixels) of the pull in busy surroundings: only the fill's broad shading moves, none of its texture."""


def membrane(feat: torch.Tensor, known: torch.Tensor, iters: int) -> torch.Tensor:
    """Harmonic fill of the unknown pixels of `feat` (C×H×W): coarse to fine, Jacobi sweeps at every level.

    The coarse level is the masked average (a coarse pixel is known when any of its pixels is), so each
    level starts close to the solution and a few sweeps settle it; exact where the hole is a few pixels wide.
    """
    if bool(known.all()) or not bool(known.any()):
        return push_pull(feat, known)
    if min(feat.shape[1:]) >= 4:
        mean, share = known_half(feat, known)
        coarse = membrane(mean, share > 0, iters)
        up = F.interpolate(coarse[None], size=feat.shape[1:], mode="bilinear", align_corners=False)[0]
    else:
        up = push_pull(feat, known)
    x = torch.where(known[None], feat, up)
    # Known pixels never change: the sweeps need only the unknown pixels' box and a 1 px ring (the same values).
    box_of_unknown = box_around(~known, 1)
    assert box_of_unknown is not None  # some pixel is unknown (checked above)
    rows, columns = box_of_unknown
    box, fixed, value = x[:, rows, columns], known[None, rows, columns], feat[:, rows, columns]
    for _ in range(iters):
        p = F.pad(box[None], (1, 1, 1, 1), mode="replicate")[0]
        box = torch.where(fixed, value, (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) / 4)
    x[:, rows, columns] = box
    return x


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of C×H×W, reflected at the border."""
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[0]
    mode = "reflect" if min(x.shape[1:]) > radius else "replicate"
    y = F.pad(x[None], (radius, radius, 0, 0), mode=mode)
    y = F.conv2d(y, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, radius, radius), mode=mode)
    return F.conv2d(y, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def surroundings_activity(rgb: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude of the known pixels near each hole pixel (H×W), spread into the hole.

    The magnitude is |∂x| + |∂y| (a slope of g per pixel along one axis gives g). Pixels within 2 px of
    the hole are left out: they may carry what the mask did not quite cover.
    """
    gray = rgb.mean(0, keepdim=True)
    p = F.pad(gray[None], (1, 1, 1, 1), mode="replicate")[0]
    mid = p[:, 1:-1, 1:-1]
    central = ((p[:, 1:-1, 2:] - p[:, 1:-1, :-2]).abs() + (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]).abs()) / 2
    # The central difference alone is blind to a two-pixel period (alternate rows of two colours).
    forward = (p[:, 1:-1, 2:] - mid).abs() + (p[:, 2:, 1:-1] - mid).abs()
    mag = (central + forward) / 2
    ring = ~(F.max_pool2d(hole[None, None].float(), 5, stride=1, padding=2)[0, 0] > 0)
    if not bool(ring.any()):
        return torch.zeros_like(hole, dtype=rgb.dtype)
    w = ring[None].to(rgb.dtype)
    local = gaussian(mag * w, 4.0) / gaussian(w, 4.0).clamp_min(1e-6)
    return push_pull(torch.where(ring[None], local, 0.0), ring)[0]


def blend_smooth(rgb: torch.Tensor, hole: torch.Tensor, filled: torch.Tensor, params: SmoothParams) -> torch.Tensor:
    """`filled` (3×H×W, equal to `rgb` outside `hole`) with its coarse shading moved toward the membrane fill
    where the hole's surroundings are smooth. Works on the hole's bounding box and a margin of 3·sigma."""
    if not bool(hole.any()) or bool(hole.all()) or (params.strength <= 0 and params.busy_share <= 0):
        return filled
    m = round(3 * max(params.sigma, params.busy_sigma if params.busy_share > 0 else 0.0)) + 8
    near = box_around(hole, m)
    assert near is not None  # the hole is not empty
    (y0, y1), (x0, x1) = (near[0].start, near[0].stop), (near[1].start, near[1].stop)
    h = hole[y0:y1, x0:x1]
    box = filled[:, y0:y1, x0:x1]
    known = ~h
    smooth = membrane(torch.where(known[None], rgb[:, y0:y1, x0:x1], 0.0), known, params.iters)
    # Both agree outside the hole, so the blur of the difference is the difference of the blurs.
    gap = torch.where(h[None], smooth - box, 0.0)
    share = params.strength * torch.exp(-surroundings_activity(rgb[:, y0:y1, x0:x1], h) / params.activity)
    pulled = box + share[None] * gaussian(gap, params.sigma)
    if params.busy_share > 0:
        # In busy texture a copied patch of the wrong shade (a lighter leaf in the dark) is the costly error;
        # its broad shading is pulled partway to the membrane, so the blotch fades and the texture stays.
        busy = 1 - share / params.strength if params.strength > 0 else torch.ones_like(share)
        pulled += busy[None] * params.busy_share * gaussian(gap, params.busy_sigma)
    out = filled.clone()
    out[:, y0:y1, x0:x1] = torch.where(h[None], pulled.clamp(0, 255), box)
    return out
