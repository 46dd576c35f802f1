"""A tiled watermark un-blended, not painted over: `I = αC + (1 − α)B` is inverted wherever it repeats.

The copies found by the detector (each a quad and its own letter mask, see `tiles`) are aligned to the first
by phase correlation; their voted letter shape, grown by `REACH` line heights (a first or last letter most
copies missed, anti-aliasing), is the template's support. Per copy the photo beneath the support is guessed by
diffusing the surroundings into it (Telea), and each pixel gives `α = (I − B̂)·(C − B̂) / |C − B̂|²` where the
photo is far enough from the watermark's colour C (white or black, from the sign of the step) to say anything.
The median over the copies cancels the guess's errors (grass under one copy, sky under the next): that is the
watermark's opacity, pixel by pixel.

The copies repeat on a lattice; its two shortest independent steps are fitted to the copies' centres, so the
copies the detector missed (over bright sky, cut by the border) are placed too, each refined by up to `SEARCH`
px against the image (half steps of the lattice are tried too). A copy is un-blended only where that makes its
patch *smoother* (less gradient energy in the support than before): a misplaced template would add letters,
not remove them (do no harm). Pixels whose inverse leaves [0, 255] or whose opacity is past `MAX_ALPHA` are
returned as clipped, to be filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect.db import Quad, quad_size
from retouchd.textdetect.tiles import MIN_COPIES, align
from retouchd.typing import Mask, RGBImage

RIM = 2
REACH = 0.4
ALPHA_FLOOR = 0.04
STRONG = 0.2
MIN_CONTRAST = 40.0
MAX_ALPHA = 0.8
SEARCH = 6
LATTICE_FIT = 3.0
SMOOTHER = 0.9
CLIPPED = 6.0

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, eq=False)
class TileBlend:
    """The watermark's opacity over the whole image and its colour."""

    alpha: Floats
    colour: tuple[float, float, float]
    copies: int
    """How many copies were un-blended (found and placed on the lattice)."""
    rim: Mask | None = None
    """Pixels to fill once un-blended: a single large mark's outline (`bigmark`), part letter, part photo."""


def _crop(image: Floats, origin: npt.NDArray[np.float64], half: int) -> tuple[Floats, Mask]:
    """The 2half×2half patch of `image` whose top-left pixel lies at the sub-pixel `origin`, and which of its
    pixels lie inside the image."""
    size = (2 * half, 2 * half)
    patch = cv2.getRectSubPix(image, size, (float(origin[0]) + half - 0.5, float(origin[1]) + half - 0.5))
    x0, y0 = origin[0], origin[1]
    xs = x0 + np.arange(2 * half)
    ys = y0 + np.arange(2 * half)
    inside = ((ys >= 0) & (ys <= image.shape[0] - 1))[:, None] & ((xs >= 0) & (xs <= image.shape[1] - 1))[None, :]
    return np.asarray(patch, np.float32), inside


