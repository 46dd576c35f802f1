"""Masks for the removal steps: sidecar files, rule regions, dilation. A mask is True where pixels go.

A sidecar is `<stem>.mask.png` or `<stem>_mask.png` beside the image (white = remove). It travels with
its image: the watcher never treats it as an image, and it is archived with it.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, ImageOps

from retouchd.exceptions import InputError
from retouchd.typing import Mask

Length: TypeAlias = int | float | str
"""Pixels (a number ≥ 0) or a percentage of the image side ("10%", "12.5%")."""

Region: TypeAlias = tuple[Length, Length, Length, Length]
"""[x, y, w, h]; x and w are measured along the width, y and h along the height."""

SIDECAR_SUFFIXES: tuple[str, ...] = (".mask.png", "_mask.png")

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


def is_sidecar(name: str) -> bool:
    """True for a file name that is a sidecar mask (case-insensitive), whether or not its image exists."""
    lowered = name.lower()
    return any(lowered.endswith(suffix) and len(lowered) > len(suffix) for suffix in SIDECAR_SUFFIXES)


def find_sidecar(image: Path) -> Path | None:
    """The sidecar mask beside `image`, if there is one; `.mask.png` wins over `_mask.png`.

    A symbolic link is never a sidecar: it could lead outside the inbox.
    """
    for suffix in SIDECAR_SUFFIXES:
        if len(os.fsencode(image.stem + suffix)) > 255:
            continue  # the image's name is so long that no sidecar name fits beside it
        for candidate in (image.with_name(image.stem + suffix), image.with_name(image.stem + suffix.upper())):
            if candidate != image and candidate.is_file() and not candidate.is_symlink():
                return candidate
    return None


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


def parse_length(value: Length) -> tuple[float, bool]:
    """(number, is_percent) for a region length; ValueError with the reason when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a length; use pixels (e.g. 40) or a percentage (e.g. \"10%\")")
    if isinstance(value, int | float):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not a length ≥ 0 in pixels")
        return float(value), False
    match = _PERCENT.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a length; use pixels (e.g. 40) or a percentage (e.g. \"10%\")")
    percent = float(match.group(1))
    if percent > 100:
        raise ValueError(f"{value!r} is more than 100%")
    return percent, True


def validate_region(region: Region | list[Length]) -> Region:
    """The region as a 4-tuple after checking every length; ValueError says what is wrong."""
    if len(region) != 4:
        raise ValueError(f"a region is [x, y, w, h], got {list(region)!r}")
    for value in region:
        parse_length(value)
    x, y, w, h = region
    return (x, y, w, h)


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
