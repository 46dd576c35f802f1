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


def test_ring_cost_draws_sources_from_the_ring_around_the_hole() -> None:
    """A crop of one noise texture: the plain search (no locality) copies from anywhere in it; with `ring_cost`
    (the default), a source pays for how far beyond `ring_width` it lies from the hole, and the targets copy from
    near the ring.
    """
    gen = torch.Generator().manual_seed(3)
    feat = 100 + 30 * torch.rand(3, 128, 128, generator=gen)
    hole = torch.zeros(128, 128, dtype=torch.bool)
    hole[52:76, 52:76] = True
    away = torch.from_numpy(
        cv2.distanceTransform(np.where(hole.numpy(), 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    )
    medians = []
    for params in (Params(locality=0.0, ring_cost=0.0), Params(locality=0.0)):
        level = Level(feat.clone(), hole, params)
        level.prepare_search()
        level.set_field(level.ty, level.tx)
        with single_thread():
            level.search(4, torch.Generator().manual_seed(0))
        inside = hole[level.ty, level.tx]
        medians.append(float(away[level.sy, level.sx][inside].median()))
    assert medians[0] > 18  # sources lie 4 to 52 px from the hole (22 here)
    assert medians[1] < 6  # 4.0 here: the first fully known patches
