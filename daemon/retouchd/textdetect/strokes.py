"""From a text box to the pixels of its letters: fill, outline, shadow and the anti-aliased rim.

A hole as large as the box would be filled with blur, so the mask follows the letters. Per box, in a crop
around it: the *core* is the box grown by 12 % of the line height across the line and by one line height
along it (a lone "©" a space away from the words), the *ring* the band of 40 % of the height around that.

1. Contrast. Telea diffusion from the ring estimates the background (at a scale where the line is
   ~16 px tall: only the strongest differences, over twice `CONTRAST`, are kept as *sure* pixels). The
   estimate is redone with only the neighbourhood of the sure pixels unknown, so the gaps between strokes
   inform it; core pixels there differing from it by more than `CONTRAST` on any channel, in either
   polarity, are *contrast* pixels.
2. Novelty. Texture under the text (grass, hair, gravel) has contrast too, but its colours also occur in
   the ring nearby; overlay lettering brings colours that do not. A contrast pixel is a *seed* when the
   ring within one line height along the text has less than `NOVEL` of its pixels in the same colour bin
   or a neighbouring one (bins of 8 levels per channel). Contrast pixels within a tenth of the line height
   of a seed, whose colour is merely uncommon in the ring (< `SPREAD_NOVEL`), join the seeds: an outline
   whose black also occurs in a shadow nearby.
3. Text colours. Typeset letters are painted in one to three flat colours. When up to three colour peaks
   of the seeds (each holding ≥ 10 % of them) explain at least a quarter of the seeds in the stretches of
   line (one line height each) that hold 75 % of them, the letters are the pixels of those colours that
   differ from the background by more than `EDGE`: this drops the texture step 2 let through. A colour
   peak whose pixels are as dense (over `RUNS_ON` of the density beside the box) past *both* ends of the box
   is photo running along the line (a pale streak of sky through a caption): it is no text colour, and
   its seeds are neither counted nor kept when the lettering has no flat colours. So is a peak that is not
   one rendered colour (< `RENDERED` of its pixels in one bin) after one that is, unless at least `HUGS` of
   its pixels lie within `HUG` px of the rendered colour's (an outline, an anti-aliased rim, a drop
   shadow's core): a dark shore inside the line's rows under pink letters, no longer than the line (a box
   at the image's side has no end to run on past). A
   semi-transparent lettering takes its colour from what lies beneath, which changes along the line; it
   keeps the seeds of step 2 (and the contrast pixels near them, as in step 2). Peaks that explain too
   few seeds (white letters among dune grass and their own shadow, all novel) are letters all the same
   when one of them is one exact colour (≥ `EXACT` of its pixels in one bin: rendered, not a photographed
   sign's noisy paint): their pixels are kept with the seeds within a tenth of the line height of them.
4. Rim. Pixels within 1 + height/40 px of a letter that still differ from the background by more than
   `EDGE` (anti-aliasing, blur, glow) are added.
5. Ends. A piece of the mask that runs from the box on past its ends (farther than the core's growth
   across) is photo the letters' colours match there (a sunlit streak leaving the last letter, a dark
   treeline under a drop shadow's dark): its part past the ends is dropped. A mark a space away (the lone
   "©") touches no letter and stays. Everything is then grown by the caller's `halo`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect import channels
from retouchd.textdetect.db import Quad, quad_size
from retouchd.typing import Mask, RGBImage

CONTRAST = 24
EDGE = 12
NOVEL = 0.01
SPREAD = 0.1
SPREAD_NOVEL = 0.05
CORE_GROW = 0.12
EXTEND = 1.0
RING = 0.4
MODE_SHARE = 0.1
MAX_MODES = 3
RUNS_ON = 0.5
EXACT = 0.5
RENDERED = 0.8
HUG = 2
HUGS = 0.5
MIN_ENDS = 64
MODES_EXPLAIN = 0.25
MODES_EVERYWHERE = 0.75
ROUGH_LINE = 16.0
TELEA_RADIUS = 3
_BITS = 3
_SIDE = 256 >> _BITS

Bools = npt.NDArray[np.bool_]
Bins = npt.NDArray[np.int32]


def grow_quad(quad: Quad, across: float, along: float | None = None) -> Quad:
    """The quad pushed outwards by `across` px above and below its line and `along` px before and after."""
    along = across if along is None else along
    u = quad[1] - quad[0]
    n = quad[3] - quad[0]
    u = u / max(1e-6, float(np.hypot(*u)))
    n = n / max(1e-6, float(np.hypot(*n)))
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
    return np.asarray(quad + signs[:, :1] * along * u + signs[:, 1:] * across * n, np.float32)


def _grow(layer: Bools, radius: int) -> Bools:
    size = 2 * max(0, radius) + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.dilate(layer.astype(np.uint8), disk) > 0


def _contrast(crop: RGBImage, unknown: Bools, scale: float = 1.0) -> npt.NDArray[np.int16]:
    """Largest channel difference between the crop and its background diffused into `unknown`."""
    if scale > 0.75:
        background = cv2.inpaint(crop, unknown.astype(np.uint8), TELEA_RADIUS, cv2.INPAINT_TELEA)
    else:
        size = (max(3, round(crop.shape[1] * scale)), max(3, round(crop.shape[0] * scale)))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        small_unknown = cv2.resize(unknown.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        filled = cv2.inpaint(small, small_unknown, TELEA_RADIUS, cv2.INPAINT_TELEA)
        background = cv2.resize(filled, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.asarray(channels.largest(np.abs(crop.astype(np.int16) - background.astype(np.int16))), np.int16)


def _colour_bins(crop: RGBImage) -> Bins:
    q = crop.astype(np.int32) >> _BITS
    return np.asarray((q[..., 0] * _SIDE + q[..., 1]) * _SIDE + q[..., 2], np.int32)


def _neighbourhood_counts(bins: Bins) -> npt.NDArray[np.float32]:
    """Per colour bin, how many of `bins` fall in it or in one of its 26 neighbours."""
    # Box sums of whole counts, one axis after the other over a zero-padded grid (exact in any order).
    grid = np.zeros((_SIDE + 2,) * 3, np.float32)
    grid[1:-1, 1:-1, 1:-1] = np.bincount(bins, minlength=_SIDE**3).reshape(_SIDE, _SIDE, _SIDE)
    grid = grid[:-2] + grid[1:-1] + grid[2:]
    grid = grid[:, :-2] + grid[:, 1:-1] + grid[:, 2:]
    return np.ascontiguousarray(grid[:, :, :-2] + grid[:, :, 1:-1] + grid[:, :, 2:]).reshape(-1)


def _near_bin(peak: int) -> npt.NDArray[np.bool_]:
    """The colour bins `peak` and its 26 neighbours fall in (`_neighbourhood_counts([peak]) > 0`)."""
    near = np.zeros((_SIDE,) * 3, bool)
    r, g, b = peak // (_SIDE * _SIDE), peak // _SIDE % _SIDE, peak % _SIDE
    near[max(r - 1, 0) : r + 2, max(g - 1, 0) : g + 2, max(b - 1, 0) : b + 2] = True
    return near.reshape(-1)


def _ring_share(bins: Bins, ring: Bools, chunk: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
    """Per pixel, the share of the ring near it (±1 chunk along the line) that has a similar colour."""
    share = np.ones(bins.shape, np.float32)
    for index in np.unique(chunk):
        near = ring & (np.abs(chunk - index) <= 1)
        if near.sum() < 16:
            near = ring
        counts = _neighbourhood_counts(bins[near]) / max(1, int(near.sum()))
        here = chunk == index
        share[here] = counts[bins[here]]
    return share


def _runs_on(pixels: Bools, box: Bools, ends: tuple[Bools, Bools]) -> bool:
    """True when `pixels` are about as dense past both of the box's ends as inside it: photo along the line
    (one end alone can be the next word or a dark boat beside the line)."""
    if min(int(ends[0].sum()), int(ends[1].sum())) < MIN_ENDS or not pixels[box].any():
        return False
    inside = float(pixels[box].mean())
    return all(float(pixels[end].mean()) > RUNS_ON * inside for end in ends)


def _unlike_rendered(pixels: Bools, share: float, rendered: Bools | None) -> bool:
    """True for a colour peak (`pixels`, `share` of them in its commonest bin) that is no rendered colour, after
    one that is (`rendered`: its pixels), and that does not hug it (an outline, a rim, a shadow's core)."""
    if rendered is None or not pixels.any() or share >= RENDERED:
        return False
    return float(_grow(rendered, HUG)[pixels].mean()) < HUGS


def _text_colours(bins: Bins, seeds: Bools, chunk: npt.NDArray[np.int32], strong: Bools, box: Bools,
                  ends: tuple[Bools, Bools]) -> tuple[Bools | None, bool, Bools]:
    """(colour bins of the letters' peaks or None, whether they explain the seeds along the line, colour bins
    of photo running along the line): step 3 of the module docstring. `strong`: the pixels that differ from
    the background, in the core (`box`: its part beside the box, `ends`: past each end). Peaks that explain
    too few seeds are returned only when one of them is one exact colour (`EXACT`)."""
    total = int(seeds.sum())
    counts = _neighbourhood_counts(bins[seeds])
    chosen = np.zeros(_SIDE**3, bool)
    passed = np.zeros(_SIDE**3, bool)
    modes = 0
    exact = False
    rendered: Bools | None = None
    while modes < MAX_MODES:
        remaining = np.where(chosen | passed, 0, counts)
        peak = int(remaining.argmax())
        if remaining[peak] < MODE_SHARE * total:
            break
        near = _near_bin(peak)
        if _runs_on(near[bins] & strong, box, ends):
            passed |= near
            continue
        here = near[bins] & strong
        pixels = bins[here]
        share = float(np.bincount(pixels).max()) / pixels.size if pixels.size else 0.0
        this_exact = share >= EXACT
        if _unlike_rendered(here, share, rendered):
            passed |= near
            continue
        chosen |= near
        modes += 1
        exact = exact or this_exact
        if share >= RENDERED:
            rendered = here if rendered is None else rendered | here
    seeds = seeds & ~passed[bins]
    if not chosen.any() or not seeds.any():
        return None, False, passed
    explained = chosen[bins] & seeds
    consistent = 0
    for index in np.unique(chunk[seeds]):
        here = seeds & (chunk == index)
        if explained[here].sum() >= MODES_EXPLAIN * here.sum():
            consistent += int(here.sum())
    flat = consistent >= MODES_EVERYWHERE * int(seeds.sum())
    return (chosen if flat or exact else None), flat, passed


@dataclass(frozen=True, slots=True)
class _Window:
    """The crop around one box, with its core and ring, and where it sits in the image."""

    crop: RGBImage
    core: Bools
    inside: Bools
    ends: Bools
    """The core past the box's ends (farther than the core's growth across)."""
    chunk: npt.NDArray[np.int32]
    top: int
    left: int


def _window(rgb: RGBImage, quad: Quad, line: float, halo: int) -> _Window | None:
    height, width = rgb.shape[:2]
    core_quad = grow_quad(quad, CORE_GROW * line + 1, (CORE_GROW + EXTEND) * line + 1)
    ring_quad = grow_quad(quad, (CORE_GROW + RING) * line + 1 + halo, (CORE_GROW + EXTEND + RING) * line + 1 + halo)
    x0, y0 = np.maximum(np.floor(ring_quad.min(0)).astype(int) - TELEA_RADIUS - 2, 0)
    x1, y1 = np.minimum(np.ceil(ring_quad.max(0)).astype(int) + TELEA_RADIUS + 3, [width, height])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    layers = []
    box_quad = grow_quad(quad, CORE_GROW * line + 1)
    for polygon in (core_quad, ring_quad, box_quad):
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(layer, [np.round(polygon - [x0, y0]).astype(np.int32)], 1)
        layers.append(layer > 0)
    along = quad[1] - quad[0]
    u = along / max(1e-6, float(np.hypot(*along)))
    xs = np.arange(x1 - x0, dtype=np.float32)[None, :]
    ys = np.arange(y1 - y0, dtype=np.float32)[:, None]
    chunk = np.floor((xs * u[0] + ys * u[1]) / max(4.0, line)).astype(np.int32)
    return _Window(np.ascontiguousarray(rgb[y0:y1, x0:x1]), layers[0], layers[1], layers[0] & ~layers[2], chunk,
                   int(y0), int(x0))


def _letters(win: _Window, line: float) -> Bools:
    core, inside = win.core, win.inside
    sure = (_contrast(win.crop, inside, min(1.0, ROUGH_LINE / max(1.0, line))) > 2 * CONTRAST) & core
    if not sure.any():
        return sure
    unknown = _grow(sure, math.ceil(line / 8)) & inside
    difference = _contrast(win.crop, unknown)
    region = unknown & core
    contrast = (difference > CONTRAST) & region

    bins = _colour_bins(win.crop)
    ring_share = _ring_share(bins, inside & ~core, win.chunk)
    seeds = contrast & (ring_share < NOVEL)
    strong = (difference > EDGE) & region
    box = core & ~win.ends
    middle = float(np.median(win.chunk[box])) if box.any() else 0.0
    ends = (win.ends & (win.chunk < middle), win.ends & (win.chunk > middle))
    colours, flat, photo = (_text_colours(bins, seeds, win.chunk, strong, box, ends) if seeds.sum() >= 4
                            else (None, False, None))
    if photo is not None:
        seeds &= ~photo[bins]
        contrast &= ~photo[bins]
    if colours is not None and flat:
        letters = colours[bins] & strong
    else:
        base = seeds if colours is None else colours[bins] & strong
        near = _grow(base, max(1, round(SPREAD * line)))
        letters = base | ((seeds | (contrast & (ring_share < SPREAD_NOVEL))) & near)
    letters = letters | ((difference > EDGE) & region & _grow(letters, 1 + round(line / 40)))
    return _detached(letters, win.ends)


def _detached(letters: Bools, ends: Bools) -> Bools:
    """`letters` without what runs on from the box past its ends (step 5 of the module docstring)."""
    _, labels = cv2.connectedComponents(letters.astype(np.uint8), connectivity=8)
    crossing = np.intersect1d(labels[letters & ends], labels[letters & ~ends])
    return letters & ~(ends & np.isin(labels, crossing[crossing > 0]))


def add_letters(rgb: RGBImage, quad: Quad, out: Mask, halo: int = 0) -> None:
    """Mark in `out` the overlay pixels of one text box; `halo` grows them by that many pixels."""
    line = quad_size(quad)[1]
    win = _window(rgb, quad, line, halo)
    if win is None:
        return
    letters = _letters(win, line)
    if halo > 0:
        letters = _grow(letters, halo) & win.inside
    out[win.top : win.top + letters.shape[0], win.left : win.left + letters.shape[1]] |= letters