def _opacity(image: Floats, centres: Sequence[npt.NDArray[np.float64]], support: Mask, letters: Mask,
             half: int) -> tuple[Floats, float] | None:
    """The template's α (median over the copies) and the watermark's colour level (0 or 255: the sign of
    the step on the voted letters themselves, not on the grown support, where most pixels show no mark)."""
    steps, guesses, patches, valid = [], [], [], []
    for centre in centres:
        patch, inside = _crop(image, centre, half)
        hole = cv2.dilate(support.astype(np.uint8), np.ones((3, 3), np.uint8))
        guess = cv2.inpaint(np.clip(patch, 0, 255).astype(np.uint8), hole, 5, cv2.INPAINT_TELEA).astype(np.float32)
        steps.append(float((patch - guess).mean(axis=2)[letters & inside].mean()) if (letters & inside).any()
                     else 0.0)
        guesses.append(guess)
        patches.append(patch)
        valid.append(inside)
    level = 255.0 if float(np.median(steps)) >= 0 else 0.0
    estimates = []
    for patch, guess, inside in zip(patches, guesses, valid, strict=True):
        gap = level - guess
        weight = (gap**2).sum(axis=2)
        alpha = ((patch - guess) * gap).sum(axis=2) / np.maximum(weight, 1.0)
        alpha[~inside | (weight < 3 * MIN_CONTRAST**2)] = np.nan
        estimates.append(alpha)
    stacked = np.stack(estimates)
    counted = np.isfinite(stacked).sum(axis=0)
    alpha = np.zeros(support.shape, np.float32)
    known = support & (counted >= max(2, len(centres) // 3))
    if not known.any():
        return None
    alpha[known] = np.nanmedian(stacked[:, known], axis=0)
    # Support pixels no copy could measure (the watermark over its own colour everywhere): from their
    # neighbours.
    unknown = support & ~known
    if unknown.any():
        scaled = np.clip(alpha * 255, 0, 255).astype(np.uint8)
        alpha = cv2.inpaint(scaled, unknown.astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32) / 255
    return np.clip(alpha, 0.0, 1.0) * support, level


def _lattice(centres: Sequence[npt.NDArray[np.float64]], shape: tuple[int, int],
             half: int) -> list[npt.NDArray[np.float64]]:
    """Every centre of the lattice through `centres` whose patch reaches the image (those given excepted)."""
    points = np.array(centres, np.float64)
    if len(points) < MIN_COPIES:
        return []
    steps = [points[j] - points[i] for i in range(len(points)) for j in range(len(points)) if i != j]
    steps = sorted((s for s in steps if np.hypot(*s) > half / 2), key=lambda s: float(np.hypot(*s)))
    if not steps:
        return []
    first = steps[0]
    second = next((s for s in steps if abs(first[0] * s[1] - first[1] * s[0]) > 0.5 * np.hypot(*first) *
                   np.hypot(*s)), None)
    if second is None:
        return []
    basis = np.array([first, second]).T
    coords = np.linalg.solve(basis, (points - points[0]).T).T
    whole = np.round(coords)
    design = np.column_stack([np.ones(len(points)), whole])
    fitted, *_ = np.linalg.lstsq(design, points, rcond=None)
    if np.abs(design @ fitted - points).max() > LATTICE_FIT:
        return []
    origin, step_a, step_b = fitted
    height, width = shape
    corners = np.array([[-half, -half], [width + half, -half], [-half, height + half], [width + half, height + half]])
    reach = np.linalg.solve(np.array([step_a, step_b]).T, (corners - origin).T).T
    lo, hi = np.floor(reach.min(0)).astype(int), np.ceil(reach.max(0)).astype(int)
    out = []
    # Half steps too: the copies found may span a coarser lattice than the watermark's (every other column
    # of a brick pattern). A position holding no copy is rejected later (un-blending it adds edges).
    for a in np.arange(lo[0], hi[0] + 0.5, 0.5):
        for b in np.arange(lo[1], hi[1] + 0.5, 0.5):
            centre = origin + a * step_a + b * step_b
            inside = -half < centre[0] < width + half and -half < centre[1] < height + half
            if inside and np.hypot(*(points - centre).T).min() > half / 2:
                out.append(centre)
    return out


def _refine(lum: Floats, template: Floats, centre: npt.NDArray[np.float64], half: int,
            sign: float) -> npt.NDArray[np.float64]:
    """The centre within ±SEARCH px where the image's local brightening best follows the template."""
    patch, _ = _crop(lum, centre - SEARCH, half + SEARCH)
    detail = np.ascontiguousarray(sign * (patch - cv2.GaussianBlur(patch, (0, 0), 4.0)), np.float32)
    kernel = (template - template.mean()).astype(np.float32)
    score = cv2.matchTemplate(detail, kernel, cv2.TM_CCORR)
    dy, dx = np.unravel_index(int(score.argmax()), score.shape)
    return centre + np.array([dx - SEARCH, dy - SEARCH], np.float64)


def _energy(patch: Floats, where: Mask) -> float:
    gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)
    return float((gx**2 + gy**2).sum(axis=2)[where].sum())


def _placed(image: Floats, alpha: Floats, origins: Sequence[npt.NDArray[np.float64]], level: float,
            half: int) -> tuple[Floats, list[tuple[npt.NDArray[np.float64], float]]]:
    """The opacity map of the copies at `origins` that un-blending smooths, and (origin, energy ratio) of those.
    Tried and dropped (no better on the tune photos): voting the opacity again from the copies the lattice
    found, or with every placed copy kept out of the photo guesses."""
    shape = image.shape[:2]
    out = np.zeros(shape, np.float32)
    kept = []
    for origin in origins:
        box = _box(origin, half, shape)
        if box is None:
            continue
        move = np.array([[1, 0, origin[0]], [0, 1, origin[1]]], np.float32)
        here = cv2.warpAffine(alpha, move, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)
        y0, y1, x0, x1 = box
        a = np.minimum(here[y0:y1, x0:x1], MAX_ALPHA)[..., None]
        before = image[y0:y1, x0:x1]
        after = (before - a * level) / (1 - a)
        where = here[y0:y1, x0:x1] > 0.02
        ratio = _energy(after, where) / max(_energy(before, where), 1e-6)
        if ratio <= SMOOTHER:
            out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], here[y0:y1, x0:x1])
            kept.append((origin, ratio))
    return out, kept


