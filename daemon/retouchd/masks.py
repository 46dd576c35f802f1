"""Masks for the removal steps: sidecar files, rule regions, dilation. A mask is True where pixels go.

A sidecar is `<stem>.mask.png` or `<stem>_mask.png` beside the image (white = remove). It travels with
its image: the watcher never treats it as an image, and it is archived with it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from retouchd.exceptions import InputError
from retouchd.regions import Length, Region, parse_length, validate_region
from retouchd.sidecars import SIDECAR_SUFFIXES, find_sidecar, is_sidecar
from retouchd.typing import Mask

if TYPE_CHECKING:
    import torch

__all__ = ["SIDECAR_SUFFIXES", "Length", "Region", "box_around", "components", "dilate", "find_sidecar", "is_sidecar",
           "load_sidecar", "parse_length", "region_box", "regions_mask", "validate_region"]


def load_sidecar(path: Path, width: int, height: int, data: bytes | None = None) -> Mask:
    """Read a sidecar as a width×height mask: white (≥ 128) = remove, resized nearest-neighbour.

    Transparent pixels count as black, so a mask painted on a transparent layer works too.
    """
    try:
        with warnings.catch_warnings():
            # A huge mask is read like a huge image: refused, with our message instead of Pillow's warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
    except FileNotFoundError as exc:
        raise InputError(f"sidecar mask {path} disappeared before it could be read; drop it again") from exc
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"sidecar mask {path} is not a readable image ({exc}); replace it with a PNG") from exc
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        gray_alpha = np.asarray(image.convert("LA"))
        values = np.where(gray_alpha[..., 1] >= 128, gray_alpha[..., 0], 0).astype(np.uint8)
    else:
        values = np.asarray(image.convert("L"))
    if values.shape != (height, width):
        values = np.asarray(Image.fromarray(values).resize((width, height), Image.Resampling.NEAREST))
    return np.ascontiguousarray(values >= 128)


def region_box(region: Region, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in pixels, clipped to the image; percentages are of the width (x, w) or height (y, h)."""

    def pixels(value: Length, side: int) -> float:
        number, percent = parse_length(value)
        return number * side / 100 if percent else number

    x, y = pixels(region[0], width), pixels(region[1], height)
    w, h = pixels(region[2], width), pixels(region[3], height)
    x0, y0 = min(width, round(x)), min(height, round(y))
    return x0, y0, max(x0, min(width, round(x + w))), max(y0, min(height, round(y + h)))


def regions_mask(regions: list[Region], width: int, height: int) -> Mask:
    """The union of the regions as a mask of the image's size."""
    mask = np.zeros((height, width), dtype=bool)
    for region in regions:
        x0, y0, x1, y1 = region_box(region, width, height)
        mask[y0:y1, x0:x1] = True
    return mask


def dilate(mask: Mask, px: int) -> Mask:
    """Grow the mask by `px` pixels in every direction (a disc, not a square)."""
    if px <= 0 or not mask.any():
        return mask
    import cv2

    outside = np.where(mask, 0, 255).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.ascontiguousarray(distance <= px)


def components(mask: Mask) -> int:
    """The number of 8-connected parts of the mask."""
    if not mask.any():
        return 0
    import cv2

    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return int(count) - 1


def box_around(mask: Mask | torch.Tensor, margin: int) -> tuple[slice, slice] | None:
    """The rows and columns of `mask`'s bounding box grown by `margin` px on every side and clipped to the
    image, as slices (a numpy mask or a torch one, on any device); None when nothing is set. Steps that work
    near a hole crop to this instead of the whole image."""
    height, width = mask.shape[:2]
    rows, columns = (np.flatnonzero(_on_host(mask.any(axis))) for axis in (1, 0))
    if rows.size == 0:
        return None
    return (slice(max(0, int(rows[0]) - margin), min(height, int(rows[-1]) + margin + 1)),
            slice(max(0, int(columns[0]) - margin), min(width, int(columns[-1]) + margin + 1)))


def _on_host(flags: object) -> Mask:
    return np.asarray(flags.cpu() if hasattr(flags, "cpu") else flags, dtype=bool)
