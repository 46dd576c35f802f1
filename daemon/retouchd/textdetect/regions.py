"""The whole overlay behind a text line: the opaque box of a price tag or sticker, the translucent band of a
caption.

Letters are rarely all of an overlay. Two backings are looked for around each masked line (level lines
only: boxes and bands are typeset with the image's axes):

- **Box**: the most common colour of the line's rectangle covers at least `FLAT_SHARE` of it within
  `FLAT_TOLERANCE` (a flat fill, not texture) and forms a closed, nearly rectangular shape (≥ `BOXY` of
  its minimum-area rectangle: rounded corners pass) that stops within `BOX_REACH` line heights of the line.
  Flat colour that runs on out of that window is a page or the sky, not a box: the letters alone are masked.
  The box, holes filled, grown by the anti-aliased rim, joins the mask (it is opaque: there is nothing to
  keep beneath it). A box reaching the image's side may be a translucent band cut short where the photo
  beneath turns lighter: the band is looked for first there. A plate whose two ends differ in height or
  whose top is not level is a sign seen in perspective: the line is scene text (`Backing.scene`); not when the
  image's top or bottom cuts it (the smooth photo around a date stamp in the corner): its height is not its own.
- **Band**: a straight horizontal step above the line and the opposite step below it, each along at least
  `BAND_CONSISTENT` of the line's length, within `BAND_REACH` line heights. The band is taken to be
  `αC + (1 − α)B` and is un-blended (`unblend`), not painted over.
- **Page**: a flat or gradient fill without grain (a screenshot, a slide) that most of the line's
  rectangle belongs to. What in the rectangle is not page is masked, rims and all, so the fill leaves no
  ghost of anti-aliased edges; of what runs out of the rectangle (photo crossing the line) only the part
  within `PAGE_NEAR` px of the letters.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect import channels
from retouchd.textdetect.db import Quad, quad_size, quad_tilt
from retouchd.textdetect.unblend import Unblend, fit_band
from retouchd.typing import Mask, RGBImage

MAX_TILT = 2.0
FLAT_TOLERANCE = 10
EXACT_TOLERANCE = 3
PLATE_BLUR = 1.5
PLATE_STEP = 2
CONVEX = 0.9
FLAT_SHARE = 0.4
BOX_REACH = 1.6
BOXY = 0.8
BOX_RIM = 2
MAX_SHARE = 0.2
"""A backing larger than this share of the image is not an overlay's box: rejected, not filled."""
SIDE_AT = 0.12
SQUARE = 0.9
"""Heights of a box's two ends (at `SIDE_AT` of its width from each) agree to this ratio: no perspective."""
SCENE = "scene"
PAGE_GROW = 0.1
PAGE_STEP = 3
PAGE_SHARE = 0.6
PAGE_NEAR = 3
BAND_REACH = 1.5
BAND_STEP = 5.0
BAND_CONSISTENT = 0.55
BAND_RUN = 15

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Backing:
    """What lies behind one line: an opaque box to fill, or a translucent band to un-blend."""

    box: Mask | None = None
    band: Unblend | None = None
    scene: bool = False
    """The line sits on a plate seen in perspective: scene text (a sign), not an overlay."""
    page: Mask | None = None
    """On a rendered flat or gradient page: every pixel of the line that is not page (letters, their
    anti-aliased rims, their counters), to be filled with the page."""


def _grow(layer: Mask, radius: int) -> Mask:
    size = 2 * max(0, radius) + 1
    return np.asarray(cv2.dilate(layer.astype(np.uint8), np.ones((size, size), np.uint8)) > 0)


def _bounds(quad: Quad, shape: tuple[int, int], grow_x: float, grow_y: float) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(quad.min(0) - [grow_x, grow_y]).astype(int)
    x1, y1 = np.ceil(quad.max(0) + np.array([grow_x, grow_y])).astype(int) + 1
    return max(0, int(y0)), min(shape[0], int(y1)), max(0, int(x0)), min(shape[1], int(x1))


