"""Sidecar mask names: which file is a mask, and the mask beside an image (no image library needed)."""

from __future__ import annotations

import os
from pathlib import Path

SIDECAR_SUFFIXES: tuple[str, ...] = (".mask.png", "_mask.png")


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
