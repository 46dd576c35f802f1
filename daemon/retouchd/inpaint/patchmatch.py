"""One pyramid level of exemplar completion: PatchMatch nearest-neighbour field and patch voting, in torch.

Every patch that touches the hole (a target) is matched to a fully known patch of the crop (a source);
the hole is then re-estimated from the votes of the matched patches (Wexler, Shechtman and Irani 2007,
with the PatchMatch search of Barnes et al. 2009). A hole pixel takes the value of its best-weighted
vote, averaged with the votes that agree with it: a mode, not a mean, so texture stays sharp where a
plain average would blur it.

Patches are compared through a fixed orthonormal projection (low DCT frequencies of luma, fewer of
chroma, the texture channels' means) plus a small penalty on the copy distance; testing a candidate is
a gather of a short vector, and candidates are tested in batches to keep torch calls few. Every array
lives on one device; the two mask transforms that OpenCV does well go through the CPU. Coordinates are
(y, x) in the unpadded level; the features are padded by the patch radius.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from retouchd.inpaint.descriptors import dct_basis, patch_descriptors
from retouchd.inpaint.periodic import Lattice, lattice_candidates, phase_error

_JUMPS = (4, 2, 1)
_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))
_GATHER_BUDGET = 1 << 22
"""Floats gathered at once; bounds the temporary memory of candidate tests and votes."""
_CPU_GATHER_BUDGET = 1 << 18
"""The same on the CPU: a chunk's gather stays in cache for the arithmetic after it (1 << 22 searched 15 % longer)."""
_BAND = 64
"""Rows of targets whose descriptors are computed together."""
_SPARSE_TARGETS = 5
"""Targets are gathered one by one where their band's box has more than this many positions per target."""

Visit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]
Chord = tuple[float, float, float, float, float, float]
"""A line through the hole: point (y, x), unit direction (y, x), and where along it the hole starts and ends."""
_ALONG = (3.0, 8.0, 16.0)
"""Distances past the hole's chord, on both sides, at which a target tries a source along its line."""


@dataclass(frozen=True, slots=True)
class Params:
    """Tuning of the completion. The defaults are what bench/inpaint_quality.py measured best."""

    patch: int = 7
    texture_weight: float = 3.0
    """Weight of the two texture channels against colour; higher keeps more texture, too high mismatches."""
    coarse_em: int = 6
    fine_em: int = 2
    """Search-and-vote rounds at the coarsest and the finest level (linear in between)."""
    pm_iters: int = 2
    """PatchMatch iterations per round."""
    min_side: int = 24
    """No pyramid level smaller than this."""
    confidence: float = 1.3
    """Votes of patches centred d px deep in the hole count confidence**-d (Wexler et al.)."""
    sigma_quantile: float = 0.75
    """Match quality is scaled by this quantile of the level's distances."""
    mode_width: float = 18.0
    """Votes within about this colour distance of the winning vote are averaged with it."""
    luma_order: int = 6
    chroma_order: int = 1
    """Highest DCT order (u + v) kept for luma and for each chroma axis."""
    locality: float = 10.0
    """Distance added per squared pixel of copy offset: prefer sources near the target."""
    seed: int = 0
    seam: bool = True
    """Cancel the fill's low-frequency mismatch with its surroundings (gradient-domain style)."""
    grain: float = 0.5
    """Share of the surroundings' missing fine grain given back to a fill that came out too smooth."""


@dataclass(frozen=True, slots=True)
class Field:
    """A nearest-neighbour field: target patch centres and the source centres they copy."""

    shape: tuple[int, int]
    ty: torch.Tensor
    tx: torch.Tensor
    sy: torch.Tensor
    sx: torch.Tensor


