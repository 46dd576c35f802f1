"""Coarse-to-fine exemplar completion of one crop, and the full-size refinement of a reduced-scale solve.

The pyramid halves the crop until the hole is thinner than a patch. The coarsest level starts from a
smooth fill and a random field; every finer level starts by copying full-resolution patches along the
enlarged coarser field, then alternates search and vote (`patchmatch.Level`). Two texture channels
(local mean absolute gradient, after Newson et al. 2014) travel with the colour, so smooth patches do
not win over textured ones just because the first estimate of the hole is smooth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from retouchd.inpaint.patchmatch import Chord, Field, Level, Params, box_max
from retouchd.inpaint.periodic import Lattice, PeriodParams, lattice_candidates, scaled
from retouchd.masks import box_around

GRAIN_RING = 16
"""Width (pixels) of the known ring around a hole whose median grain energy is the typical grain."""
GRAIN_CAP = 4.0
"""Grain energy above this many times the ring's median is an edge's, not grain (see `add_grain`)."""


def push_pull(feat: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Smooth membrane fill of unknown pixels from a pyramid of masked averages."""
    if bool(known.all()):
        return feat
    if not bool(known.any()):
        return torch.full_like(feat, 128.0)
    mean, share = known_half(feat, known)
    coarse = push_pull(mean, share > 0)
    up = F.interpolate(coarse[None], size=feat.shape[1:], mode="bilinear", align_corners=False)[0]
    return torch.where(known[None], feat, up)


def half_mean(x: torch.Tensor) -> torch.Tensor:
    """`F.avg_pool2d(x, 2, ceil_mode=True)` (N×C×H×W) from four strided views: the same bits (the same sum, in the
    same order; an odd edge's window averages its pixels only), at a third of the CPU pool's time."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))
    total = x[..., 0::2, 0::2] + x[..., 0::2, 1::2]
    total += x[..., 1::2, 0::2]
    total += x[..., 1::2, 1::2]
    if not (h % 2 or w % 2):
        return total / 4
    count = torch.full(total.shape[-2:], 4.0, dtype=total.dtype, device=total.device)
    count[-1] /= 1 + h % 2
    count[:, -1] /= 1 + w % 2
    return total / count


def known_half(feat: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half size (C×H×W): each 2×2 window's mean over its `known` pixels (0 where none is), and the share of the
    window that is known."""
    k = known[None, None].float()
    share = half_mean(k)
    return (half_mean(feat[None] * k) / share.clamp_min(1e-8))[0], share[0, 0]