def _fill_holes(layer: Mask) -> Mask:
    padded = np.pad(layer.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    return np.asarray((padded | (1 - flood))[1:-1, 1:-1] > 0)


def _box(rgb: RGBImage, quad: Quad, letters: Mask, line: float) -> Mask | str | None:
    shape = (rgb.shape[0], rgb.shape[1])
    y0, y1, x0, x1 = _bounds(quad, shape, 0.0, 0.0)
    inside = rgb[y0:y1, x0:x1].reshape(-1, 3)
    if len(inside) < 16:
        return None
    # The box's colour is the most common one in the line's rectangle (the letters cover less of it).
    bins = (inside.astype(np.int32) >> 4) @ np.array([256, 16, 1])
    colour = np.median(inside[bins == np.bincount(bins).argmax()], axis=0)
    # Only the window the box may reach is compared (a full-image pass per line was most of the time).
    wy0, wy1, wx0, wx1 = _bounds(quad, shape, BOX_REACH * line, BOX_REACH * line)
    window = rgb[wy0:wy1, wx0:wx1].astype(np.int16)
    distance = channels.largest(np.abs(window - colour.astype(np.int16)))

    def flat(tolerance: int) -> Mask:
        """The pixels within `tolerance` of the colour (none outside the window)."""
        out = np.zeros(shape, bool)
        out[wy0:wy1, wx0:wx1] = distance <= tolerance
        return out

    # A box the colour of what lies around it (a yellow tag on a yellow petal) leaks at the loose tolerance;
    # its rendered fill is exact enough to stand out at the tight one.
    for tolerance in (FLAT_TOLERANCE, EXACT_TOLERANCE):
        box = _box_at(flat(tolerance), (y0, y1, x0, x1), quad, letters, line)
        if box is not None:
            return box
    plate = _smooth_plate(rgb, flat(FLAT_TOLERANCE), (y0, y1, x0, x1), quad, line, letters)
    return _box_at(plate, (y0, y1, x0, x1), quad, letters, line, plate=True)


def _smooth_plate(rgb: RGBImage, seeds: Mask, rect: tuple[int, int, int, int], quad: Quad, line: float,
                  letters: Mask) -> Mask:
    """The smoothly shaded surface the line's most common colour belongs to (a lit, grainy sign): a flood
    over neighbours that differ by at most `PLATE_STEP` on a denoised copy, from the seed farthest from the
    letters (a median filter first found more plates, and took a translucent band for one: dropped)."""
    y0, y1, x0, x1 = rect
    shape = (rgb.shape[0], rgb.shape[1])
    wy0, wy1, wx0, wx1 = _bounds(quad, shape, BOX_REACH * line, BOX_REACH * line)
    out = np.zeros(shape, bool)
    free = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
    free[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] = seeds[y0:y1, x0:x1] & ~letters[y0:y1, x0:x1]
    if not free.any():
        return out
    far = cv2.distanceTransform(free, cv2.DIST_L2, 3)
    sy, sx = np.unravel_index(int(far.argmax()), far.shape)
    window = cv2.GaussianBlur(np.ascontiguousarray(rgb[wy0:wy1, wx0:wx1]), (0, 0), PLATE_BLUR)
    flood = np.zeros((wy1 - wy0 + 2, wx1 - wx0 + 2), np.uint8)
    step = (PLATE_STEP,) * 3
    cv2.floodFill(window, flood, (int(sx), int(sy)), (0, 0, 0), step, step,
                  4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    out[wy0:wy1, wx0:wx1] = flood[1:-1, 1:-1] > 0
    return out


def _box_at(flat: Mask, rect: tuple[int, int, int, int], quad: Quad, letters: Mask,
            line: float, plate: bool = False) -> Mask | str | None:
    shape = (flat.shape[0], flat.shape[1])
    y0, y1, x0, x1 = rect
    backing = np.zeros(shape, bool)
    backing[y0:y1, x0:x1] = flat[y0:y1, x0:x1]
    if backing[y0:y1, x0:x1].mean() < FLAT_SHARE:
        return None
    wy0, wy1, wx0, wx1 = _bounds(quad, shape, BOX_REACH * line, BOX_REACH * line)
    similar = flat[wy0:wy1, wx0:wx1].astype(np.uint8)
    count, labels = cv2.connectedComponents(similar, connectivity=4)
    touching = np.unique(labels[backing[wy0:wy1, wx0:wx1] & (similar > 0)])
    shape_mask = np.isin(labels, touching[touching > 0])
    if count <= 1 or not shape_mask.any():
        return None
    # Running into the window's side means the flat colour goes on (a page, the sky), unless that side is
    # the image's own border (a sticker in a corner).
    sides = ((shape_mask[0].any(), wy0 > 0), (shape_mask[-1].any(), wy1 < shape[0]),
             (shape_mask[:, 0].any(), wx0 > 0), (shape_mask[:, -1].any(), wx1 < shape[1]))
    if any(touches and inner for touches, inner in sides):
        return None
    filled = _fill_holes(shape_mask)
    points = cv2.findNonZero(filled.astype(np.uint8))
    (_, _), (w, h), _ = cv2.minAreaRect(points)
    # Cut by the image's top or bottom, a shape shows not its own height: no perspective to judge (the smooth
    # photo around a date stamp in the corner, cut there, is no sign seen turned away).
    cut = bool((filled[0].any() and wy0 == 0) or (filled[-1].any() and wy1 == shape[0]))
    if filled.sum() < BOXY * w * h:
        # Not a rectangle; a smooth plate that is a convex quadrilateral (a sign turned away) is scene text.
        return SCENE if plate and not cut and _trapezoid(filled) and _in_perspective(filled) else None
    if _in_perspective(filled):
        return None if cut else SCENE
    out = np.zeros(shape, bool)
    out[wy0:wy1, wx0:wx1] = _grow(filled, BOX_RIM)
    return out if out.mean() <= MAX_SHARE else None


def _at_border(box: Mask) -> bool:
    """The box reaches the image's side: a caption's band running off it, cut short where its photo turns
    lighter, can pass for a flat box; translucent, it is un-blended instead."""
    return bool(box[0].any() or box[-1].any() or box[:, 0].any() or box[:, -1].any())


def _trapezoid(filled: Mask) -> bool:
    """A convex four-cornered shape: the outline of a rectangular plate under perspective."""
    contours, _ = cv2.findContours(filled.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(outline)
    corners = cv2.approxPolyDP(hull, 0.04 * cv2.arcLength(hull, True), True)
    return bool(len(corners) == 4 and filled.sum() >= CONVEX * cv2.contourArea(hull))


def _in_perspective(filled: Mask) -> bool:
    """A plate whose near and far ends differ in height, or whose top is not level, is seen in the scene:
    an overlay's box is drawn square to the image."""
    columns = np.flatnonzero(filled.any(axis=0))
    width = columns[-1] - columns[0] + 1
    ends = [int(columns[0] + SIDE_AT * width), int(columns[-1] - SIDE_AT * width)]
    rows = [np.flatnonzero(filled[:, x]) for x in ends]
    if any(r.size == 0 for r in rows):
        return True
    heights = [r[-1] - r[0] + 1 for r in rows]
    tops = [r[0] for r in rows]
    return bool(min(heights) < SQUARE * max(heights) or abs(tops[0] - tops[1]) > (1 - SQUARE) * max(heights))


def _step_rows(lum: Floats, rows: range, xs: slice, sign: float) -> tuple[int, float] | None:
    """The row whose step from the row above is the strongest consistent one with `sign`, and its size."""
    best: tuple[int, float] | None = None
    ys = np.array([y for y in rows if 1 <= y < lum.shape[0]], np.intp)
    if ys.size == 0 or xs.stop <= xs.start:
        return None
    diffs = lum[ys, xs] - lum[ys - 1, xs]
    medians = np.median(diffs, axis=1)  # every row's at once: the same values as row by row
    for y, diff, middle in zip(ys, diffs, medians, strict=True):
        median = float(middle)
        if median * sign < BAND_STEP:
            continue
        consistent = float((diff * sign > 0.5 * abs(median)).mean())
        if consistent >= BAND_CONSISTENT and (best is None or abs(median) > abs(best[1])):
            best = (int(y), median)
    return best


def _run(columns: npt.NDArray[np.bool_], centre: int, gap: int) -> tuple[int, int]:
    """The run of True around `centre` in a column profile smoothed over `BAND_RUN` px; gaps shorter than
    `gap` (a dark patch of photo where the band's step is faint) do not end it."""
    padded = np.pad(columns.astype(np.float32), BAND_RUN // 2, mode="edge")
    smooth = np.convolve(padded, np.ones(BAND_RUN, np.float32) / BAND_RUN, "valid") >= 0.6
    good = np.flatnonzero(smooth)
    if good.size == 0:
        return centre, centre
    left = right = int(good[np.argmin(np.abs(good - centre))])
    for index in good[good < left][::-1]:
        if left - index > gap:
            break
        left = int(index)
    for index in good[good > right]:
        if index - right > gap:
            break
        right = int(index)
    return left, right + 1


def _band(rgb: RGBImage, quad: Quad, letters: Mask, line: float) -> Unblend | None:
    qx0, qy0 = quad.min(0)
    qx1, qy1 = quad.max(0)
    xs = slice(max(0, int(qx0)), min(rgb.shape[1], int(qx1) + 1))
    reach = int(BAND_REACH * line) + 2
    lum = np.zeros(rgb.shape[:2], np.float32)
    lo, hi = max(0, int(qy0) - reach - 2), min(rgb.shape[0], int(qy1) + reach + 2)
    lum[lo:hi] = channels.mean32(rgb[lo:hi])
    up = range(int(qy0) - reach, int(qy0) + 2)
    down = range(int(qy1) - 1, int(qy1) + reach)
    for sign in (-1.0, 1.0):
        top = _step_rows(lum, up, xs, sign)
        bottom = _step_rows(lum, down, xs, -sign)
        if top is None or bottom is None:
            continue
        y0, y1 = top[0], bottom[0]
        if y1 >= rgb.shape[0]:
            continue
        first = fit_band(rgb, (y0, y1, xs.start, xs.stop), letters)
        if first is None:
            continue
        # How far the band runs: the columns where the blend explains both edges better than no band does.
        x0, x1 = _run(_explained(rgb, first, y0, y1), int((qx0 + qx1) / 2), int(2 * line))
        if x1 - x0 < 0.9 * (xs.stop - xs.start):
            continue
        return fit_band(rgb, (y0, y1, x0, x1), letters, in_range=True)
    return None


def _explained(rgb: RGBImage, band: Unblend, y0: int, y1: int) -> npt.NDArray[np.bool_]:
    gain, offset = np.array(band.gain), np.array(band.offset)
    better = np.ones(rgb.shape[1], bool)
    for out_row, in_row in ((y0 - 1, y0), (y1, y1 - 1)):
        outside, inside = rgb[out_row].astype(np.float32), rgb[in_row].astype(np.float32)  # the two rows only
        model = channels.mean(np.abs(inside - (gain * outside + offset)))
        plain = channels.mean(np.abs(inside - outside))
        better &= model < 0.5 * plain
    return better


def find_backing(rgb: RGBImage, quad: Quad, letters: Mask) -> Backing:
    """The box or band behind the line `quad` whose letter pixels are `letters` (full-image mask)."""
    line = quad_size(quad)[1]
    box = _box(rgb, quad, letters, line)
    if isinstance(box, str) or (box is not None and quad_tilt(quad) > MAX_TILT):
        # A plate in perspective, or a tilted one: a sign in the scene (overlays' boxes are level).
        return Backing(scene=True)
    if quad_tilt(quad) > MAX_TILT:
        return Backing()
    band = _band(rgb, quad, letters, line) if box is None or _at_border(box) else None
    if box is not None and band is None:
        return Backing(box=box)
    if band is not None:
        return Backing(band=band)
    return Backing(page=_page(rgb, quad, line, letters))


def _page(rgb: RGBImage, quad: Quad, line: float, letters: Mask) -> Mask | None:
    """The non-page pixels of a line on a rendered page (a screenshot): most of the line's rectangle is
    reached from the commonest colour of its border by steps of at most `PAGE_STEP` (a flat or gradient fill without
    noise). Photos fail that (their grain stops the flood early) and keep the letter mask alone."""
    shape = (rgb.shape[0], rgb.shape[1])
    y0, y1, x0, x1 = _bounds(quad, shape, PAGE_GROW * line, PAGE_GROW * line)
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return None
    # The seed: the commonest colour of the rectangle's border (around the line: page, not ink; a gradient
    # spreads the page over many colours, and bold ink can be the commonest one inside).
    border = np.zeros(crop.shape[:2], bool)
    border[[0, -1]] = True
    border[:, [0, -1]] = True
    bins = (crop.astype(np.int32) >> 3) @ np.array([1024, 32, 1])
    seeds = np.flatnonzero((bins == np.bincount(bins[border]).argmax()) & border)
    seed = int(seeds[0])
    flood = np.zeros((crop.shape[0] + 2, crop.shape[1] + 2), np.uint8)
    step = (PAGE_STEP,) * 3
    cv2.floodFill(crop, flood, (seed % crop.shape[1], seed // crop.shape[1]), (0, 0, 0), step, step,
                  8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    page = flood[1:-1, 1:-1] > 0
    if page.mean() < PAGE_SHARE:
        return None
    out = np.zeros(shape, bool)
    out[y0:y1, x0:x1] = _grow(_explained_ink(~page, letters[y0:y1, x0:x1]), 2)
    return out


def _explained_ink(ink: Mask, letters: Mask) -> Mask:
    """The pieces of `ink` (what is not page in a line's rectangle) the overlay explains: those wholly inside
    the rectangle (letters, an i's dot, punctuation), and of those running out of it (photo crossing the line:
    grass stems, the edge of a blind's slat under a drop shadow) only what lies within `PAGE_NEAR` px of the
    letter mask or in its counters."""
    _, labels = cv2.connectedComponents(ink.astype(np.uint8), connectivity=8)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    crossing = np.isin(labels, border[border > 0])
    return np.asarray((ink & ~crossing) | (crossing & _fill_holes(_grow(letters, PAGE_NEAR))))
