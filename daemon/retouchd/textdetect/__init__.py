"""Overlaid-text detection: a pixel mask of the letters and an overlay score in [0, 1].

For one RGB image:

1. Detection (`db`): PP-OCRv4's DB network from the `rapidocr_onnxruntime` wheel, run by ONNX Runtime
   (CUDA when the device is a GPU and the provider exists) on BGR scaled to `(x/255 − 0.5)/0.5`, at a
   size whose short side is 736 px (at most ×2 up, so small labels stay readable) and whose long side is at
   most 2048 px (a large image is detected smaller and its boxes mapped back). Threshold 0.3, boxes
   scoring ≥ 0.5, unclip ratio 1.6.
2. Reading (`recognize`): each box is warped upright from the full-resolution image and read by the
   PP-OCRv4 recogniser of the same wheel (CTC, greedy).
3. Evidence (`evidence`): per box, det × read × length × repetition × tilt, each in [0, 1]. The detector
   alone fires on petals, seed heads, eyes and wood grain (probability 1.0 on some); a level line of
   several confidently read characters is what overlays have and texture lacks. A confident, level line
   that the recogniser cannot read (Hangul: it knows no such script) is judged by its glyphs (`glyphs`).
   A line on a plate seen in perspective (`regions`) or whose letters carry the photo's grain (`grain`) is
   scene text: its geometry factor drops to the floor.
4. Overlay score = the largest box evidence among the boxes inside `regions` (0 when there are none).
5. Mask (`strokes`): the letter pixels (fill, outline, shadow, anti-aliased rim) of every box whose
   evidence reaches `min_score`, and of the weaker boxes on the same line (a poorly read last word).
6. Backing (`regions`): an opaque box behind a line joins the mask; a translucent band is returned to be
   un-blended (`unblend`) before the fill; a line on a rendered page is returned to be painted with the
   page (`pagefill`). A light line with none of these gets its drop shadow (`shadow`): un-blended where its
   shape fits its darkening, else masked.
7. Tiled watermark (`lattice`, `repeats`): before any of the above, a watermark repeated over the whole
   image is found as a repeated pattern (no reading), its opacity voted from its copies and returned to be
   un-blended everywhere (only its clipped pixels are filled); steps 1–6 run on the image un-blended.
   Failing that, lines that read alike at least `MIN_COPIES` times are copies of one watermark (`tiles`,
   `watermark`): its opacity is voted from them and placed on their lattice. Failing both, one large
   translucent word across the photo (`bigmark`) is found by its blend and un-blended the same way.

`regions` limits where text is looked for: a box counts only when at least half of it lies inside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from retouchd.textdetect import bigmark, repeats, watermark
from retouchd.textdetect.db import MAX_SIDE, Quad, candidates, detection_size, probability_map, quad_size, quad_tilt
from retouchd.textdetect.evidence import TILT_FLOOR, Evidence, repeated, weigh
from retouchd.textdetect.glyphs import GLYPH_READ, MIN_GLYPHS, glyph_row
from retouchd.textdetect.grain import grainy
from retouchd.textdetect.recognize import read_lines
from retouchd.textdetect.regions import Backing, find_backing
from retouchd.textdetect.runtime import OcrModels, load_models
from retouchd.textdetect.shadow import Shadow, add_shadow
from retouchd.textdetect.strokes import add_letters
from retouchd.textdetect.tiles import MIN_COPIES, stack, tiled_text
from retouchd.textdetect.unblend import Unblend
from retouchd.textdetect.watermark import TileBlend, estimate
from retouchd.textdetect.zoom import second_look
from retouchd.typing import Mask, RGBImage

__all__ = ["MIN_SCORE", "OcrModels", "Region", "TextBox", "TextDetection", "detect", "load_models"]

MIN_SCORE = 0.5
"""Default evidence a box needs to be masked (the image-level threshold is the rule's business)."""
REGION_SHARE = 0.5
LINE_OFFSET = 0.5
LINE_HEIGHTS = (0.4, 1.6)
LINE_GAP = 1.5
DUPLICATE = 0.8
SAME_END = 0.5
RETAKE_REACH = 0.15
UNREAD_DET = 0.9
UNREAD_TILT = 3.0
"""A box this much inside boxes already masked (a word of a line found whole too) is not masked again."""
REPEATS_SCORE = 0.9
"""Overlay score of a watermark found by its repeats (`repeats` has checked that it un-blends)."""

Region = tuple[int, int, int, int]
"""(x, y, width, height) in image pixels."""


@dataclass(frozen=True, slots=True, eq=False)
class TextBox:
    """One candidate line: where it is, what the recogniser read, and how overlay-like it looks."""

    quad: Quad
    det_score: float
    text: str
    confidence: float
    evidence: Evidence

    @property
    def score(self) -> float:
        return self.evidence.value


@dataclass(frozen=True, slots=True, eq=False)
class TextDetection:
    """What `detect` found in one image."""

    mask: Mask
    boxes: tuple[TextBox, ...]
    """Every candidate inside the regions, best first."""
    masked: tuple[TextBox, ...]
    """The boxes whose letters are in the mask."""
    score: float
    bands: tuple[Unblend, ...] = ()
    """Translucent bands behind lines, to un-blend (`unblend.apply`) before the mask is filled."""
    tiles: TileBlend | None = None
    """A tiled watermark's opacity over the image, to un-blend (`watermark.apply`) before the mask is filled."""
    pages: tuple[Mask, ...] = ()
    """Per line on a rendered page, its part of the mask, to paint with the page (`pagefill.apply`)."""
    shadows: tuple[Shadow, ...] = ()
    """Drop shadows' darkening, to divide out (`shadow.unshadow`) before the mask is filled."""


def _polygon(quad: Quad, shape: tuple[int, int]) -> tuple[tuple[slice, slice], Mask] | None:
    """The quad rasterised inside its bounding box, with that box's slices."""
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(quad.max(0)).astype(int) + 1, [shape[1], shape[0]])
    if x1 <= x0 or y1 <= y0:
        return None
    layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(layer, [np.round(quad - [x0, y0]).astype(np.int32)], 1)
    return (slice(y0, y1), slice(x0, x1)), layer > 0


