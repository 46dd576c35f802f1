"""The fast paths of the patch engine and the thin fill give what their plain formulations give."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from retouchd.inpaint import thin
from retouchd.inpaint.base import single_thread
from retouchd.inpaint.descriptors import dct_basis
from retouchd.inpaint.patchmatch import Level, Params, box_max


def test_box_max_equals_the_2d_max_pool() -> None:
    """Two 1-D passes give exactly the values of one square max pool, padding included."""
    gen = torch.Generator().manual_seed(5)
    sparse = (torch.rand(1, 1, 61, 47, generator=gen) > 0.97).float()
    signed = torch.randn(1, 2, 30, 41, generator=gen)
    for x in (sparse, signed):
        for size, padding in ((7, 0), (7, 3), (9, 4), (33, 16)):
            assert torch.equal(box_max(x, size, padding), F.max_pool2d(x, size, stride=1, padding=padding))


def test_target_descriptors_equal_the_projection_of_each_target_patch() -> None:
    """Dense holes (band boxes) and scattered ones (gathered patches) both give each target's basis projection."""
    gen = torch.Generator().manual_seed(1)
    feat = torch.rand(7, 190, 220, generator=gen) * 255
    hole = torch.zeros(190, 220, dtype=torch.bool)
    hole[20:50, 30:70] = True  # compact: its band's box is computed whole
    hole[100:103, :] = True
    hole[150:180:7, 100:200:9] = True  # specks: gathered one by one
    level = Level(feat, hole, Params())
    level.prepare_search()
    size = 7
    offs = torch.arange(size)
    idx = (level.ty[:, None, None] + offs[None, :, None]) * level.wp + (level.tx[:, None, None] + offs[None, None, :])
    patches = level.feat.reshape(7, -1)[:, idx.reshape(len(level.ty), -1)].permute(1, 0, 2).reshape(len(level.ty), -1)
    torch.testing.assert_close(level.target_descriptors(), patches @ dct_basis(7, size, 6, 1), atol=2e-3, rtol=1e-5)


