"""A tiled watermark found and measured as a repeated pattern: no text is read.

`lattice.find` gives the steps along which the image repeats exactly. One cell of the lattice (a patch
covering a period, plus `cells.MARGIN`) is cut at every lattice point that reaches the image, copies cut by the
border included; the copies show the same watermark over different parts of the photo. Then:

1. Shape: the median over the copies of the fine detail is the watermark's own detail (the photo's
   averages out); the pixels standing `SHAPE_SIGMAS` robust sigmas out on one side (bright, then dark:
   the other side holds the strokes' halo), without specks, are its strokes; grown by `RIM` px for the
   anti-aliased rim, its support. It must look like lettering: thin strokes, separate copies (`_lettering`:
   grout and mortar form one network, windows are wide blobs).
2. Opacity: the photo beneath the support is guessed everywhere at once from the pixels around it
   (normalised convolution); each pixel gives `α = (I − B̂)·(C − B̂) / |C − B̂|²` where the photo is far
   enough from the colour C to say anything, and the median over the copies is the watermark's α, pixel by
   pixel (the guess's errors — grass under one copy, sky under the next — cancel). Run twice, the second
   time with the support the first measured.
3. Colour and evidence: across the copies, a mark lying over the photo steps `I − B = α(C − B)`: in
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

from retouchd.textdetect.cells import Cells as _Cells
from retouchd.textdetect.cells import median as _median
from retouchd.textdetect.lattice import Lattice, detail, repeat_height
from retouchd.textdetect.lattice import find as find_lattice
from retouchd.textdetect.watermark import TileBlend
from retouchd.typing import Mask, RGBImage

SHAPE_SIGMAS = 4.0
RIM = 2
MIN_BLOB = 12
GUESS_SIGMA = 3.0
MIN_CONTRAST = 40.0
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
MIN_COPIES = 4
MIN_VOTES = 2
TRANSLUCENT = (0.05, 0.85)
"""Median opacity of the strokes a watermark has (fainter is noise, more is an opaque pattern)."""
MIN_VARIATION = 15.0
"""Spread (levels) of the photo beneath a stroke pixel across the copies needed to fit its blend."""
MIN_VARIED = 0.3
"""Share of the stroke pixels over a photo that varies that much between the copies."""
OUTLIER = 3.0
COLOUR_SPREAD = 60.0
"""Spread (robust sigma, levels) of the colour the stroke pixels imply, past which they are no one mark."""
SAME_COLOUR = 15.0
OFF_COLOUR = 120.0
EVEN_SPREAD = 0.1
RESIDUE = 0.2

Floats = npt.NDArray[np.float32]


def _grow(mask: Mask, radius: int) -> Mask:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.asarray(cv2.dilate(mask.astype(np.uint8), kernel) > 0)


def _guess(image: Floats, hole: Mask) -> Floats:
    """The photo beneath `hole`, from the pixels around it (normalised convolution)."""
    keep = (~hole).astype(np.float32)
    total = cv2.GaussianBlur(image * keep[..., None], (0, 0), GUESS_SIGMA)
    weight = cv2.GaussianBlur(keep, (0, 0), GUESS_SIGMA)[..., None]
    return np.asarray(np.where(hole[..., None], total / np.maximum(weight, 1e-6), image), np.float32)


def _vote(cells: _Cells, alpha: Floats, valid: Mask, where: Mask | None = None) -> tuple[Floats, Mask]:
    """(median over the copies of each cell pixel's opacity, where enough copies measured it), computed
    `where` given (everywhere by default)."""
    alpha_cells, inside = cells.cut(alpha)
    valid_cells, _ = cells.cut(valid.astype(np.float32))
    need = max(3, int(inside.sum(axis=0).max()) // 3)
    usable = inside & (valid_cells > 0.5)
    if where is None:
        return _median(alpha_cells, usable, need), usable.sum(axis=0) >= need
    out = np.zeros(where.shape, np.float32)
    out[where] = _median(alpha_cells[:, where], usable[:, where], need)
    return out, (usable.sum(axis=0) >= need) & where


def _opacity(image: Floats, beneath: Floats, cells: _Cells, single: _Cells | None, support: Mask,
             level: float | Floats) -> Floats:
    """The median over the copies of each pixel's opacity, within the cell's `support`, given the photo
    `beneath`. Pixels too few whole cells measured take the vote of the single copies (`single`, when the
    layout is staggered: more copies, half a pixel apart)."""
    gap = level - beneath
    weight = (gap**2).sum(axis=2)
    alpha = np.asarray(((image - beneath) * gap).sum(axis=2) / np.maximum(weight, 1.0), np.float32)
    valid = weight >= 3 * MIN_CONTRAST**2
    out, known = _vote(cells, alpha, valid, support)
    if single is not None and not known[support].all():
        voted, measured = _vote(single, alpha, valid)
        spread, inside = cells.cut(single.paste(voted))
        counted, _ = cells.cut(single.paste(measured.astype(np.float32)))
        usable = inside & (counted > 0.5)
        fallback = (spread * usable).sum(axis=0) / np.maximum(usable.sum(axis=0), 1)
        out = np.where(known | ~usable.any(axis=0), out, fallback)
    out[~support] = 0
    return np.asarray(np.clip(out, 0.0, 1.0), np.float32)


def _line(x_image: Floats, y_image: Floats, cells: _Cells, core: Mask) -> tuple[Floats, Floats, Mask]:
    """(slope, offset, fitted?) per `core` pixel of the cell: the least-squares line `y = slope·x + offset`
    through its copies, fitted where x varies by `MIN_VARIATION` or more between them; refitted once without
    the copies `OUTLIER` robust sigmas off it (a place the layout left empty, a guess gone wrong)."""
    x, inside = cells.cut(np.ascontiguousarray(x_image))
    y, _ = cells.cut(np.ascontiguousarray(y_image))
    xs, ys, valid = x[:, core], y[:, core], inside[:, core]
    for _ in range(2):
        count = np.maximum(valid.sum(axis=0), 1)
        mx, my = (xs * valid).sum(axis=0) / count, (ys * valid).sum(axis=0) / count
        vx = (((xs - mx) ** 2) * valid).sum(axis=0) / count
        cxy = ((xs - mx) * (ys - my) * valid).sum(axis=0) / count
        slope = cxy / np.maximum(vx, 1e-6)
        offset = my - slope * mx
        residual = np.abs(ys - slope * xs - offset)
        spread = _median(residual, valid, 1)
        valid = valid & (residual <= np.maximum(OUTLIER * 1.4826 * spread, 4.0))
    fitted = (valid.sum(axis=0) >= 3) & (vx >= MIN_VARIATION**2)
    return slope, offset, fitted


def _implied(slope: Floats, offset: Floats, fitted: Mask, need: float) -> tuple[float, float] | None:
    """(median, robust spread) of the colour offset `offset / slope` the fitted pixels imply, if enough."""
    usable = fitted & (slope >= TRANSLUCENT[0])
    if usable.sum() < max(need, 1):
        return None
    implied = offset[usable] / slope[usable]
    middle = float(np.median(implied))
    return middle, 1.4826 * float(np.median(np.abs(implied - middle)))


def _colour(image: Floats, beneath: Floats, cells: _Cells, core: Mask,
            level: float) -> tuple[Floats, bool] | None:
    """The mark's colour C, when it lies over the photo: across the copies its step `I − B` grows in proportion
    to the photo's distance from a colour (`I − B = α(C − B)`: slope α, and an offset that implies the same
    colour at every stroke pixel). A scene's own pattern is opaque (its step shrinks as the surface
    brightens), or the surface beneath it never varies enough to tell: None. A colour within `SAME_COLOUR` of
    white (black) is taken as white (black): the guess of the photo beneath is smooth, and its errors lean.
    With it, whether it was taken from a photo too even to fit (`_even`)."""
    gap, step = level - beneath, image - beneath
    need = MIN_VARIED * core.sum()
    slope, offset, fitted = _line(gap.mean(axis=2), step.mean(axis=2), cells, core)
    grey = _implied(slope, offset, fitted, need)
    few = float(np.median(slope[fitted])) if fitted.sum() >= MIN_BLOB else None
    if grey is None and (few is None or TRANSLUCENT[0] <= few <= TRANSLUCENT[1]) and \
            _even(gap.mean(axis=2), step.mean(axis=2), cells, core):
        return np.full(3, level, np.float32), True
    if grey is None or not TRANSLUCENT[0] <= float(np.median(slope[fitted])) <= TRANSLUCENT[1] or \
            grey[1] > COLOUR_SPREAD:
        return None
    colour = np.full(3, level + grey[0], np.float32)
    for channel in range(3):
        own = _implied(*_line(gap[..., channel], step[..., channel], cells, core), need)
        if own is not None:
            colour[channel] = level + own[0]
    colour = np.clip(colour, 0, 255)
    return (np.full(3, level, np.float32) if float(np.abs(colour - level).max()) <= SAME_COLOUR else colour), False


def _even(gap: Floats, step: Floats, cells: _Cells, core: Mask) -> bool:
    """True when the photo beneath the strokes is too even across the copies to fit the blend's line (fewer
    than `MIN_VARIED` of the stroke pixels vary by `MIN_VARIATION`: one pale wooden board), yet every copy
    steps toward the mark's level by the same translucent share (per copy, the median over the strokes of
    `step / gap` within `TRANSLUCENT`, spread under `EVEN_SPREAD`): the mark is taken to be white (black).
    The few pixels that do vary must fit a translucent line too (a facade's opaque window frames: slope 1)."""
    gaps, inside = cells.cut(np.ascontiguousarray(gap))
    steps, _ = cells.cut(np.ascontiguousarray(step))
    gaps, steps, valid = gaps[:, core], steps[:, core], inside[:, core] & (np.abs(gaps[:, core]) >= MIN_CONTRAST)
    counted = np.maximum(valid.sum(axis=0), 1)
    mean = (gaps * valid).sum(axis=0) / counted
    spread = np.sqrt((((gaps - mean) ** 2) * valid).sum(axis=0) / counted)
    measured = valid.sum(axis=0) >= 3
    if measured.sum() < MIN_VARIED * core.sum() or (spread[measured] >= MIN_VARIATION).mean() >= MIN_VARIED:
        return False
    shares = [float(np.median(s[v] / g[v])) for g, s, v in zip(gaps, steps, valid, strict=True)
              if v.sum() >= MIN_VARIED * core.sum()]
    if len(shares) < MIN_COPIES:
        return False
    middle = float(np.median(shares))
    return TRANSLUCENT[0] <= middle <= TRANSLUCENT[1] and float(np.std(shares)) <= EVEN_SPREAD


def _marks(image: Floats, beneath: Floats, cells: _Cells, core: Mask, level: float) -> Mask:
    """The parts of the repeated shape (`core`, in the cell) that lie over the photo as the mark does: their
    step across the copies follows the photo's distance from the mark's level (median slope at least
    `TRANSLUCENT[0]`, implied colour within `OFF_COLOUR` of it). A photo that nearly repeats along the
    lattice too (the waves of a facade) adds its own streaks to the shape, whose step does not (tune and
    holdout: slope ≤ 0.02 or colours thousands of levels off, the letters' 0.3–0.6 and within 65 levels).
    Parts over a photo too even across the copies to fit are kept."""
    slope, offset, fitted = _line((level - beneath).mean(axis=2), (image - beneath).mean(axis=2), cells, core)
    count, labels = cv2.connectedComponents(core.astype(np.uint8), connectivity=8)
    keep = np.ones(count, bool)
    keep[0] = False
    parts = labels[core]
    for part in range(1, count):
        mine = (parts == part) & fitted
        if mine.sum() < MIN_VARIED * (parts == part).sum():
            continue
        implied = offset[mine] / np.maximum(slope[mine], 1e-3)
        keep[part] = float(np.median(slope[mine])) >= TRANSLUCENT[0] and abs(float(np.median(implied))) <= OFF_COLOUR
    return np.asarray(keep[labels])


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
    fine = detail(np.ascontiguousarray(image.mean(axis=2)))
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
    lum = np.ascontiguousarray(image.mean(axis=-1) if image.ndim == 3 else image)
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
        if here.sum() < 0.3 * where.sum() or float(np.abs(patch - level).mean(axis=-1)[here].mean()) < MIN_CONTRAST:
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
    beneath = _guess(image, _grow(hole, 1))
    alpha = _opacity(image, beneath, cells, single, support, level)
    support = _grow(alpha > ALPHA_FLOOR, RIM) & support
    beneath = _guess(image, _grow(cells.paste(support.astype(np.float32)) > 0.5, 1))
    alpha = _opacity(image, beneath, cells, single, support, level)
    measured = _colour(image, beneath, cells, _in_cells(cells, strokes), level)
    if measured is None:
        return None
    colour, even = measured
    if float(np.abs(colour - level).max()) > 0:
        alpha = _opacity(image, beneath, cells, single, support, colour)
    alpha[(alpha < ALPHA_FLOOR) | ~_grow(_marks(image, beneath, cells, _in_cells(cells, strokes), level), RIM + 1)] = 0
    if _smoothed(image, cells, alpha, colour) < MIN_SMOOTHED:
        return None
    opacity = _gated(image, cells.paste(alpha), colour)
    if even and not _explained(image, opacity, colour, (single or cells).basis):
        return None
    return TileBlend(opacity, (float(colour[0]), float(colour[1]), float(colour[2])), len(cells.points))


def _explained(image: Floats, alpha: Floats, colour: Floats, basis: npt.NDArray[np.float64]) -> bool:
    """True when the mark explains the image's repeats: un-blended, the image repeats along the lattice less
    than `RESIDUE` as strongly. Asked of a mark over an even photo, where no blend could be fitted: a facade's
    white window frames over a plain wall look like a translucent white mark, but their glass still repeats
    (the test fixtures: 0.34–0.55 left; tune and holdout watermarks 0.04–0.30, 0.11 over a pale wooden board)."""
    a = np.minimum(alpha, 0.8)[..., None]
    after = np.clip((image - a * colour) / (1 - a), 0, 255)
    before_height, after_height = (repeat_height(np.ascontiguousarray(x.mean(axis=2)), basis) for x in (image, after))
    return after_height <= RESIDUE * before_height


def _gated(image: Floats, alpha: Floats, colour: Floats) -> Floats:
    """`alpha` without the copies where un-blending draws the mark in negative (the un-blended photo follows
    the opacity the wrong way, correlation past `GATE`): places on the lattice the layout left empty."""
    a = np.minimum(alpha, 0.8)
    after = ((image.mean(axis=2) - a * float(colour.mean())) / (1 - a)).astype(np.float64)
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