def _inside_regions(quad: Quad, allowed: Mask) -> bool:
    raster = _polygon(quad, allowed.shape)
    if raster is None:
        return False
    window, layer = raster
    return int(layer.sum()) > 0 and int((layer & allowed[window]).sum()) >= REGION_SHARE * int(layer.sum())


def _same_line(anchor: Quad, other: Quad) -> bool:
    """True when `other` sits on `anchor`'s line: level with it, about as tall, and close along it."""
    along = anchor[1] - anchor[0]
    length = float(np.hypot(*along))
    height = quad_size(anchor)[1]
    if length < 1 or height < 1:
        return False
    u = along / length
    rel = other - anchor.mean(0)
    across, run = rel @ np.array([-u[1], u[0]], np.float32), rel @ u
    gap = max(float(run.min()) - length / 2, -length / 2 - float(run.max()), 0.0)
    return (
        abs(float(across.mean())) < LINE_OFFSET * height
        and LINE_HEIGHTS[0] * height <= float(across.max() - across.min()) <= LINE_HEIGHTS[1] * height
        and gap < LINE_GAP * height
    )


def _same_extent(anchor: Quad, other: Quad) -> bool:
    """True when `other` is another take of `anchor`'s line (the first look and the closer one): level with it
    and ending, at both ends, within `SAME_END` of the shorter's line height of where it ends."""
    along = anchor[1] - anchor[0]
    length = float(np.hypot(*along))
    height = min(quad_size(anchor)[1], quad_size(other)[1])
    if length < 1 or height < 1:
        return False
    u = along / length
    across = np.array([-u[1], u[0]], np.float32)
    runs = [q @ u for q in (anchor, other)]
    offset = float((other.mean(0) - anchor.mean(0)) @ across)
    return (abs(offset) < LINE_OFFSET * height and abs(float(runs[0].min() - runs[1].min())) <= SAME_END * height
            and abs(float(runs[0].max() - runs[1].max())) <= SAME_END * height)


def _retakes(masked: Sequence[TextBox]) -> set[int]:
    """ids of the boxes another take of the same line outscores. A taller take reaches into more of the photo
    beside the letters (moss beside a date stamp) and can lose the letters' colours to it: its letters count
    only within `RETAKE_REACH` line heights of the mask (the bottoms of glyphs a tight box cut off)."""
    return {id(b) for b in masked for a in masked
            if a is not b and (a.score, -quad_size(a.quad)[1]) > (b.score, -quad_size(b.quad)[1])
            and _same_extent(a.quad, b.quad)}


def _takes(masked: Sequence[TextBox]) -> tuple[list[TextBox], list[TextBox]]:
    """(the boxes whose letters are extracted, largest first: a whole line before its words; the `_retakes`)."""
    retakes = _retakes(masked)
    return (sorted((b for b in masked if id(b) not in retakes), key=lambda b: -quad_size(b.quad)[0] *
                   quad_size(b.quad)[1]), [b for b in masked if id(b) in retakes])


def _in_band(quad: Quad, bands: Sequence[Unblend]) -> bool:
    centre = quad.mean(0)
    return any(b.rect[0] <= centre[1] < b.rect[1] and b.rect[2] <= centre[0] < b.rect[3] for b in bands)


