"""Remove JPEG blocking and ringing from a decoded frame, steered by the quality its tables give.

Shifted-DCT thresholding (re-application of the JPEG transform): the luma is cut into 8×8 blocks on all 64
grids shifted by 0…7 pixels, each block's DCT coefficients smaller than half the quantisation step of the
file's table are zeroed (the JPEG encoder had rounded most of them away; what is left there is mostly
blocking and ringing), and the 64 inverse transforms are averaged, each block weighted by 1 / the number of
coefficients it kept (a sparse block is a surer estimate). Last, the result is projected onto the
quantisation constraint set: on the file's own 8×8 grid, each coefficient is kept within half a step of the
decoded one, so nothing the file says is contradicted. Chroma is left alone (it is subsampled and the
metric, and the eye, follow the luma).

Measured on the 30 tune photos' thumbnails (full 768×512 frames downscaled, JPEG), PSNR-Y gain of the
deblocked luma over the decoded JPEG, against the uncompressed thumbnail: area q60 ×2 +1.32 dB, ×4 +1.19,
area q90 ×2 +1.26, Lanczos q75 ×3 +1.39. The former 16 grids (offsets 0/2/4/6), plainly averaged, gave
+1.08 / +0.97 / +1.06 / +1.14; 64 plain grids +1.23 / +1.10 / +1.18 / +1.28; 2 or 3 rounds of
threshold-and-project, soft thresholds or thresholds of 0.4 / 0.6 half-steps scored lower. The weighted 64
grids take 0.15 s on a 384×256 thumbnail (0.06 s before): a few % of the network's time.
"""

from __future__ import annotations

import numpy as np

from retouchd.degradation import ijg_table
from retouchd.typing import RGBImage

SHIFT_STEP = 1
"""Every grid offset 0…7 in each direction: 64 shifted transforms."""
PAD = 8

_K = np.arange(8)
DCT8 = np.sqrt(np.where(_K == 0, 1.0, 2.0) / 8)[:, None] * np.cos((2 * _K[None, :] + 1) * _K[:, None] * np.pi / 16)
"""The orthonormal 8-point DCT-II matrix (rows: frequencies)."""

RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
"""JFIF's RGB → YCbCr (before the +128 chroma offset), the transform the JPEG was made in."""


def _blocks(y: np.ndarray) -> np.ndarray:
    h, w = y.shape
    return y.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)


def _unblocks(blocks: np.ndarray) -> np.ndarray:
    rows, cols = blocks.shape[:2]
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3).reshape(rows * 8, cols * 8))


def dct_blocks(y: np.ndarray) -> np.ndarray:
    """8×8 block DCT of `y` (both sides multiples of 8): rows × cols × 8 × 8 coefficients."""
    return np.asarray(DCT8 @ _blocks(y) @ DCT8.T)


def idct_blocks(coefficients: np.ndarray) -> np.ndarray:
    return _unblocks(np.asarray(DCT8.T @ coefficients @ DCT8))


def deblock_luma(y: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`y` (the decoded luma, float, aligned to the file's 8×8 grid) with blocking and ringing removed.

    `table` is the 8×8 luminance quantisation table, natural order.
    """
    h, w = y.shape
    padded = np.pad(y, ((PAD, PAD + (-h) % 8), (PAD, PAD + (-w) % 8)), mode="reflect") - 128.0
    threshold = table / 2.0
    total = np.zeros_like(padded)
    weights = np.zeros_like(padded)
    for dy in range(0, 8, SHIFT_STEP):
        for dx in range(0, 8, SHIFT_STEP):
            rows, cols = (padded.shape[0] - dy) // 8 * 8, (padded.shape[1] - dx) // 8 * 8
            coefficients = dct_blocks(padded[dy : dy + rows, dx : dx + cols])
            keep = np.abs(coefficients) >= threshold
            keep[..., 0, 0] = True
            # A sparser block is a surer estimate: weight each by 1 / its kept coefficients.
            weight = 1.0 / np.count_nonzero(keep, axis=(2, 3))
            blocks = np.asarray(DCT8.T @ (coefficients * keep) @ DCT8) * weight[:, :, None, None]
            total[dy : dy + rows, dx : dx + cols] += _unblocks(blocks)
            weights[dy : dy + rows, dx : dx + cols] += _unblocks(np.broadcast_to(weight[:, :, None, None],
                                                                                 blocks.shape))
    smooth = np.where(weights > 0, total / np.where(weights > 0, weights, 1), padded)[PAD : PAD + h, PAD : PAD + w]
    # Quantisation constraint: on the file's own grid, stay within half a step of what the file decoded to.
    rows, cols = h // 8 * 8, w // 8 * 8
    decoded = dct_blocks(y[:rows, :cols] - 128.0)
    projected = np.clip(dct_blocks(smooth[:rows, :cols]), decoded - threshold, decoded + threshold)
    result = smooth + 128.0
    result[:rows, :cols] = idct_blocks(projected) + 128.0
    return result


def deblock(rgb: RGBImage, quality: int) -> np.ndarray:
    """`rgb` (a decoded JPEG of IJG-equivalent `quality`) deblocked in the luma; float32 RGB in [0, 255]."""
    ycc = np.asarray(rgb, dtype=np.float64) @ RGB_TO_YCC.T
    cleaned = deblock_luma(ycc[..., 0], ijg_table(quality).reshape(8, 8))
    ycc[..., 0] = cleaned
    out = ycc @ np.linalg.inv(RGB_TO_YCC).T
    return np.asarray(np.clip(out, 0, 255), dtype=np.float32)