def _cleaned(alpha: Floats, template: Mask) -> Floats:
    """Next to the voted shape a faint opacity is the letters' rim; farther out only a clear one (a letter
    the vote missed) counts, with its own faint rim: chance matches of the photo are no watermark."""
    near = cv2.dilate(template.astype(np.uint8), np.ones((2 * RIM + 1,) * 2, np.uint8)) > 0
    strong = cv2.dilate((alpha >= STRONG).astype(np.uint8), np.ones((2 * RIM + 1,) * 2, np.uint8)) > 0
    return np.where((alpha < ALPHA_FLOOR) | ~(near | strong), 0, alpha).astype(np.float32)


def estimate(rgb: RGBImage, copies: Sequence[tuple[Quad, Mask]]) -> TileBlend | None:
    """The tiled watermark's opacity map and colour from its detected copies, or None."""
    aligned = align(copies)
    if aligned is None:
        return None
    half, centres, template = aligned
    # The vote can miss a first or last letter that most copies' masks cut off: the opacity is measured
    # `REACH` line heights around the voted shape, and what measures as no watermark there is dropped.
    line = max(quad_size(quad)[1] for quad, _ in copies)
    grow = 2 * max(RIM, round(REACH * line)) + 1
    support = cv2.dilate(template.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))) > 0
    image = rgb.astype(np.float32)
    found = _opacity(image, centres, support, template, half)
    if found is None:
        return None
    alpha, level = _cleaned(found[0], template), found[1]
    lum = np.ascontiguousarray(image.mean(axis=2))
    sign = 1.0 if level > 127 else -1.0
    missed = [c - half for c in _lattice([o + half for o in centres], rgb.shape[:2], half)]
    placed = list(centres) + [_refine(lum, alpha, o, half, sign) for o in missed]
    out, kept = _placed(image, alpha, placed, level, half)
    if len(kept) < MIN_COPIES:
        return None
    return TileBlend(out, (level, level, level), len(kept))


def _box(origin: npt.NDArray[np.float64], half: int, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, int(origin[0]) - 1), max(0, int(origin[1]) - 1)
    x1, y1 = min(shape[1], int(origin[0]) + 2 * half + 2), min(shape[0], int(origin[1]) + 2 * half + 2)
    return (y0, y1, x0, x1) if x1 > x0 and y1 > y0 else None


def apply(rgb: RGBImage, blend: TileBlend) -> tuple[RGBImage, Mask]:
    """`rgb` with the watermark inverted, and the pixels too opaque or clipped to invert (to be filled)."""
    alpha = blend.alpha
    where = alpha > 0
    a = np.minimum(alpha[where], MAX_ALPHA)[:, None]
    pixels = rgb[where].astype(np.float32)
    restored = (pixels - a * np.array(blend.colour, np.float32)) / (1 - a)
    clipped = np.zeros(alpha.shape, bool)
    clipped[where] = ((restored < -CLIPPED) | (restored > 255 + CLIPPED)).any(axis=1) | (alpha[where] > MAX_ALPHA)
    out = rgb.copy()
    out[where] = np.clip(np.round(restored), 0, 255).astype(np.uint8)
    return out, clipped