def _add_retakes(rgb: RGBImage, retakes: Sequence[TextBox], mask: Mask, halo: int, lines: _Lines | None = None) -> None:
    """The letters of the outscored takes (`_retakes`) within `RETAKE_REACH` line heights of `mask`; `lines`: the
    letters already worked out (most were, for the scene test)."""
    lines = _Lines(rgb) if lines is None else lines
    for box in retakes:
        letters = lines.letters(box.quad, halo)
        reach = max(2, round(RETAKE_REACH * quad_size(box.quad)[1]))
        mask |= letters & (cv2.dilate(mask.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0)


def _boxes_to_mask(boxes: Sequence[TextBox], min_score: float) -> list[TextBox]:
    """Confirmed boxes plus the unconfirmed ones on their lines."""
    chosen = [b for b in boxes if b.score >= min_score]
    rest = [b for b in boxes if b.score < min_score]
    grown = True
    while grown and rest:
        grown = False
        for box in list(rest):
            if any(_same_line(anchor.quad, box.quad) for anchor in chosen):
                chosen.append(box)
                rest.remove(box)
                grown = True
    return chosen


class _Lines:
    """Per line (its quad), the letter mask and what backs it, worked out once: the scene test and the
    masking both need them (each was a third of the time left to detection past the networks)."""

    def __init__(self, rgb: RGBImage) -> None:
        self.rgb = rgb
        self._letters: dict[tuple[int, int], Mask] = {}
        self._backing: dict[tuple[int, int], Backing] = {}
        self._quads: list[Quad] = []  # kept alive: the keys are their ids

    def letters(self, quad: Quad, halo: int = 0) -> Mask:
        """The letter pixels of the line (`strokes.add_letters`), full-image; not to be written to."""
        key = (id(quad), halo)
        if key not in self._letters:
            out = np.zeros(self.rgb.shape[:2], bool)
            add_letters(self.rgb, quad, out, halo)
            self._letters[key] = out
            self._quads.append(quad)
        return self._letters[key]

    def backing(self, quad: Quad, halo: int = 0) -> Backing:
        """`regions.find_backing` of the line and its letters."""
        key = (id(quad), halo)
        if key not in self._backing:
            self._backing[key] = find_backing(self.rgb, quad, self.letters(quad, halo))
        return self._backing[key]


def _in_the_scene(lines: _Lines, quad: Quad) -> bool:
    """On a plate seen in perspective, or letters carrying the photo's grain: photographed, not overlaid."""
    return grainy(lines.rgb, quad, lines.letters(quad)) or lines.backing(quad).scene


def _as_scene(box: TextBox) -> TextBox:
    """The box with its geometry factor at the floor: a sign seen in perspective is no overlay."""
    return replace(box, evidence=replace(box.evidence, tilt=TILT_FLOOR))


def _angle(quad: Quad) -> float:
    dx, dy = quad[1] - quad[0]
    return float(np.degrees(np.arctan2(float(dy), float(dx))))


def _unread_glyphs(rgb: RGBImage, quad: Quad, weighed: Evidence) -> Evidence:
    """A confident, level detection the recogniser could not read is judged by its glyphs instead."""
    if weighed.read >= GLYPH_READ or weighed.det < UNREAD_DET or quad_tilt(quad) > UNREAD_TILT:
        return weighed
    letters = np.zeros(rgb.shape[:2], bool)
    add_letters(rgb, quad, letters)
    count = glyph_row(letters, quad)
    if count < MIN_GLYPHS:
        return weighed
    return Evidence(weighed.det, GLYPH_READ, 1.0, 1.0, weighed.tilt)


def _scene_aside(lines: _Lines, boxes: list[TextBox], tiles: set[int], min_score: float) -> tuple[list[TextBox],
                                                                                              list[TextBox]]:
    """(boxes, boxes to mask) once the lines photographed with the scene are scored as such."""
    masked = _boxes_to_mask(boxes, min_score)
    scene = [b for b in masked if id(b.quad) not in tiles and _in_the_scene(lines, b.quad)]
    if scene:
        boxes = sorted((_as_scene(b) if b in scene else b for b in boxes), key=lambda b: -b.score)
        masked = _boxes_to_mask(boxes, min_score)
    return boxes, masked


def _untiled(models: OcrModels, rgb: RGBImage, regions: Sequence[Region] | None) -> tuple[RGBImage,
                                                                                         TileBlend | None]:
    """(the image, un-blended, and the watermark tiled over it) when one is found by its repeats (no reading:
    the text is then looked for in what it leaves), or else one large translucent word (`bigmark`); only when
    the whole image is searched."""
    pattern = repeats.find(rgb) if regions is None else None
    if pattern is None and regions is None:
        pattern = bigmark.find(models, rgb)
    return (rgb, None) if pattern is None else (watermark.apply(rgb, pattern)[0], pattern)


def _add_backing(lines: _Lines, quad: Quad, mask: Mask, bands: list[Unblend], pages: list[Mask],
                 shadows: list[Shadow], halo: int) -> None:
    """What lies behind the line's letters joins `mask`, or `bands` (to un-blend) or `pages` (to paint); a
    drop shadow joins `shadows` (to un-blend) or `mask`."""
    rgb, letters, backing = lines.rgb, lines.letters(quad, halo), lines.backing(quad, halo)
    if backing.box is not None:
        mask |= backing.box
    elif backing.page is not None:
        mask |= backing.page
        pages.append(backing.page)
    elif backing.band is not None:
        bands.append(backing.band)
        # Un-blending a letter's anti-aliased rim (part letter, part band) leaves a bright ghost: fill it.
        mask |= cv2.dilate(letters.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    elif (shadow := add_shadow(rgb, quad, letters, mask, halo)) is not None:
        shadows.append(shadow)


def detect(
    models: OcrModels,
    rgb: RGBImage,
    *,
    regions: Sequence[Region] | None = None,
    min_score: float = MIN_SCORE,
    halo: int = 0,
    max_side: int = MAX_SIDE,
) -> TextDetection:
    """Find overlaid text in `rgb` (H×W×3 uint8): its pixel mask, the scored boxes and the overlay score."""
    height, width = rgb.shape[:2]
    rgb, pattern = _untiled(models, rgb, regions)
    size = detection_size(height, width, max_side=max_side)
    found = candidates(probability_map(models, rgb, size), (height, width))
    if regions is not None:
        allowed = np.zeros((height, width), bool)
        for x, y, w, h in regions:
            allowed[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = True
        found = [c for c in found if _inside_regions(c.quad, allowed)]
    readings = read_lines(models, rgb, [c.quad for c in found]) if found else []
    tiled = repeated([(r.text, _angle(c.quad)) for c, r in zip(found, readings, strict=True)])
    closer = second_look(models, rgb, found, readings, corner=size[0] >= height, max_side=max_side)
    if regions is not None:
        closer = [(c, r) for c, r in closer if _inside_regions(c.quad, allowed)]
    found = [*found, *(c for c, _ in closer)]
    readings = [*readings, *(r for _, r in closer)]
    tiled = [*tiled, *(False for _ in closer)]
    boxes = sorted(
        (
            TextBox(c.quad, c.det_score, r.text, r.confidence, _unread_glyphs(rgb, c.quad,
                    weigh(c.det_score, r.text, r.confidence, 0.0 if tile else quad_tilt(c.quad))))
            for c, r, tile in zip(found, readings, tiled, strict=True)
        ),
        key=lambda b: -b.score,
    )
    tiles = {id(c.quad) for c, tile in zip(found, tiled, strict=True) if tile}
    lines = _Lines(rgb)
    boxes, masked = _scene_aside(lines, boxes, tiles, min_score)
    mask = np.zeros((height, width), bool) if pattern is None or pattern.rim is None else pattern.rim.copy()
    done = np.zeros((height, width), bool)
    bands: list[Unblend] = []
    pages: list[Mask] = []
    shadows: list[Shadow] = []
    copies: list[tuple[Quad, Mask]] = []
    tile_text = tiled_text([b.text for b in masked if quad_tilt(b.quad) > UNREAD_TILT]) if pattern is None else None
    for box in (takes := _takes(masked))[0]:
        raster = _polygon(box.quad, (height, width))
        if raster is None or min(quad_size(box.quad)) < 2:
            continue
        window, layer = raster
        if (layer & done[window]).sum() >= DUPLICATE * layer.sum():
            continue
        done[window] |= layer
        letters = lines.letters(box.quad, halo)
        if tile_text is not None and box.text.replace(" ", "").casefold() == tile_text:
            copies.append((box.quad, letters))
            continue
        mask |= letters
        if _in_band(box.quad, bands):
            continue
        _add_backing(lines, box.quad, mask, bands, pages, shadows, halo)
    _add_retakes(rgb, takes[1], mask, halo, lines)
    blend = estimate(rgb, copies) if len(copies) >= MIN_COPIES else None
    if blend is None and len(copies) >= MIN_COPIES:
        mask |= stack(copies, (height, width))
    elif blend is None:
        for _, letters in copies:
            mask |= letters
    score = max(boxes[0].score if boxes else 0.0, REPEATS_SCORE if pattern is not None else 0.0)
    return TextDetection(mask, tuple(boxes), tuple(masked), round(float(score), 4), tuple(bands), blend or pattern,
                         tuple(pages), tuple(shadows))
