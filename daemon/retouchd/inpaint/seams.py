"""Seams between neighbouring copies of a voted fill, re-integrated from what the sources have there.

The vote keeps a fill sharp by giving each pixel the mode of its votes, so where neighbouring targets copy
from different places the fill jumps from one source to the other: a hard seam, and a piece a shade
lighter than its neighbour (a collage in bokeh, issue 17). Every source patch also votes the steps between
neighbouring pixels *inside* itself, and the best-weighted one gives each step; a step across a seam is then
what a source has there, never the jump between two sources. Where the fill's own step differs
from that vote by more than a tolerance, the vote replaces it, and the hole is the screened Poisson
solution of those steps with the known pixels around it as the boundary (gradient-domain blending, as in
Darabi et al. 2012, "Image Melding"). Elsewhere the fill's own steps are kept, so its texture and grain are
unchanged: integrating the sources' steps everywhere turns their noise into blotches (one source's noise
step beside another's does not add up to a surface).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from retouchd.inpaint.patchmatch import Level

SCREEN = 0.01
"""Pull of each hole pixel toward the voted colour, against the 4 neighbour terms of the Poisson equation."""


def voted_steps(level: Level) -> tuple[torch.Tensor, torch.Tensor]:
    """Per padded pixel, the colour step (3×N) to its right and to its lower neighbour in the source of the
    best-weighted patch that covers both pixels (their mean where several tie); 0 where no patch does.

    One source's step, not an average: averaging the steps of several sources would blur the texture.
    """
    flat = level.feat.reshape(level.feat.shape[0], -1)[:3]
    size, device, wp = level.p.patch, level.ty.device, level.wp
    out = []
    for step, rows, cols in ((1, size, size - 1), (wp, size - 1, size)):
        offs = (torch.arange(rows, device=device)[:, None] * wp + torch.arange(cols, device=device)).reshape(-1)
        chunk = max(1, level.budget // (3 * offs.numel()))

        def votes(i: int, offs: torch.Tensor = offs, chunk: int = chunk) -> tuple[torch.Tensor, ...]:
            at = ((level.ty[i : i + chunk] * wp + level.tx[i : i + chunk])[:, None] + offs).reshape(-1)
            src = ((level.sy[i : i + chunk] * wp + level.sx[i : i + chunk])[:, None] + offs).reshape(-1)
            return at, src, level.weights[i : i + chunk, None].expand(-1, offs.numel()).reshape(-1)

        best = torch.zeros(flat.shape[1], device=device)
        for i in range(0, len(level.ty), chunk):
            at, _, wt = votes(i)
            best.scatter_reduce_(0, at, wt, reduce="amax")
        acc = torch.zeros_like(flat)
        count = torch.zeros(flat.shape[1], device=device)
        for i in range(0, len(level.ty), chunk):
            at, src, wt = votes(i)
            won = torch.nonzero(wt >= best.index_select(0, at), as_tuple=True)[0]
            at, src = at.index_select(0, won), src.index_select(0, won)
            acc.index_add_(1, at, flat.index_select(1, src + step) - flat.index_select(1, src))
            count.index_add_(0, at, torch.ones(won.shape, device=device))
        out.append(acc / count.clamp_min(1.0))
    return out[0], out[1]


def stitch(level: Level) -> None:
    """Re-integrate the level's hole colour (in place, after a vote) where its steps are seams (see the module)."""
    hp, wp, r = level.h + 2 * level.r, level.wp, level.r
    inside = torch.zeros_like(level.hole_p)
    inside[r : r + level.h, r : r + level.w] = True
    unknown = level.hole_p & inside
    ys, xs = torch.nonzero(unknown, as_tuple=True)
    if len(ys) == 0:
        return
    sx_flat, sy_flat = voted_steps(level)
    # The hole's box and a 1 px ring of known pixels (the padding keeps it inside the padded array).
    y0, y1 = max(0, int(ys.min()) - 1), min(hp, int(ys.max()) + 2)
    x0, x1 = max(0, int(xs.min()) - 1), min(wp, int(xs.max()) + 2)
    colour = level.feat[:3, y0:y1, x0:x1]
    u, ok = unknown[y0:y1, x0:x1], inside[y0:y1, x0:x1]
    tol = level.p.stitch_tolerance**2
    own_x, own_y = colour[:, :, 1:] - colour[:, :, :-1], colour[:, 1:] - colour[:, :-1]
    gx = sx_flat.reshape(3, hp, wp)[:, y0:y1, x0 : x1 - 1]
    gy = sy_flat.reshape(3, hp, wp)[:, y0 : y1 - 1, x0:x1]
    ceiling = level.p.stitch_ceiling**2
    off_x, off_y = (own_x - gx).square().sum(0, keepdim=True), (own_y - gy).square().sum(0, keepdim=True)
    gx = torch.where((off_x > tol) & (off_x <= ceiling), gx, own_x)
    gy = torch.where((off_y > tol) & (off_y <= ceiling), gy, own_y)
    # Steps that touch the hole, between pixels of the crop (the padding's reflected pixels are no neighbours).
    ex = (ok[:, :-1] & ok[:, 1:] & (u[:, :-1] | u[:, 1:])).float()
    ey = (ok[:-1] & ok[1:] & (u[:-1] | u[1:])).float()
    uf = u.float()

    def neighbours(v: torch.Tensor) -> torch.Tensor:
        s = torch.zeros_like(v)
        s[..., :, :-1] += ex * v[..., :, 1:]
        s[..., :, 1:] += ex * v[..., :, :-1]
        s[..., :-1, :] += ey * v[..., 1:, :]
        s[..., 1:, :] += ey * v[..., :-1, :]
        return s

    degree = neighbours(torch.ones_like(uf)) + SCREEN
    # Per unknown pixel: degree·f − Σ unknown neighbours = Σ known neighbours − Σ steps away from it + SCREEN·colour.
    div = torch.zeros_like(colour)
    div[:, :, :-1] -= ex * gx
    div[:, :, 1:] += ex * gx
    div[:, :-1] -= ey * gy
    div[:, 1:] += ey * gy
    b = (SCREEN * colour + neighbours(colour * (1 - uf)) + div) * uf
    x = _conjugate_gradient(lambda v: (degree * v - neighbours(v)) * uf, b, colour * uf, level.p.stitch_iters)
    level.feat[:3, y0:y1, x0:x1] = torch.where(u[None], x.clamp(0, 255), colour)


def _conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, x: torch.Tensor, iters: int
) -> torch.Tensor:
    """Solve apply(x) = b (symmetric positive definite, one system per channel) from the guess `x`."""
    res = b - apply(x)
    direction = res.clone()
    rs = res.square().sum((1, 2))
    settled = 1e-6 * b.square().sum((1, 2)).clamp_min(1.0)
    for _ in range(iters):
        if bool((rs <= settled).all()):
            break
        ad = apply(direction)
        alpha = rs / (direction * ad).sum((1, 2)).clamp_min(1e-20)
        x = x + alpha[:, None, None] * direction
        res = res - alpha[:, None, None] * ad
        rs_new = res.square().sum((1, 2))
        direction = res + (rs_new / rs.clamp_min(1e-20))[:, None, None] * direction
        rs = rs_new
    return x
