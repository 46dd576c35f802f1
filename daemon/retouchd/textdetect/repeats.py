"""A tiled watermark found and measured as a repeated pattern: no text is read.

`lattice.find` gives the steps along which the image repeats exactly. One cell of the lattice (a patch
covering a period, plus `cells.MARGIN`) is cut at every lattice point that reaches the image, copies cut by the
border included; the copies show the same watermark over different parts of the photo. Then:

1. Shape: the median over the copies of the fine detail is the watermark's own detail (the photo's
   averages out); the pixels standing `SHAPE_SIGMAS` robust sigmas out on one side (bright, then dark:
   the other side holds the strokes' halo), without specks, are its strokes; grown by `RIM` px for the
   anti-aliased rim, its support. It must look like lettering: thin strokes, separate copies (`_lettering`:
   grout and mortar form one network, windows are wide blobs).
2. Opacity (`blendfit`): the photo beneath the support is guessed everywhere at once from the pixels around it
   (normalised convolution); each pixel gives `α = (I − B̂)·(C − B̂) / |C − B̂|²` where the photo is far
   enough from the colour C to say anything, and the median over the copies is the watermark's α, pixel by
   pixel (the guess's errors — grass under one copy, sky under the next — cancel). Run twice, the second
   time with the support the first measured.
3. Colour and evidence (`blendfit`): across the copies, a mark lying over the photo steps `I − B = α(C − B)`: in
   proportion to the photo's distance from one colour C. The per-pixel line through the copies gives α
   (slope) and C (offset / slope); a scene's own opaque pattern gives no such line, or the surface beneath
   it never varies enough to fit one: rejected. Un-blending must also take the mark's edges out of most
   copies (`_smoothed`).
4. A place on the lattice the layout left empty would be drawn in negative: copies whose un-blended photo
   follows the opacity the wrong way are left alone (`_gated`).

`textdetect.detect` runs this before any reading and un-blends what it finds; only its clipped pixels are
filled.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect import blendfit as fit
from retouchd.textdetect import channels
from retouchd.textdetect.blendfit import MIN_BLOB, MIN_CONTRAST, MIN_COPIES
from retouchd.textdetect.cells import Cells as _Cells
from retouchd.textdetect.cells import median as _median
from retouchd.textdetect.lattice import Lattice, detail, repeat_height
from retouchd.textdetect.lattice import find as find_lattice
from retouchd.textdetect.watermark import TileBlend
from retouchd.typing import Mask, RGBImage

SHAPE_SIGMAS = 4.0
RIM = 2
ALPHA_FLOOR = 0.03
MAX_SUPPORT = 0.35
"""A 'watermark' covering more of its cell than this is the photo's texture."""
MAX_STROKE = 0.06
"""Widest stroke half-width (99th percentile) a repeated shape may have, as a share of the lattice's shortest
step: lettering is drawn with thin strokes."""
NETWORK = 0.6
"""A connected part of the repeated shape this long (share of the image's long side) is a network — grout,
mortar — not copies of a mark."""
SMOOTHER = 0.5
"""Share of a copy's edges along the mark's that un-blending may leave (tune: 0.00–0.10 on true marks)."""
GATE = 0.6
"""Correlation of the un-blended photo against the opacity, the wrong way, that marks a copy the layout left
out (tune, 3 seeds × 30 photos: changed outside the overlay at most 0.08 % instead of 0.31 %)."""
WORD = 4
"""Px the strokes are grown by to join one copy's letters into one part (a copy is gated whole)."""
MIN_SMOOTHED = 0.7
MIN_VOTES = 2
RESIDUE = 0.2

Floats = npt.NDArray[np.float32]


def _grow(mask: Mask, radius: int) -> Mask:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.asarray(cv2.dilate(mask.astype(np.uint8), kernel) > 0)


def _in_cells(cells: _Cells, mask: Mask) -> Mask:
    """A periodic image mask as one cell of `cells`."""
    cut, inside = cells.cut(mask.astype(np.float32))
    return np.asarray((cut * inside).sum(axis=0) >= 0.5 * np.maximum(inside.sum(axis=0), 1))


