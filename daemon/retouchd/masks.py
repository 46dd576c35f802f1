"""Masks. (Lead's placeholder with the sidecar naming convention; the remove_objects engineer extends this.)"""

from __future__ import annotations

from pathlib import Path

SIDECAR_SUFFIXES = (".mask.png", "_mask.png")


def is_sidecar(name: str) -> bool:
    lowered = name.lower()
    return any(lowered.endswith(suffix) for suffix in SIDECAR_SUFFIXES)


def find_sidecar(image: Path) -> Path | None:
    for suffix in SIDECAR_SUFFIXES:
        candidate = image.with_name(image.stem + suffix)
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None