def _reference_sparse_fill(rgb: np.ndarray, hole: np.ndarray, p: thin.ThinParams) -> np.ndarray:
    """The fill as first written: every grid of blocks transformed on its own, over the whole padded crop."""
    b = thin._BLOCK
    h, w = hole.shape
    start = cv2.inpaint(np.ascontiguousarray(rgb), hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    padded = cv2.copyMakeBorder(start, b, b, b, b, cv2.BORDER_REFLECT_101)
    x = padded.reshape(-1, 3).astype(np.float32) @ thin._COLOUR.T
    hole_p = np.zeros((h + 2 * b, w + 2 * b), dtype=bool)
    hole_p[b : b + h, b : b + w] = hole
    update = np.flatnonzero(hole_p)
    step = b / p.shifts
    offsets = [(round(i * step), round(j * step)) for i in range(p.shifts) for j in range(p.shifts)]
    grids = [thin._block_indices(hole, oy, ox) for oy, ox in offsets]
    d = thin._dct_matrix(b)
    kron = np.kron(d, d).T.copy()
    acc = np.zeros_like(x)
    for t in np.geomspace(p.start, p.stop, p.rounds):
        acc[update] = 0.0
        for idx in grids:
            coef = x[idx].transpose(0, 2, 1).reshape(-1, b * b) @ kron
            dc = coef[:, 0].copy()
            coef[np.abs(coef) < t] = 0.0
            coef[:, 0] = dc
            rec = (coef @ kron.T).reshape(len(idx), 3, -1).transpose(0, 2, 1)
            acc[idx.reshape(-1)] += rec.reshape(-1, 3)
        x[update] = acc[update] / len(grids)
    out = (x @ thin._COLOUR).reshape(h + 2 * b, w + 2 * b, 3)[b : b + h, b : b + w]
    out = thin._sharpen(out, hole, p.sharpen, p.sharpen_sigma)
    filled = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.where(hole[..., None], filled, rgb)


def test_sparse_fill_equals_the_per_grid_formulation() -> None:
    """Blocks of all grids in one product, on the covered pixels only: the fill of the per-grid loop, ±1 level."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:70, :90]
    base = 100 + 60 * np.sin(xx / 5.0) + 30 * np.cos(yy / 7.0)
    rgb = np.clip(np.stack([base, base * 0.8, 255 - base], axis=2) + rng.normal(0, 4, (70, 90, 3)), 0, 255)
    rgb = rgb.astype(np.uint8)
    hole = np.zeros((70, 90), np.uint8)
    cv2.line(hole, (5, 10), (84, 60), 1, 4)
    cv2.line(hole, (20, 65), (70, 5), 1, 3)
    mask = hole.astype(bool)
    p = thin.ThinParams(rounds=8)
    fast = thin.sparse_fill(rgb, mask, p)
    slow = _reference_sparse_fill(rgb, mask, p)
    diff = np.abs(fast.astype(np.int16) - slow.astype(np.int16))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01
    assert np.array_equal(fast[~mask], rgb[~mask])


def test_single_thread_restores_the_setting() -> None:
    """torch runs on one thread inside, and on the worker's count again after, also after an error."""
    before = torch.get_num_threads()
    try:
        with single_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert torch.get_num_threads() == before


def test_membrane_on_the_hole_box_equals_sweeps_over_the_whole_crop() -> None:
    """Sweeping only the unknown pixels' box (and its 1 px ring) gives exactly the whole crop's sweeps."""
    from retouchd.inpaint.completion import push_pull
    from retouchd.inpaint.smooth import membrane

    gen = torch.Generator().manual_seed(0)
    feat = torch.rand(3, 120, 150, generator=gen) * 255
    known = torch.ones(120, 150, dtype=torch.bool)
    known[30:80, 40:100] = False
    known[0:9, 140:150] = False  # at the crop's corner: replicate padding
    feat = torch.where(known[None], feat, 0.0)
    den = F.avg_pool2d(known[None, None].float(), 2, ceil_mode=True)
    coarse = F.avg_pool2d(feat[None] * known, 2, ceil_mode=True)[0] / den[0].clamp_min(1e-8)
    up = F.interpolate(membrane(coarse, den[0, 0] > 0, 30)[None], size=(120, 150), mode="bilinear", align_corners=False)
    whole = torch.where(known[None], feat, up[0])
    for _ in range(30):
        p = F.pad(whole[None], (1, 1, 1, 1), mode="replicate")[0]
        mean = (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) / 4
        whole = torch.where(known[None], feat, mean)
    assert torch.equal(membrane(feat, known, 30), whole)
    assert not torch.equal(whole, push_pull(feat, known))


def _blob_level(seed: int, channels: int = 5) -> Level:
    """A level over random features with a round hole and one touching the crop's edge, field set at random."""
    gen = torch.Generator().manual_seed(seed)
    feat = torch.rand(channels, 70, 90, generator=gen) * 255
    yy, xx = torch.meshgrid(torch.arange(70), torch.arange(90), indexing="ij")
    hole = ((yy - 30) ** 2 + (xx - 40) ** 2 < 14**2) | ((yy > 60) & (xx > 70))
    level = Level(feat, hole, Params())
    level.prepare_search()
    level.set_field(
        (torch.rand(len(level.ty), generator=gen) * level.h).long(),
        (torch.rand(len(level.ty), generator=gen) * level.w).long(),
    )
    level.weights = torch.rand(len(level.ty), generator=gen)
    return level


def _reference_vote(level: Level) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The vote as session 7 wrote it: advanced indexing, every target patch in one chunk."""
    size, wp = level.p.patch, level.wp
    offs = (torch.arange(size)[:, None] * wp + torch.arange(size)).reshape(-1)
    it = (level.ty * wp + level.tx)[:, None].add(offs).reshape(-1)
    src = (level.sy * wp + level.sx)[:, None].add(offs).reshape(-1)
    wt = level.weights[:, None].expand(-1, offs.numel()).reshape(-1)
    feat = level.feat.clone()
    flat = feat.reshape(feat.shape[0], -1)
    best = torch.zeros(flat.shape[1]).scatter_reduce_(0, it, wt, reduce="amax")
    won = torch.nonzero(wt >= best[it], as_tuple=True)[0]
    winner = torch.zeros((3, flat.shape[1])).index_add_(1, it[won], flat[:3].index_select(1, src[won]))
    winner /= torch.zeros(flat.shape[1]).index_add_(0, it[won], torch.ones(won.shape)).clamp_min(1e-8)
    values = flat.index_select(1, src)
    kept = winner[:, it].sub_(values[:3]).square_().sum(0).div_(-2 * level.p.mode_width**2).exp_().mul_(wt)
    acc = torch.zeros_like(flat).index_add_(1, it, values.mul_(kept))
    total = torch.zeros(flat.shape[1]).index_add_(0, it, kept)
    update = level.hole_p.reshape(-1) & (total > 0)
    flat[:, update] = acc[:, update] / total[update]
    return feat, acc, total


def test_vote_in_chunks_equals_the_vote_by_advanced_indexing(monkeypatch) -> None:
    """index_select instead of advanced indexing, in cache-sized chunks: the same bits as one whole pass."""
    from retouchd.inpaint import patchmatch

    for budget in (1 << 18, 1 << 12):  # one chunk at this size, and many
        monkeypatch.setattr(patchmatch, "_CPU_GATHER_BUDGET", budget)
        level = _blob_level(3)
        feat, acc, total = _reference_vote(level)
        level.vote()
        assert torch.equal(level.feat, feat)
        assert torch.equal(level._votes, acc)
        assert torch.equal(level._vote_total, total)


def _reference_search(level: Level, iters: int, gen: torch.Generator) -> None:
    """`Level.search` as session 7 wrote it (no lines or lattice): neighbour indexes made in every iteration,
    snaps and field writes by advanced indexing."""
    assert level._nearest is not None
    nearest = level._nearest

    def snap(ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = nearest[ys.clamp(0, level.h - 1) * level.w + xs.clamp(0, level.w - 1)]
        return flat // level.w, flat % level.w

    def improve(cy: torch.Tensor, cx: torch.Tensor, ok: torch.Tensor | None) -> None:
        d = level.distances(tdesc, cy, cx)
        if ok is not None:
            d.masked_fill_(~ok, float("inf"))
        best, pick = d.min(0)
        better = best < level.dist
        level.sy = torch.where(better, cy.gather(0, pick[None])[0], level.sy)
        level.sx = torch.where(better, cx.gather(0, pick[None])[0], level.sx)
        level.dist = torch.where(better, best, level.dist)
        level.grid_y[level.ty, level.tx] = level.sy
        level.grid_x[level.ty, level.tx] = level.sx

    tdesc = level.target_descriptors()
    level.dist = level.distances(tdesc, level.sy[None], level.sx[None])[0]
    h, w = level.h, level.w
    scale = torch.tensor([max(h, w) >> i for i in range(max(h, w).bit_length())])[:, None]
    for _ in range(iters):
        for k in (4, 2, 1):
            dy = torch.tensor([0, 0, k, -k])[:, None]
            dx = torch.tensor([k, -k, 0, 0])[:, None]
            ny, nx = level.ty[None] + dy, level.tx[None] + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            at = (ny.clamp(0, h - 1) * w + nx.clamp(0, w - 1)).reshape(-1)
            nsy = level.grid_y.view(-1).index_select(0, at).view(ny.shape)
            nsx = level.grid_x.view(-1).index_select(0, at).view(ny.shape)
            cy, cx = nsy - dy, nsx - dx
            ok = inside & (nsy >= 0) & (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
            cy, cx = cy.clamp(0, h - 1), cx.clamp(0, w - 1)
            ok &= level.src_ok.view(-1).index_select(0, (cy * w + cx).reshape(-1)).view(cy.shape)
            improve(cy, cx, ok)
        shape = (len(scale), len(level.ty))
        jy = ((torch.rand(shape, generator=gen) * 2 - 1) * scale).round().long()
        jx = ((torch.rand(shape, generator=gen) * 2 - 1) * scale).round().long()
        improve(*snap(level.sy[None] + jy, level.sx[None] + jx), None)


def test_search_equals_the_search_without_its_cached_indexes() -> None:
    """Neighbour indexes made once per level, snaps by index_select, field writes by index_copy_: the same field."""
    fast, slow = _blob_level(4), _blob_level(4)
    fast.search(3, torch.Generator().manual_seed(9))
    _reference_search(slow, 3, torch.Generator().manual_seed(9))
    assert torch.equal(fast.sy, slow.sy)
    assert torch.equal(fast.sx, slow.sx)
    assert torch.equal(fast.dist, slow.dist)
    assert torch.equal(fast.grid_y, slow.grid_y)
    assert not torch.equal(fast.sy, _blob_level(4).sy)  # the search moved the field


def test_patch_descriptors_equal_the_basis_projection_of_every_patch() -> None:
    """The channels-last convolution gives each patch's `dct_basis` projection, as the 1-D passes do."""
    from retouchd.inpaint.descriptors import patch_descriptors, separable_descriptors

    feat = torch.rand(5, 23, 31, generator=torch.Generator().manual_seed(3)) * 255
    fast = patch_descriptors(feat, 7, 6, 1)
    patches = F.unfold(feat[None], 7)[0]  # (C·49) × (17·25)
    slow = (dct_basis(5, 7, 6, 1).T @ patches).T.reshape(17, 25, 36)
    assert fast.shape == (17, 25, 36) and fast.is_contiguous()
    torch.testing.assert_close(fast, slow, atol=2e-3, rtol=1e-5)
    torch.testing.assert_close(fast, separable_descriptors(feat, 7, 6, 1).permute(1, 2, 0), atol=2e-3, rtol=1e-5)


def _reference_grain(rgb: torch.Tensor, hole: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """`add_grain` as session 7 wrote it: the ring's max pools over the whole crop, square mean pools."""
    from retouchd.inpaint.completion import GRAIN_CAP, GRAIN_RING, push_pull

    fine = rgb - F.avg_pool2d(F.pad(rgb[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]
    energy = F.avg_pool2d(F.pad(fine.square()[None], (3, 3, 3, 3), mode="replicate"), 7, stride=1)[0]
    outside = ~box_max(hole[None, None].float(), 9, 4)[0, 0].bool()
    ring = outside & box_max(hole[None, None].float(), 2 * GRAIN_RING + 1, GRAIN_RING)[0, 0].bool()
    energy = torch.minimum(energy, GRAIN_CAP * energy[:, ring].median(dim=1).values[:, None, None])
    target = push_pull(torch.where(outside[None], energy, 0.0), outside)
    noise = torch.randn(rgb.shape, generator=gen)
    ys, xs = torch.nonzero(hole, as_tuple=True)
    y0, y1 = max(0, int(ys.min()) - 7), min(hole.shape[0], int(ys.max()) + 8)
    x0, x1 = max(0, int(xs.min()) - 7), min(hole.shape[1], int(xs.max()) + 8)
    box = (slice(None), slice(y0, y1), slice(x0, x1))
    padded = F.pad(energy[None], (7, 7, 7, 7), mode="replicate")[:, :, y0 : y1 + 14, x0 : x1 + 14]
    wide = F.avg_pool2d(padded, 15, stride=1)[0]
    target, noise = target[box], noise[box]
    missing = torch.where(wide < 0.5 * target, (target - wide).clamp_min(0), 0.0) * amount / (8 / 9)
    grain = noise.mean(0, keepdim=True) * 0.5 + noise * 0.5
    out = rgb.clone()
    out[box] = torch.where(hole[None, y0:y1, x0:x1], (rgb[box] + grain * missing.sqrt() * 1.6).clamp(0, 255), rgb[box])
    return out


def test_grain_on_the_hole_box_equals_the_whole_crop_pools() -> None:
    """The ring's pools on the hole's box and margin, box means as 1-D passes: the grain of the whole-crop pools."""
    from retouchd.inpaint.completion import add_grain, box_mean

    gen = torch.Generator().manual_seed(6)
    x = torch.rand(2, 3, 40, 52, generator=gen) * 255
    for size in (3, 7, 15):
        torch.testing.assert_close(box_mean(x, size), F.avg_pool2d(x, size, stride=1), atol=1e-4, rtol=1e-6)
    smooth = F.avg_pool2d(torch.rand(1, 3, 90, 120, generator=gen), 9, stride=1, padding=4)[0] * 200
    rgb = smooth + torch.randn(3, 90, 120, generator=gen) * 6
    rgb[:, :, 100:] = smooth[:, :, 100:]  # a smooth strip: its fill gets grain
    inner = torch.zeros(90, 120, dtype=torch.bool)
    inner[40:60, 95:118] = True
    edge = inner.clone()
    edge[:3, 10:30] = True  # a second hole at the crop's edge: the box is clipped there
    for hole in (inner, edge):
        fast = add_grain(rgb, hole, 0.5, torch.Generator().manual_seed(1))
        slow = _reference_grain(rgb, hole, 0.5, torch.Generator().manual_seed(1))
        torch.testing.assert_close(fast, slow, atol=1e-3, rtol=1e-6)
        assert not torch.equal(fast, rgb)


def test_half_mean_equals_the_ceil_mode_pool() -> None:
    """Four strided views give the bits of `F.avg_pool2d(x, 2, ceil_mode=True)`, odd edges included."""
    from retouchd.inpaint.completion import half_mean

    gen = torch.Generator().manual_seed(8)
    for shape in ((1, 5, 40, 52), (1, 3, 41, 52), (1, 3, 40, 53), (1, 2, 41, 53), (1, 1, 1, 1), (1, 2, 3, 1)):
        x = torch.rand(shape, generator=gen) * 255
        x[..., ::3, ::5] = 0.0
        assert torch.equal(half_mean(x), F.avg_pool2d(x, 2, ceil_mode=True))