def _shape(image: Floats, lattice: Lattice) -> list[tuple[Mask, Mask, float]]:
    """[(strokes, support, sign)] over the whole image: the median of the copies' fine detail, voted on the
    lattice of single copies (more of them than whole cells when the layout is staggered), standing out on
    the bright side (a white mark) or the dark side; the likelier first (the other side holds the strokes'
    halo, which the blend model then rejects)."""
    cells = _Cells(image.shape[:2], lattice.copies)
    fine = detail(np.ascontiguousarray(channels.mean(image)))
    detail_cells, inside = cells.cut(fine)
    if len(cells.points) < MIN_COPIES:
        return []
    shape = _median(detail_cells, inside, max(3, int(inside.sum(axis=0).max()) // 3))
    spread = 1.4826 * float(np.median(np.abs(shape[shape != 0]))) + 1e-3
    first = 1.0 if float(np.percentile(shape, 99.5)) >= -float(np.percentile(shape, 0.5)) else -1.0
    out = []
    for sign in (first, -first):
        strokes = _blobs(sign * shape > SHAPE_SIGMAS * spread)
        support = _grow(strokes, RIM)
        if not support.any() or support.mean() > MAX_SUPPORT:
            continue
        tiled = cells.paste(strokes.astype(np.float32)) > 0.5
        if tiled.any() and _lettering(tiled, lattice.copies):
            out.append((tiled, cells.paste(support.astype(np.float32)) > 0.5, sign))
    return out


def _blobs(mask: Mask) -> Mask:
    """`mask` without its specks (under `MIN_BLOB` px): a few copies' photo agreeing by chance, not a stroke."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= MIN_BLOB
    return np.asarray(keep[labels])


def _lettering(strokes: Mask, lattice: Lattice) -> bool:
    """True when the repeated shape is drawn with thin strokes in separate copies, as lettering and logos are:
    the grout of wall tiles or a brick wall's mortar is one network across the image, a facade's windows are
    wide blobs."""
    step = float(np.hypot(*lattice.basis.T).min())
    radius = cv2.distanceTransform(strokes.astype(np.uint8), cv2.DIST_L2, 3)
    if float(np.percentile(radius[strokes], 99)) > MAX_STROKE * step:
        return False
    # Grown past the rim: grout broken at its crossings is still one network.
    count, _, stats, _ = cv2.connectedComponentsWithStats(_grow(strokes, RIM + 1).astype(np.uint8), connectivity=8)
    extent = stats[1:, cv2.CC_STAT_WIDTH : cv2.CC_STAT_HEIGHT + 1].max(axis=1) if count > 1 else np.zeros(1)
    return bool(float(extent.max()) < NETWORK * max(strokes.shape))


def _gradient(image: Floats) -> tuple[Floats, Floats]:
    lum = np.ascontiguousarray(channels.mean(image) if image.ndim == 3 else image)
    return (np.asarray(cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3), np.float32),
            np.asarray(cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3), np.float32))


def _smoothed(image: Floats, cells: _Cells, alpha: Floats, level: Floats) -> float:
    """Share of the copies whose mark un-blending takes away: the photo's gradient along the opacity's
    gradient (the mark's edges) drops to under `SMOOTHER` of what it was, either way (a wrong guess draws the
    mark in negative). Counted among the copies with enough of their support inside the image and over a
    photo far enough from the mark's colour to show it (over its own colour a mark is invisible, and
    un-blending only scales the photo's noise). The mark's edges, not all the gradient energy: un-blending
    rightly brings back the photo's own edges at full contrast, and over a photo of stripes those outweigh
    the mark's."""
    a = np.minimum(alpha, 0.8)[..., None]
    patches, inside = cells.cut(image)
    where = _grow(alpha > ALPHA_FLOOR, 1)
    if not where.any():
        return 0.0
    ax, ay = _gradient(alpha)
    votes = []
    for patch, valid in zip(patches, inside, strict=True):
        here = where & valid
        if here.sum() < 0.3 * where.sum() or float(channels.mean(np.abs(patch - level))[here].mean()) < MIN_CONTRAST:
            continue
        after = np.clip((patch - a * level) / (1 - a), 0, 255)
        edges = [float((gx * ax + gy * ay)[here].sum()) for gx, gy in (_gradient(patch), _gradient(after))]
        votes.append(abs(edges[1]) <= SMOOTHER * abs(edges[0]))
    return float(np.mean(votes)) if len(votes) >= MIN_VOTES else 0.0


def measure(rgb: RGBImage, lattice: Lattice) -> TileBlend | None:
    """The watermark repeating along `lattice` in `rgb`: its opacity over the image and colour, or None."""
    image = rgb.astype(np.float32)
    cells = _Cells(rgb.shape[:2], lattice)
    if len(cells.points) < MIN_COPIES:
        return None
    single = None if lattice.motif is None else _Cells(rgb.shape[:2], lattice.copies)
    for strokes, hole, sign in _shape(image, lattice):
        found = _unblended(image, cells, single, strokes, hole, 255.0 if sign > 0 else 0.0)
        if found is not None:
            return replace(found, copies=len((single or cells).points))
    return None


def _unblended(image: Floats, cells: _Cells, single: _Cells | None, strokes: Mask, hole: Mask,
               level: float) -> TileBlend | None:
    """The blend of the mark whose strokes (and their rim: `hole`) are given over the image, when it is one."""
    support = _in_cells(cells, hole)
    beneath = fit.guess(image, _grow(hole, 1))
    alpha = fit.opacity(image, beneath, cells, single, support, level)
    support = _grow(alpha > ALPHA_FLOOR, RIM) & support
    beneath = fit.guess(image, _grow(cells.paste(support.astype(np.float32)) > 0.5, 1))
    alpha = fit.opacity(image, beneath, cells, single, support, level)
    measured = fit.colour(image, beneath, cells, _in_cells(cells, strokes), level)
    if measured is None:
        return None
    colour, assumed = measured
    if float(np.abs(colour - level).max()) > 0:
        alpha = fit.opacity(image, beneath, cells, single, support, colour)
    marks = fit.marks(image, beneath, cells, _in_cells(cells, strokes), level)
    alpha[(alpha < ALPHA_FLOOR) | ~_grow(marks, RIM + 1)] = 0
    if _smoothed(image, cells, alpha, colour) < MIN_SMOOTHED:
        return None
    opacity = _gated(image, cells.paste(alpha), colour)
    if assumed and not _explained(image, opacity, colour, (single or cells).basis):
        return None
    return TileBlend(opacity, (float(colour[0]), float(colour[1]), float(colour[2])), len(cells.points))


def _explained(image: Floats, alpha: Floats, colour: Floats, basis: npt.NDArray[np.float64]) -> bool:
    """True when the mark explains the image's repeats: un-blended, the image repeats along the lattice less
    than `RESIDUE` as strongly. Asked of a mark whose colour was assumed (no blend could be fitted, or none
    pinned its colour down): a facade's white window frames over a plain wall look like a translucent white
    mark, but their glass still repeats (the test fixtures: 0.34–0.55 left; tune and holdout watermarks
    0.04–0.30, 0.11 over a pale wooden board)."""
    a = np.minimum(alpha, 0.8)[..., None]
    after = np.clip((image - a * colour) / (1 - a), 0, 255)
    before_height, after_height = (repeat_height(np.ascontiguousarray(channels.mean(x)), basis) for x in (image, after))
    return after_height <= RESIDUE * before_height


def _gated(image: Floats, alpha: Floats, colour: Floats) -> Floats:
    """`alpha` without the copies where un-blending draws the mark in negative (the un-blended photo follows
    the opacity the wrong way, correlation past `GATE`): places on the lattice the layout left empty."""
    a = np.minimum(alpha, 0.8)
    after = ((channels.mean(image) - a * float(colour.mean())) / (1 - a)).astype(np.float64)
    where = _grow(alpha > 0, RIM)
    count, labels = cv2.connectedComponents(_grow(alpha > 0, WORD).astype(np.uint8), connectivity=8)
    inside = labels[where]
    x, y = a[where].astype(np.float64), after[where]
    sums = [np.bincount(inside, w, count) for w in (np.ones_like(x), x, y, x * x, y * y, x * y)]
    n, sx, sy, sxx, syy, sxy = (np.maximum(v, 1e-9) if i == 0 else v for i, v in enumerate(sums))
    cov = sxy / n - sx * sy / n**2
    spread = np.sqrt(np.maximum(sxx / n - (sx / n) ** 2, 0) * np.maximum(syy / n - (sy / n) ** 2, 0)) + 1e-9
    sign = 1.0 if float(colour.mean()) > 127 else -1.0
    negative = sign * cov / spread < -GATE
    negative[0] = False
    return np.asarray(np.where(negative[labels], 0, alpha), np.float32)


def find(rgb: RGBImage) -> TileBlend | None:
    """A tiled watermark over `rgb`, found from its repeats alone, or None."""
    lattice = find_lattice(rgb)
    return None if lattice is None else measure(rgb, lattice)
