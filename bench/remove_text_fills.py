"""Which fill for remove_text's letter holes: methods compared on the same hole, per stroke width and ring texture.

The overlays of `bench/remove_text.py` (same draws: `--set`, `--per-style`, `--seed`) are detected once by the
step (`when = "always"`); what the step would hand to `inpaint` (the image after un-blending bands, watermarks
and drop shadows, and the hole with its rim) is kept, and every method fills that same hole:

- `patch`: the default engine as the step calls it (thin components, no disc of radius > 4 px, go to the
  block-DCT fill `inpaint/thin.py`, the rest to patch search);
- `nothin`: patch search for every component; `thin`: the block-DCT fill for the whole hole; `telea`: OpenCV's
  fast marching for the whole hole;
- `percomp`: patch, each connected component of the hole in its own crop (not merged with the line's other
  letters: the other letters stay hole until their turn);
- `thin6`, `thin8`: patch with the thin fill taking components up to radius 6 / 8 px.

With `--truth` the hole is the true overlay's footprint (plus the same rim) on the overlaid image: what the fill
alone can restore. *restored* = share of the overlay's visible pixels (moved ≥ 30/255) within 30/255 of the clean
photo, as in `bench/remove_text.py`. Each visible pixel is binned by the hole's local half-width (the deepest
point of the hole within 4 px of it: a stroke's half-width, or a merged blob's) and by the ring's texture (mean
absolute luma detail, luma − its σ 2 blur, of the known pixels within 4 px of the hole, averaged over σ 6 px);
visible pixels outside the hole are "missed" (the mask's loss, or un-blended: band, watermark, shadow). Per
style also the hole's area over the overlay's footprint (how much wider than the overlay it is; a drop shadow's
footprint includes its whole blurred tail) and the share of visible overlay pixels it misses.

Run: PYTHONPATH=daemon python bench/remove_text_fills.py [--set tune|tune-extra|tune-b|holdout] [--per-style N]
     [--methods patch,thin,...] [--only cjk shadow ...] [--truth] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import remove_text as bench
import retouchd.steps.remove_text as step_module
from retouchd.inpaint.base import Box, Group, InpaintEngine
from retouchd.inpaint.patch import PatchEngine
from retouchd.inpaint.telea import TeleaEngine
from retouchd.inpaint.thin import ThinFill, ThinParams
from retouchd.steps.base import StepContext
from retouchd.textdetect.rim import take_rim
from retouchd.typing import Frame

from tests_support import overlays

HALF_WIDTHS = (0.0, 1.5, 2.5, 3.5, 4.5, 6.5, np.inf)
"""Bins of the hole's local half-width (px): ≤ 1.5 is a stroke up to 3 px wide, > 6.5 a blob over 13 px."""
WIDTH_NAMES = ("missed", "<=3px", "4-5px", "6-7px", "8-9px", "10-13px", ">13px")
TEXTURES = (0.0, 3.0, 6.0, 10.0, np.inf)
TEXTURE_NAMES = ("<3", "3-6", "6-10", ">10")
STYLES = ("price", "outline", "cjk", "shadow", "foliage", "cyrillic", "date")
"""The styles whose overlay is mostly filled (the band's and the tiled watermark's are un-blended)."""


class _NoThin(PatchEngine):
    thin = None


class _PerComponent(PatchEngine):
    def plan(self, stats: np.ndarray, width: int, height: int) -> list[Group]:
        """One crop per component, never merged with its neighbours."""
        out = []
        for label, (x, y, w, h, _area) in enumerate(stats.tolist(), start=1):
            margin = round(min(self.max_margin, max(self.min_margin, self.margin_factor * max(w, h))))
            box = Box(max(0, x - margin), max(0, y - margin), min(width, x + w + margin), min(height, y + h + margin))
            out.append(Group(box, (label,)))
        return out


class _Thin6(PatchEngine):
    thin = ThinParams(max_radius=6.0)


class _Thin8(PatchEngine):
    thin = ThinParams(max_radius=8.0)


METHODS: dict[str, type[InpaintEngine]] = {"patch": PatchEngine, "nothin": _NoThin, "thin": ThinFill,
                                           "telea": TeleaEngine, "percomp": _PerComponent, "thin6": _Thin6,
                                           "thin8": _Thin8}


def half_width(hole: np.ndarray) -> np.ndarray:
    depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.asarray(cv2.dilate(depth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) * hole)


