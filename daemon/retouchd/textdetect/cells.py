"""The cells of a lattice over one image: one copy of a repeated mark per cell, cut out and pasted back.

A cell is a patch covering one period of the lattice plus `MARGIN` px; it is cut at every lattice point whose
patch reaches the image (copies cut by the border included), with which of its pixels lie inside the image.
`median` votes over the copies, pixel by pixel.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect.lattice import Lattice
from retouchd.typing import Mask

MARGIN = 6

Floats = npt.NDArray[np.float32]


class Cells:
    """The lattice's cells over one image: where each copy lies, and cutting/pasting along them."""

    def __init__(self, shape: tuple[int, int], lattice: Lattice) -> None:
        self.basis = lattice.basis
        corners = np.abs(self.basis @ np.array([[0.5, 0.5, -0.5, -0.5], [0.5, -0.5, 0.5, -0.5]]))
        self.hx = math.ceil(float(corners[0].max())) + MARGIN
        self.hy = math.ceil(float(corners[1].max())) + MARGIN
        height, width = shape
        self.shape = shape
        self.origin = np.array([width // 2, height // 2], np.float64)
        edges = np.array([[-self.hx, -self.hy], [width + self.hx, -self.hy], [-self.hx, height + self.hy],
                          [width + self.hx, height + self.hy]], np.float64)
        reach = np.linalg.solve(self.basis, (edges - self.origin).T).T
        lo, hi = np.floor(reach.min(0)).astype(int), np.ceil(reach.max(0)).astype(int)
        self.points = []
        for m in range(lo[0], hi[0] + 1):
            for n in range(lo[1], hi[1] + 1):
                p = self.origin + self.basis @ (m, n)
                if -self.hx < p[0] < width + self.hx and -self.hy < p[1] < height + self.hy:
                    self.points.append(p)
        xs = np.arange(width, dtype=np.float32)[None, :] - np.float32(self.origin[0])
        ys = np.arange(height, dtype=np.float32)[:, None] - np.float32(self.origin[1])
        inverse = np.linalg.inv(self.basis).astype(np.float32)
        m = np.round(inverse[0, 0] * xs + inverse[0, 1] * ys)
        n = np.round(inverse[1, 0] * xs + inverse[1, 1] * ys)
        steps = self.basis.astype(np.float32)
        self.map_x = np.asarray(xs - steps[0, 0] * m - steps[0, 1] * n + self.hx, np.float32)
        self.map_y = np.asarray(ys - steps[1, 0] * m - steps[1, 1] * n + self.hy, np.float32)

    def cut(self, image: Floats) -> tuple[Floats, Mask]:
        """(copies, K×2hy×2hx[×C], of `image`; which of their pixels lie inside the image)."""
        size = (2 * self.hx, 2 * self.hy)
        height, width = self.shape
        patches, inside = [], []
        for p in self.points:
            patches.append(cv2.getRectSubPix(image, size, (float(p[0]) - 0.5, float(p[1]) - 0.5)))
            xs = p[0] - self.hx + np.arange(2 * self.hx)
            ys = p[1] - self.hy + np.arange(2 * self.hy)
            inside.append(((ys >= 0) & (ys <= height - 1))[:, None] & ((xs >= 0) & (xs <= width - 1))[None, :])
        return np.asarray(patches, np.float32), np.asarray(inside)

    def paste(self, cell: Floats) -> Floats:
        """The cell repeated over the whole image."""
        return np.asarray(cv2.remap(cell, self.map_x, self.map_y, cv2.INTER_LINEAR, borderValue=0.0), np.float32)


def median(stack: Floats, valid: Mask, need: int) -> Floats:
    """Per-pixel median over the copies of the valid samples (0 where fewer than `need`)."""
    ordered = np.sort(np.where(valid, stack, np.inf), axis=0)
    counted = valid.sum(axis=0)
    low = np.take_along_axis(ordered, np.maximum(counted - 1, 0)[None] // 2, axis=0)[0]
    high = np.take_along_axis(ordered, (counted // 2)[None], axis=0)[0] if len(stack) > 1 else low
    return np.asarray(np.where(counted >= need, (low + np.where(np.isfinite(high), high, low)) / 2, 0), np.float32)
