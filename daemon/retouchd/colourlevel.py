"""Keep an enlarged image's colour levels those of its input.

A network may shift the level of a region (Real-ESRGAN x4plus darkened a JPEG crop of gravel by about 7
levels). Shrinking the output back to the input size (area average) and comparing shows the shift; its
low-pass part — a Gaussian a few input pixels wide, so edges and texture are left to the network — is
enlarged smoothly and added back. Detail finer than the low-pass is untouched.
"""

from __future__ import annotations

import numpy as np

from retouchd.typing import RGBImage

SIGMA = 3.0
"""Low-pass width in input pixels: wide enough to leave the network's detail alone, narrow enough to follow
a shift that differs between regions."""


def match_levels(source: RGBImage, output: RGBImage, sigma: float = SIGMA) -> tuple[RGBImage, float]:
    """`output` with its low-frequency colour moved onto `source`'s; also the largest mean shift removed.

    The shift is measured per channel as the mean of (source − output shrunk to the source's size), in levels.
    """
    import cv2

    height, width = source.shape[:2]
    shrunk = cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    difference = source.astype(np.float32) - shrunk
    shift = float(np.abs(difference.reshape(-1, 3).mean(axis=0)).max())
    smooth = cv2.GaussianBlur(difference, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    out_h, out_w = output.shape[:2]
    correction = cv2.resize(smooth, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    corrected = np.clip(output.astype(np.float32) + correction, 0, 255)
    return np.rint(corrected).astype(np.uint8), shift
