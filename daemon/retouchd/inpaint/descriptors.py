"""Patch descriptors: a fixed orthonormal projection of every patch (low DCT frequencies of luma, fewer of
chroma, the means of the extra channels), so that comparing two patches is comparing two short vectors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _dct_1d(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    table = np.asarray(np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n), dtype=np.float64)
    table[0] /= np.sqrt(2)
    return table


def dct_basis(channels: int, patch: int, luma: int, chroma: int) -> torch.Tensor:
    """(C·p²) × D projection: DCT frequencies u + v ≤ order of luma and two chroma axes, texture means.

    The colour rotation and the DCT are orthonormal, so a descriptor distance is the patch SSD restricted
    to the frequencies that carry most of a natural patch's energy.
    """
    colour = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
    colour /= np.linalg.norm(colour, axis=1, keepdims=True)
    dct = _dct_1d(patch)
    columns = []
    for axis, order in ((0, luma), (1, chroma), (2, chroma)):
        for u in range(min(order, patch - 1) + 1):
            for v in range(min(order - u, patch - 1) + 1):
                vec = np.zeros((channels, patch, patch))
                vec[:3] = colour[axis][:, None, None] * np.outer(dct[u], dct[v])[None]
                columns.append(vec.reshape(-1))
    for extra in range(3, channels):
        vec = np.zeros((channels, patch, patch))
        vec[extra] = np.outer(dct[0], dct[0])
        columns.append(vec.reshape(-1))
    return torch.from_numpy(np.stack(columns, axis=1)).float()


def separable_descriptors(feat: torch.Tensor, patch: int, luma: int, chroma: int) -> torch.Tensor:
    """The `dct_basis` projection of every patch of `feat` (D × H' × W'); see `patch_descriptors`."""
    return patch_descriptors(feat, patch, luma, chroma).permute(2, 0, 1)


def patch_descriptors(feat: torch.Tensor, patch: int, luma: int, chroma: int) -> torch.Tensor:
    """The `dct_basis` projection of every patch of `feat`, channels last (H' × W' × D), as 1-D passes.

    Equal to one conv2d with the basis as kernels, at a few per cent of its cost: a 2-D DCT frequency is
    the product of a vertical and a horizontal 1-D one, so each 1-D response is computed once and shared.
    The vertical pass comes first: the horizontal products of one vertical order u are then the
    descriptor's consecutive columns (u, 0…order−u) and are written in place, with no stack or transpose.
    """
    colour = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
    colour /= np.linalg.norm(colour, axis=1, keepdims=True)
    dct = torch.from_numpy(_dct_1d(patch)).float().to(feat.device)
    rotated = torch.einsum("ac,chw->ahw", torch.from_numpy(colour).float().to(feat.device), feat[:3])
    h, w = feat.shape[1] - patch + 1, feat.shape[2] - patch + 1
    orders = [(luma, min(luma, patch - 1)), (chroma, min(chroma, patch - 1)), (chroma, min(chroma, patch - 1))]
    width = sum(min(order - u, patch - 1) + 1 for order, top in orders for u in range(top + 1))
    out = torch.empty((h, w, width + feat.shape[0] - 3), device=feat.device)
    j = 0
    for axis, (order, top) in enumerate(orders):
        # Windows times the 1-D basis (a small matrix product; a 1×p conv2d is several times slower on CPU).
        cols = rotated[axis].T.unfold(1, patch, 1) @ dct[: top + 1].T  # W × H' × u
        for u in range(top + 1):
            n = min(order - u, patch - 1) + 1
            out[:, :, j : j + n] = cols[:, :, u].T.unfold(1, patch, 1) @ dct[:n].T  # H' × W' × v
            j += n
    if feat.shape[0] > 3:
        out[:, :, j:] = (F.avg_pool2d(feat[None, 3:], patch, stride=1)[0] * patch).permute(1, 2, 0)
    return out