def ring_texture(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    luma = rgb.astype(np.float32).mean(axis=2)
    detail = np.abs(luma - cv2.GaussianBlur(luma, (0, 0), 2.0))
    ring = ((cv2.dilate(hole.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~hole).astype(np.float32)
    weight = cv2.GaussianBlur(ring, (0, 0), 6.0)
    return np.asarray(cv2.GaussianBlur(detail * ring, (0, 0), 6.0) / np.maximum(weight, 1e-6))


class Holes:
    """The step up to its fill: (image handed to inpaint, hole) per overlaid image."""

    def __init__(self) -> None:
        self.runner = bench.Runner("patch", 1)
        self.seen: dict[str, np.ndarray] = {}

        def capture(rgb: np.ndarray, mask: np.ndarray, *, engine: str, ctx: StepContext) -> np.ndarray:
            self.seen["rgb"], self.seen["hole"] = rgb, mask
            return rgb

        step_module.inpaint = capture  # type: ignore[assignment]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.seen.clear()
        self.runner.always.run(Frame(image), self.runner.ctx)
        return self.seen.get("rgb", image), self.seen.get("hole", np.zeros(image.shape[:2], bool))


class Tally:
    def __init__(self, methods: list[str]) -> None:
        self.methods = methods
        self.images: dict[tuple[str, str], list[float]] = {}
        self.pixels: dict[tuple[str, int, int], list[int]] = {}
        self.cpu: dict[str, float] = dict.fromkeys(methods, 0.0)
        self.holes: dict[str, list[tuple[float, float]]] = {}
        """Per style: (hole area / overlay footprint area, share of visible overlay pixels outside the hole)."""

    def add(self, method: str, style: str, ok: np.ndarray, width: np.ndarray, texture: np.ndarray) -> None:
        self.images.setdefault((method, style), []).append(float(ok.mean()) if ok.size else 1.0)
        for w in range(-1, len(HALF_WIDTHS) - 1):
            for t in range(len(TEXTURES) - 1):
                pick = (width == w) & (texture == t)
                if pick.any():
                    cell = self.pixels.setdefault((method, w, t), [0, 0])
                    cell[0] += int(pick.sum())
                    cell[1] += int(ok[pick].sum())

    def share(self, method: str, keep: Callable[[int, int], bool]) -> tuple[int, float]:
        cells = [c for (m, w, t), c in self.pixels.items() if m == method and keep(w, t)]
        n = sum(c[0] for c in cells)
        return n, sum(c[1] for c in cells) / max(1, n)

    def report(self) -> None:
        head = " ".join(f"{m:>8s}" for m in self.methods)
        print(f"\nrestored per style (mean over images)\n{'style':10s} {'n':>3s} {head}")
        for style in dict.fromkeys(s for _, s in self.images):
            values = [np.mean(self.images[(m, style)]) for m in self.methods]
            n = len(self.images[(self.methods[0], style)])
            print(f"{style:10s} {n:3d} " + " ".join(f"{v:8.3f}" for v in values))
        print(f"\nhole against the overlay (mean over images)\n{'style':10s} {'hole/overlay':>12s} {'missed':>7s}")
        for style, pairs in self.holes.items():
            print(f"{style:10s} {np.mean([a for a, _ in pairs]):12.2f} {np.mean([m for _, m in pairs]):7.3f}")
        print("CPU s, all images: " + ", ".join(f"{m} {s:.1f}" for m, s in self.cpu.items()))
        print(f"\nrestored per hole half-width × ring texture (pixels pooled over styles)\n{'width':8s} {'ring':5s} "
              f"{'pixels':>7s} {head}")
        for w in range(-1, len(HALF_WIDTHS) - 1):
            for t in [-1] if w == -1 else range(len(TEXTURES) - 1):
                def keep(ww: int, tt: int, w: int = w, t: int = t) -> bool:
                    return ww == w and t in (-1, tt)
                n, _ = self.share(self.methods[0], keep)
                if n:
                    shares = [self.share(m, keep)[1] for m in self.methods]
                    ring = "" if t == -1 else TEXTURE_NAMES[t]
                    print(f"{WIDTH_NAMES[w + 1]:8s} {ring:5s} {n:7d} " + " ".join(f"{v:8.3f}" for v in shares))


def run(args: Any) -> Tally:
    holes = Holes()
    tally = Tally(args.methods)
    ctx = StepContext(rule="bench", source=Path("bench.png"), cpu_threads=1)

    def measure(kind: str, name: str, runner: Any, clean: np.ndarray, image: np.ndarray, footprint: np.ndarray,
                out: Path | None) -> bench.Row:
        if kind in STYLES and (not args.only or kind in args.only):
            rgb, hole = (image, take_rim(image, footprint)) if args.truth else holes(image)
            visible = np.abs(image.astype(np.int16) - clean.astype(np.int16)).mean(axis=2) >= bench.VISIBLE
            width = np.where(hole, np.digitize(half_width(hole), HALF_WIDTHS) - 1, -1)[visible]
            texture = (np.digitize(ring_texture(rgb, hole), TEXTURES) - 1)[visible]
            for method in args.methods:
                cpu = time.process_time()
                filled = METHODS[method](ctx).fill(rgb, hole) if hole.any() else rgb
                tally.cpu[method] += time.process_time() - cpu
                error = np.abs(filled.astype(np.int16) - clean.astype(np.int16)).mean(axis=2)
                tally.add(method, kind, error[visible] < bench.VISIBLE, width, texture)
            area = float(hole.sum()) / max(1, int(footprint.sum()))
            missed = float((visible & ~hole).sum()) / max(1, int(visible.sum()))
            tally.holes.setdefault(kind, []).append((area, missed))
            print(kind, name, " ".join(f"{m}={tally.images[(m, kind)][-1]:.3f}" for m in args.methods),
                  f"hole/overlay={area:.2f} missed={missed:.3f}", flush=True)
        return bench.Row(kind, name, False, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)

    bench.evaluate(args.subset, args.per_style, None, None, [*STYLES], measure, args.seed)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="subset", default="tune", choices=("tune", "tune-extra", "tune-b", "holdout"))
    parser.add_argument("--per-style", type=int, default=12)
    parser.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    parser.add_argument("--only", nargs="*", help=f"styles (default: {' '.join(STYLES)})")
    parser.add_argument("--truth", action="store_true", help="the true overlay (and its rim) as the hole")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    if unknown := [m for m in args.methods if m not in METHODS]:
        sys.exit(f"unknown methods: {', '.join(unknown)} (use {', '.join(METHODS)})")
    if overlays.missing_fonts():
        sys.exit(f"missing fonts: {', '.join(overlays.missing_fonts())}")
    cv2.setNumThreads(1)
    run(args).report()


if __name__ == "__main__":
    main()