class Level:
    """One pyramid level: padded features, hole, valid sources, targets and their current matches."""

    def __init__(
        self,
        feat: torch.Tensor,
        hole: torch.Tensor,
        params: Params,
        fixed: int = 0,
        lines: tuple[Chord, ...] = (),
        lattice: Lattice = (),
        phase_penalty: float = 0.0,
    ) -> None:
        self.p = params
        self.fixed = fixed
        """The last `fixed` channels are guides, known in the hole too: matched, never voted."""
        self.lines = lines
        """Edges drawn through the hole (level coordinates): the search also tries sources along them."""
        self.lattice = lattice
        """Lattice vectors of a periodic pattern (level pixels): tried as offsets, and off-lattice offsets pay."""
        self.phase_penalty = phase_penalty
        """Cost of a half-period phase error, in medians of the level's match distances."""
        self._phase_cost = 0.0
        self.r = params.patch // 2
        self.h, self.w = int(hole.shape[0]), int(hole.shape[1])
        mode = "reflect" if min(self.h, self.w) > self.r else "replicate"
        pad = (self.r,) * 4
        self.feat = F.pad(feat[None], pad, mode=mode)[0].contiguous()
        holef = F.pad(hole[None, None].float(), pad, mode=mode)
        self.hole_p = holef[0, 0] > 0.5
        touches = box_max(holef, params.patch, 0)[0, 0] > 0
        self.src_ok = ~touches
        self.n_sources = int(self.src_ok.sum())
        self.ty, self.tx = torch.nonzero(touches, as_tuple=True)
        self.sy, self.sx = self.ty, self.tx
        self.dist = torch.zeros(self.ty.shape, device=feat.device)
        depth = _hole_depth(hole)[self.ty, self.tx]
        self.conf = torch.pow(torch.tensor(params.confidence, device=feat.device), -depth)
        self.weights = self.conf
        self._nearest = _nearest_source_table(self.src_ok) if self.n_sources else None

    @property
    def wp(self) -> int:
        return self.w + 2 * self.r

    @property
    def budget(self) -> int:
        return _CPU_GATHER_BUDGET if self.feat.is_cpu else _GATHER_BUDGET

    @property
    def searchable(self) -> bool:
        return self.n_sources > 0 and len(self.ty) > 0

    def prepare_search(self) -> None:
        """Projection basis, the descriptor of every source position, and the field's lookup grids."""
        channels = self.feat.shape[0]
        self.basis = dct_basis(channels, self.p.patch, self.p.luma_order, self.p.chroma_order).to(self.feat.device)
        desc = patch_descriptors(self.feat, self.p.patch, self.p.luma_order, self.p.chroma_order)
        self.src_desc = desc.reshape(self.h * self.w, -1)
        self.grid_y = torch.full((self.h, self.w), -1, dtype=torch.long, device=self.feat.device)
        self.grid_x = torch.full_like(self.grid_y, -1)
        self._at = self.ty * self.w + self.tx
        self._neighbours: dict[int, tuple[torch.Tensor, ...]] = {}

    def target_descriptors(self) -> torch.Tensor:
        """Descriptors of the target patches, from the current estimate of the hole.

        A band of rows at a time: `patch_descriptors` over the box of the band's targets (0.14 µs per position
        on one core), or, where the targets fill less than a fifth of that box (scattered holes in one crop),
        their patches gathered and projected on the basis (1.85 µs per target).
        """
        d, r, size = self.src_desc.shape[1], self.r, self.p.patch
        y0, y1 = int(self.ty[0]), int(self.ty[-1]) + 1  # targets come in row-major order
        offs = torch.arange(size, device=self.ty.device)
        flat = self.feat.reshape(self.feat.shape[0], -1)
        parts = []
        for ya in range(y0, y1, _BAND):
            i0, i1 = (int(torch.searchsorted(self.ty, y)) for y in (ya, min(y1, ya + _BAND)))
            if i0 == i1:
                continue
            ys, xs = self.ty[i0:i1], self.tx[i0:i1]
            x0, x1 = int(xs.min()), int(xs.max()) + 1
            yb = int(ys[-1]) + 1
            if (yb - ya) * (x1 - x0) <= _SPARSE_TARGETS * (i1 - i0):
                box = self.feat[:, ya : yb + 2 * r, x0 : x1 + 2 * r]
                desc = patch_descriptors(box, size, self.p.luma_order, self.p.chroma_order).reshape(-1, d)
                parts.append(desc.index_select(0, (ys - ya) * (x1 - x0) + (xs - x0)))
                continue
            step = max(1, self.budget // (flat.shape[0] * size * size))
            for j in range(0, i1 - i0, step):
                sy, sx = ys[j : j + step], xs[j : j + step]
                idx = (sy[:, None, None] + offs[None, :, None]) * self.wp + (sx[:, None, None] + offs[None, None, :])
                patches = flat[:, idx.reshape(len(sy), -1)].permute(1, 0, 2).reshape(len(sy), -1)
                parts.append(patches @ self.basis)
        return torch.cat(parts).contiguous()

    # -- the field -----------------------------------------------------------------------------------

    def snap(self, ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid source nearest to each (clamped) position."""
        assert self._nearest is not None
        at = ys.clamp(0, self.h - 1) * self.w + xs.clamp(0, self.w - 1)
        flat = self._nearest.index_select(0, at.reshape(-1)).view(at.shape)
        return flat // self.w, flat % self.w

    def set_field(self, sy: torch.Tensor, sx: torch.Tensor) -> None:
        """Start from these source guesses (snapped to valid sources)."""
        self.sy, self.sx = self.snap(sy, sx)
        self.grid_y.view(-1).index_copy_(0, self._at, self.sy)
        self.grid_x.view(-1).index_copy_(0, self._at, self.sx)

    def distances(self, tdesc: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
        """K × N costs of K candidate sources per target: descriptor distance plus the locality penalty."""
        k, n = cy.shape
        out = torch.empty((k, n), device=tdesc.device)
        step = max(1, self.budget // (k * tdesc.shape[1]))
        for i in range(0, n, step):
            idx = (cy[:, i : i + step] * self.w + cx[:, i : i + step]).reshape(-1)
            cand = self.src_desc.index_select(0, idx).reshape(k, -1, tdesc.shape[1])
            out[:, i : i + step] = cand.sub_(tdesc[None, i : i + step]).square_().sum(-1)  # in place: a fresh gather
        if self.p.locality > 0:
            far = (cy - self.ty[None]).square() + (cx - self.tx[None]).square()
            out += self.p.locality * far.float()
        if self._phase_cost > 0:
            out += self._phase_cost * phase_error(self.lattice, cy - self.ty[None], cx - self.tx[None])
        return out

    def _improve(self, tdesc: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, ok: torch.Tensor | None) -> None:
        """Keep, per target, the best of its current match and the K candidates."""
        d = self.distances(tdesc, cy, cx)
        if ok is not None:
            d.masked_fill_(~ok, float("inf"))
        best, pick = d.min(0)
        better = best < self.dist
        self.sy = torch.where(better, cy.gather(0, pick[None])[0], self.sy)
        self.sx = torch.where(better, cx.gather(0, pick[None])[0], self.sx)
        self.dist = torch.where(better, best, self.dist)
        self.grid_y.view(-1).index_copy_(0, self._at, self.sy)
        self.grid_x.view(-1).index_copy_(0, self._at, self.sx)

    def search(self, iters: int, gen: torch.Generator) -> None:
        """PatchMatch from the current field: propagation at halving jumps, random search at halving radii."""
        tdesc = self.target_descriptors()
        self._phase_cost = 0.0
        self.dist = self.distances(tdesc, self.sy[None], self.sx[None])[0]
        if self.lattice and self.phase_penalty > 0:
            half = min(float(np.hypot(vy, vx)) for vy, vx in self.lattice) / 2
            self._phase_cost = self.phase_penalty * float(self.dist.median()) / half**2
            self.dist = self.dist + self._phase_cost * phase_error(self.lattice, self.sy - self.ty, self.sx - self.tx)
        h, w, device = self.h, self.w, self.ty.device
        longest = max(h, w)
        scale = torch.tensor([longest >> i for i in range(longest.bit_length())], device=device)[:, None]
        for _ in range(iters):
            for k in _JUMPS:
                dy, dx, inside, at = self._neighbours_at(k)
                nsy = self.grid_y.view(-1).index_select(0, at).view(inside.shape)
                nsx = self.grid_x.view(-1).index_select(0, at).view(inside.shape)
                cy, cx = nsy - dy, nsx - dx
                ok = inside & (nsy >= 0) & (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
                cy, cx = cy.clamp(0, h - 1), cx.clamp(0, w - 1)
                ok &= self.src_ok.view(-1).index_select(0, (cy * w + cx).reshape(-1)).view(cy.shape)
                self._improve(tdesc, cy, cx, ok)
            shape = (len(scale), len(self.ty))
            jy = ((torch.rand(shape, generator=gen, device=gen.device).to(device) * 2 - 1) * scale).round().long()
            jx = ((torch.rand(shape, generator=gen, device=gen.device).to(device) * 2 - 1) * scale).round().long()
            cy, cx = self.snap(self.sy[None] + jy, self.sx[None] + jx)
            self._improve(tdesc, cy, cx, None)
            for line in self.lines:
                self._improve(tdesc, *self._along(line), None)
            if self.lattice:
                found = lattice_candidates(self.lattice, self.ty, self.tx, self.src_ok, (self.sy, self.sx))
                self._improve(tdesc, *found, None)
        finite = torch.isfinite(self.dist)
        spread = torch.quantile(self.dist[finite], self.p.sigma_quantile).clamp_min(1e-6) if bool(finite.any()) else 1.0
        self.weights = torch.nan_to_num(torch.exp(-self.dist / (2 * spread)) * self.conf, nan=0.0)

    def _neighbours_at(self, k: int) -> tuple[torch.Tensor, ...]:
        """Offsets to the targets' four neighbours `k` px away, which are inside, and their (clamped) flat indexes."""
        if k not in self._neighbours:
            h, w, device = self.h, self.w, self.ty.device
            dy = torch.tensor([d[0] * k for d in _DIRECTIONS], device=device)[:, None]
            dx = torch.tensor([d[1] * k for d in _DIRECTIONS], device=device)[:, None]
            ny, nx = self.ty[None] + dy, self.tx[None] + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            self._neighbours[k] = (dy, dx, inside, (ny.clamp(0, h - 1) * w + nx.clamp(0, w - 1)).reshape(-1))
        return self._neighbours[k]

    def _along(self, line: Chord) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidates on the target's parallel to `line`, just past either end of the hole's chord.

        Propagation alone carries a thin edge only a few pixels into a hole per round; these reach across.
        """
        py, px, dy, dx, t0, t1 = line
        t = (self.ty.float() - py) * dy + (self.tx.float() - px) * dx
        shifts = [t0 - m - t for m in _ALONG] + [t1 + m - t for m in _ALONG]
        step = torch.stack(shifts)
        cy = (self.ty[None].float() + step * dy).round().long()
        cx = (self.tx[None].float() + step * dx).round().long()
        return self.snap(cy, cx)

    # -- voting ----------------------------------------------------------------------------------------

    def _vote_pass(self, visit: Visit) -> None:
        """visit(pixel, source pixel, weight) for every pixel of every target patch, in bounded chunks."""
        size, device = self.p.patch, self.ty.device
        offs = (torch.arange(size, device=device)[:, None] * self.wp + torch.arange(size, device=device)).reshape(-1)
        step = max(1, self.budget // (self.feat.shape[0] * offs.numel()))
        for i in range(0, len(self.ty), step):
            base_t = self.ty[i : i + step] * self.wp + self.tx[i : i + step]
            base_s = self.sy[i : i + step] * self.wp + self.sx[i : i + step]
            weight = self.weights[i : i + step, None].expand(-1, offs.numel()).reshape(-1)
            visit((base_t[:, None] + offs).reshape(-1), (base_s[:, None] + offs).reshape(-1), weight)

    def vote(self) -> None:
        """Hole pixels take their best-weighted vote, averaged with the votes that agree with it.

        Only the colour of the winners is gathered (their mode is judged on colour), and only the voted
        channels travel (the guides are never voted).
        """
        voted = self.feat.shape[0] - self.fixed
        flat = self.feat.reshape(self.feat.shape[0], -1)
        values_of = flat[:voted]
        best = torch.zeros(flat.shape[1], device=flat.device)
        self._vote_pass(lambda it, src, wt: best.scatter_reduce_(0, it, wt, reduce="amax"))
        winner = torch.zeros((3, flat.shape[1]), device=flat.device)
        count = torch.zeros_like(best)

        def take_winner(it: torch.Tensor, src: torch.Tensor, wt: torch.Tensor) -> None:
            # Mostly one vote in a patch's area wins a pixel: the others would only add zeros.
            won = torch.nonzero(wt >= best.index_select(0, it), as_tuple=True)[0]
            at = it.index_select(0, won)
            winner.index_add_(1, at, flat[:3].index_select(1, src.index_select(0, won)))
            count.index_add_(0, at, torch.ones(won.shape, device=flat.device))

        self._vote_pass(take_winner)
        winner /= count.clamp_min(1e-8)
        acc = torch.zeros_like(values_of)
        total = torch.zeros_like(best)
        spread = 2 * self.p.mode_width**2

        def agree(it: torch.Tensor, src: torch.Tensor, wt: torch.Tensor) -> None:
            values = values_of.index_select(1, src)
            kept = winner.index_select(1, it).sub_(values[:3]).square_().sum(0).div_(-spread).exp_().mul_(wt)
            acc.index_add_(1, it, values.mul_(kept))
            total.index_add_(0, it, kept)

        self._vote_pass(agree)
        update = self.hole_p.reshape(-1) & (total > 0)
        flat[:voted, update] = acc[:, update] / total[update]
        self._votes, self._vote_total = acc, total

    def remove_seam(self, smooth: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        """Shift the fill's colour by a smooth field that cancels its mismatch with the known ring.

        The last vote also predicted the known pixels within a patch radius of the hole; where the
        prediction and the photo differ (a slightly other shade of sky, copied from elsewhere), that
        difference is spread over the hole by `smooth` (a membrane fill), as gradient-domain blending does.
        """
        flat = self.feat.reshape(self.feat.shape[0], -1)
        hole = self.hole_p.reshape(-1)
        ring = ~hole & (self._vote_total > 1e-6)
        if not bool(ring.any()):
            return
        diff = torch.zeros((3, flat.shape[1]), device=flat.device)
        diff[:, ring] = flat[:3, ring] - self._votes[:3, ring] / self._vote_total[ring]
        shape = self.hole_p.shape
        field = smooth(diff.reshape(3, *shape), ring.reshape(shape)).reshape(3, -1)
        flat[:3, hole] = (flat[:3, hole] + field[:, hole]).clamp(0, 255)

    def field(self) -> Field:
        return Field((self.h, self.w), self.ty, self.tx, self.sy, self.sx)

    def unpadded(self) -> torch.Tensor:
        return self.feat[:, self.r : self.r + self.h, self.r : self.r + self.w]


def box_max(x: torch.Tensor, size: int, padding: int) -> torch.Tensor:
    """`F.max_pool2d(x, size, stride=1, padding=padding)` as running maxima along columns, then rows: the same
    values (a maximum over a square is one over its rows of those over its columns; a 2-D pool of the grain's
    33 px ring took 0.8 s of a 1 MP fill)."""
    x = F.pad(x, (padding,) * 4, value=float("-inf")) if padding else x
    return _running_max(_running_max(x, size, 2), size, 3)


def _running_max(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """The maximum of every `size` consecutive entries along `dim`: maxima of shifted views, windows doubling
    (torch's CPU max pool: 16 ms for 7 px of 767×815 on one core, these ~2 ms), then two overlapping windows."""
    n, width = x.shape[dim] - size + 1, 1
    while 2 * width <= size:
        x = torch.maximum(x.narrow(dim, 0, x.shape[dim] - width), x.narrow(dim, width, x.shape[dim] - width))
        width *= 2
    return torch.maximum(x.narrow(dim, 0, n), x.narrow(dim, size - width, n))


def _nearest_source_table(src_ok: torch.Tensor) -> torch.Tensor:
    """For every position, the flat index of the nearest valid source centre (OpenCV's labelled EDT)."""
    ok = src_ok.cpu().numpy()
    zeros_are_sources = np.where(ok, 0, 255).astype(np.uint8)
    _, labels = cv2.distanceTransformWithLabels(zeros_are_sources, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    flat = np.flatnonzero(ok)
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    lookup[labels.ravel()[flat]] = flat
    return torch.from_numpy(lookup[labels.ravel()]).to(src_ok.device)


def _hole_depth(hole: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each pixel to the nearest known pixel (0 outside the hole)."""
    known = np.where(hole.cpu().numpy(), 255, 0).astype(np.uint8)
    depth = cv2.distanceTransform(known, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return torch.from_numpy(depth).to(hole.device)
