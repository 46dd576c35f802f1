"""Late and lonely sidecar masks.

A photo and its `photo.mask.png` rarely arrive together (two uploads, a sync client, a person saving the
mask a little later). A rule that removes objects by sidecar mask therefore holds an image without its mask
for `watch.sidecar_wait` seconds before queueing it (and failing it for the missing mask). The other way
round, a mask whose image has not arrived after that time is an orphan: it is logged once and listed in the
status file, instead of sitting in the inbox without a word.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from retouchd.rules import Rule
from retouchd.sidecars import SIDECAR_SUFFIXES, is_sidecar

log = structlog.get_logger("retouchd.sidecars")


def needs_sidecar(rule: Rule) -> bool:
    """True when one of the rule's steps reads a sidecar mask."""
    return any(getattr(options, "mask", None) == "sidecar" for options in rule.steps)


def image_stem(mask_name: str) -> str:
    """`photo.mask.png` → `photo` (case-insensitive suffix)."""
    lowered = mask_name.lower()
    for suffix in SIDECAR_SUFFIXES:
        if lowered.endswith(suffix):
            return mask_name[: -len(suffix)]
    return mask_name


def has_image(mask: Path) -> bool:
    """Is there a file beside `mask` that the mask belongs to (same stem, any extension, not a mask)?"""
    stem = image_stem(mask.name)
    try:
        with os.scandir(mask.parent) as entries:
            return any(
                Path(e.name).stem == stem and not is_sidecar(e.name) and e.is_file(follow_symlinks=False)
                for e in entries
            )
    except OSError:
        return False


class SidecarWaits:
    """Images held for their mask, and masks still without their image."""

    def __init__(self, wait: float, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.wait = wait
        self._clock, self._wall = clock, wall
        self._images: dict[Path, tuple[str, float]] = {}
        self._masks: dict[Path, tuple[str, float]] = {}
        self._reported: set[Path] = set()
        self._lock = threading.Lock()  # the monitor thread reads while the main loop offers files

    def hold(self, rule: str, image: Path) -> bool:
        """True while `image` (which has no mask yet) should wait for one; False once the time is up."""
        now = self._clock()
        with self._lock:
            _, since = self._images.setdefault(image, (rule, now))
            if now - since < self.wait:
                return True
            del self._images[image]
        log.warning("no sidecar mask arrived in time; the image is processed without it",
                    rule=rule, path=str(image), waited=round(now - since, 1))
        return False

    def release(self, image: Path) -> None:
        """The image's mask is there (or it left the inbox): stop waiting."""
        with self._lock:
            self._images.pop(image, None)

    def saw_mask(self, rule: str, mask: Path) -> None:
        with self._lock:
            self._masks.setdefault(mask, (rule, self._clock()))

    def orphans(self) -> list[tuple[str, Path, float]]:
        """(rule, mask, seconds seen) for masks without an image for longer than the wait; forgets masks that
        left the inbox or found their image. Each new orphan is logged once."""
        now = self._clock()
        found = []
        with self._lock:
            masks = list(self._masks.items())
        for mask, (rule, since) in masks:
            if not os.path.lexists(mask) or has_image(mask):
                with self._lock:
                    self._masks.pop(mask, None)
                self._reported.discard(mask)
                continue
            if now - since >= self.wait:
                found.append((rule, mask, now - since))
                if mask not in self._reported:
                    self._reported.add(mask)
                    log.warning("sidecar mask without an image; drop its image beside it or remove the mask",
                                rule=rule, path=str(mask), image=f"{image_stem(mask.name)}.*")
        return found

    def snapshot(self) -> dict[str, Any]:
        """For the status file: images waiting (with the seconds left) and orphan masks (with their age)."""
        now = self._clock()
        with self._lock:
            images = list(self._images.items())
        waiting = [
            {"rule": rule, "path": str(path), "left": round(max(0.0, self.wait - (now - since)), 1)}
            for path, (rule, since) in images if os.path.lexists(path)
        ]
        orphans = [{"rule": rule, "path": str(path), "age": round(age, 1)} for rule, path, age in self.orphans()]
        return {"sidecar_wait": self.wait, "awaiting_sidecar": waiting, "orphan_masks": orphans}