def downsample(feat: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half size; averages only known pixels, so nothing of the hole reaches a coarse known pixel."""
    mean, share = known_half(feat, ~hole)
    coarse_hole = share < 0.5
    return mean * (~coarse_hole)[None], coarse_hole


def texture_features(rgb: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Local mean absolute gradients (2 channels); the hole gets a smooth guess that voting replaces."""
    gray = push_pull(rgb, ~hole).mean(0, keepdim=True)
    gx = F.pad((gray[:, :, 1:] - gray[:, :, :-1]).abs(), (0, 1, 0, 0), mode="replicate")
    gy = F.pad((gray[:, 1:, :] - gray[:, :-1, :]).abs(), (0, 0, 0, 1), mode="replicate")
    return F.avg_pool2d(torch.cat([gx, gy])[None], 5, stride=1, padding=2, count_include_pad=False)[0]


def pyramid(feat: torch.Tensor, hole: torch.Tensor, params: Params) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Levels from fine to coarse, down to where the hole is thinner than a patch."""
    r = params.patch // 2
    levels = [(feat, hole)]
    while True:
        f, h = levels[-1]
        if min(h.shape) < 2 * params.min_side:
            break
        eroded = -box_max(-h[None, None].float(), params.patch, r)
        if not bool((eroded > 0).any()):
            break
        cf, ch = downsample(f, h)
        known = box_max(ch[None, None].float(), params.patch, r)[0, 0] == 0
        if int(known.sum()) < max(64, int(ch.sum())):
            break
        levels.append((cf, ch))
    return levels


def scaled_guess(coarse: Field, level: Level) -> tuple[torch.Tensor, torch.Tensor]:
    """Source guesses for `level` from a coarser field: each target takes its coarse pixel's offset, scaled."""
    ch, cw = coarse.shape
    fy, fx = ch / level.h, cw / level.w
    grid_y = torch.full(coarse.shape, -1, dtype=torch.long, device=level.ty.device)
    grid_x = torch.full_like(grid_y, -1)
    grid_y[coarse.ty, coarse.tx] = coarse.sy
    grid_x[coarse.ty, coarse.tx] = coarse.sx
    cy = ((level.ty.float() + 0.5) * fy).long().clamp(0, ch - 1)
    cx = ((level.tx.float() + 0.5) * fx).long().clamp(0, cw - 1)
    gy, gx = grid_y[cy, cx], grid_x[cy, cx]
    has = gy >= 0
    sy = torch.where(has, level.ty + ((gy - cy).float() / fy).round().long(), level.ty)
    sx = torch.where(has, level.tx + ((gx - cx).float() / fx).round().long(), level.tx)
    return sy, sx


def complete(
    rgb: torch.Tensor,
    hole: torch.Tensor,
    params: Params,
    guides: torch.Tensor | None = None,
    lines: tuple[Chord, ...] = (),
    lattice: Lattice = (),
    period: PeriodParams | None = None,
) -> tuple[torch.Tensor, Field | None]:
    """Fill `hole` (H×W bool) of `rgb` (3×H×W float, 0–255); returns the image and the finest field.

    `guides` (K×H×W, known in the hole too; see `structure`) are matched like colour but never voted;
    the search also tries sources along `lines` (full-size coordinates), past the hole, and whole periods of
    `lattice` (full-size pixels; see `periodic`) away.
    The field is None when the crop has no fully known patch to copy from; the hole then gets a smooth fill.
    """
    device = rgb.device
    gen = torch.Generator(device=device).manual_seed(params.seed)
    feat = torch.cat([rgb, params.texture_weight * texture_features(rgb, hole)])
    fixed = 0 if guides is None else int(guides.shape[0])
    if guides is not None and fixed:
        feat = torch.cat([feat, guides])
    levels = pyramid(feat, hole, params)
    if fixed:
        assert guides is not None
        # Guides are known everywhere: every level gets a plain average, hole included.
        g = guides
        for i in range(1, len(levels)):
            g = half_mean(g[None])[0]
            levels[i] = (torch.cat([levels[i][0][:-fixed], g]), levels[i][1])
    result: torch.Tensor | None = None
    previous: Field | None = None
    in_phase = False
    for depth in range(len(levels) - 1, -1, -1):
        f, h = levels[depth]
        free = f.shape[0] - fixed
        if result is None:
            f = torch.cat([push_pull(f[:free], ~h), f[free:]])
        else:
            up = F.interpolate(result[None, :free], size=h.shape, mode="bilinear", align_corners=False)[0]
            f = torch.cat([torch.where(h[None], up, f[:free]), f[free:]])
        zoom = h.shape[0] / hole.shape[0]
        chords = tuple((py * zoom, px * zoom, dy, dx, t0 * zoom, t1 * zoom) for py, px, dy, dx, t0, t1 in lines)
        level_lattice = scaled(lattice, zoom, period.min_period) if period is not None else ()
        penalty = period.penalty if period is not None else 0.0
        level = Level(f, h, params, fixed, chords, level_lattice, penalty)
        if not level.searchable:
            result, previous = level.unpadded(), None
            continue
        level.prepare_search()
        if previous is None:
            level.set_field(
                (torch.rand(len(level.ty), generator=gen, device=device) * level.h).long(),
                (torch.rand(len(level.ty), generator=gen, device=device) * level.w).long(),
            )
        else:
            # Copy full-resolution patches along the coarse field first: a sharp start, not a blurred one.
            level.set_field(*scaled_guess(previous, level))
            level.vote()
        if level.lattice and not in_phase:
            # The first level that sees the period starts in phase: each target copies the nearest source
            # a whole number of periods away, and the search refines from there.
            level.set_field(*_nearest_in_phase(level))
            level.vote()
            in_phase = True
        rounds = round(params.fine_em + (params.coarse_em - params.fine_em) * depth / max(1, len(levels) - 1))
        for i in range(rounds):
            level.search(params.pm_iters + (2 if previous is None and i == 0 else 0), gen)
            level.vote()
        if depth == 0 and params.seam:
            level.remove_seam(push_pull)
        result, previous = level.unpadded(), level.field()
    assert result is not None
    if params.grain > 0:
        return add_grain(result[:3], hole, params.grain, gen), previous
    return result[:3], previous


def _nearest_in_phase(level: Level) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target, the closest of its lattice candidates (`periodic.lattice_candidates`)."""
    ys, xs = lattice_candidates(level.lattice, level.ty, level.tx, level.src_ok, (level.ty, level.tx))
    far = (ys - level.ty[None]).square() + (xs - level.tx[None]).square()
    far = torch.where(far == 0, torch.iinfo(far.dtype).max, far)
    pick = far.argmin(0, keepdim=True)
    return ys.gather(0, pick)[0], xs.gather(0, pick)[0]


def _highpass_energy(rgb: torch.Tensor) -> torch.Tensor:
    """Per-pixel local energy (7×7 mean) of what a 3×3 box blur removes: the image's fine grain."""
    fine = rgb - box_mean(F.pad(rgb[None], (1, 1, 1, 1), mode="replicate"), 3)[0]
    return box_mean(F.pad(fine.square()[None], (3, 3, 3, 3), mode="replicate"), 7)[0]


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """`F.avg_pool2d(x, size, stride=1)` as two 1-D passes: the same values up to float rounding."""
    return _running_mean(_running_mean(x, size, 2), size, 3)


def _running_mean(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """The mean of every `size` consecutive entries along `dim`: the bits of a (size, 1) `F.avg_pool2d` (the same
    sum, left to right), at a fifth of its time (torch's CPU pool: 20 ms for 3 px over 3×822×887, one core)."""
    n = x.shape[dim] - size + 1
    total = x.narrow(dim, 0, n).clone()
    for i in range(1, size):
        total += x.narrow(dim, i, n)
    return total / size


def add_grain(rgb: torch.Tensor, hole: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Give a fill that came out smoother than its surroundings their grain back (sensor noise in a sky).

    Votes average several sources, which also averages their noise away: a sky fill ends up cleaner than
    the sky. The grain energy of the known pixels is spread over the hole (membrane fill) and the missing
    part is added as white noise, scaled by `amount` (1: all of it; less keeps some PSNR).
    """
    if not bool(hole.any()) or bool(hole.all()):
        return rgb
    energy = _highpass_energy(rgb)
    # The ring's max pools reach GRAIN_RING px from the hole: the hole's box and that margin are enough.
    near = box_around(hole, GRAIN_RING)
    assert near is not None  # the hole is not empty
    near_hole = hole[None, None, near[0], near[1]].float()
    outside = torch.ones_like(hole)
    outside[near] = ~box_max(near_hole, 9, 4)[0, 0].bool()
    if not bool(outside.any()):
        return rgb
    # A line beside the hole (a cable across a sky) is no grain: without a bound, its edges' energy spread into
    # the hole as a disc of speckle. Grain is what most of the ring has, so the energy is capped at a few
    # times the ring's median.
    ring = torch.zeros_like(hole)
    ring[near] = outside[near] & box_max(near_hole, 2 * GRAIN_RING + 1, GRAIN_RING)[0, 0].bool()
    if bool(ring.any()):
        typical = energy[:, ring].median(dim=1).values
        energy = torch.minimum(energy, GRAIN_CAP * typical[:, None, None])
    target = push_pull(torch.where(outside[None], energy, 0.0), outside)
    # Judge smoothness over a wider window, and only where the fill has clearly less grain than its
    # surroundings: an exact copy of busy texture varies locally and must not get noise on top.
    noise = torch.randn(rgb.shape, generator=gen, device=gen.device).to(rgb.device)
    # The rest is local (a 15 px window at most) and only the hole changes: the hole's box is enough.
    inner = box_around(hole, 7)
    assert inner is not None  # the hole is not empty
    rows, columns = inner
    (y0, y1), (x0, x1) = (rows.start, rows.stop), (columns.start, columns.stop)
    box = (slice(None), rows, columns)
    padded = F.pad(energy[None], (7, 7, 7, 7), mode="replicate")[:, :, y0 : y1 + 14, x0 : x1 + 14]
    wide = box_mean(padded, 15)[0]
    target, noise = target[box], noise[box]
    smooth = wide < 0.5 * target
    # A 3×3 box blur keeps 1 − 1/9 of white noise's variance in the residual.
    missing = torch.where(smooth, (target - wide).clamp_min(0), 0.0) * amount / (8 / 9)
    grain = noise.mean(0, keepdim=True) * 0.5 + noise * 0.5
    out = rgb.clone()
    out[box] = torch.where(hole[None, y0:y1, x0:x1], (rgb[box] + grain * missing.sqrt() * 1.6).clamp(0, 255), rgb[box])
    return out


def vote_upscaled(rgb: torch.Tensor, hole: torch.Tensor, coarse: Field, params: Params) -> torch.Tensor:
    """Refine a reduced-scale solution: enlarge its field to full size and vote full-size patches.

    No search runs at full size, so the cost is a few passes over the hole and memory a few crop-sized arrays.
    """
    level = Level(rgb, hole, params)
    if not level.searchable:
        return level.unpadded()
    level.sy, level.sx = level.snap(*scaled_guess(coarse, level))
    level.vote()
    if params.seam:
        level.remove_seam(push_pull)
    if params.grain > 0:
        gen = torch.Generator(device=rgb.device).manual_seed(params.seed)
        return add_grain(level.unpadded(), hole, params.grain, gen)
    return level.unpadded()
