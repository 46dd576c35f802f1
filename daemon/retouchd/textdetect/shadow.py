"""The drop shadow of a line of light lettering: the soft, offset dark copy of its letters.

A shadow is part of the overlay; left behind, it is a dark ghost of the text, and the fill copies it into
the letters. It is found by its shape: the letter mask moved down and right (light from the top left, as
every drop shadow is drawn) by up to `OFFSET` line heights and blurred. Around the letters (past a
`SKIP`-px rim, within `REACH` line heights) the photo is estimated by diffusion from outside that zone;
a pixel is *darker* when it lies more than `DARKER` levels (mean over channels) below the estimate. The
shadow is the offset at which at least `SHARE` of the pixels under the moved letters are darker and that
share leads the share under the letters moved the opposite way by at least `LEAD`: texture darkens both
sides alike, a shadow only one. Its pixels (the moved, blurred letters above `TAIL`) join the mask, unless
they would outnumber the letters (`MOST`: a dark photo all around, not a shadow) or the median darkening
under them is below `DEEP` levels (an evening sky's own shading down the frame). Dark letters have no
shadow we could see (fewer than `LIGHT_SHARE` of the letter pixels `LIGHT_LETTERS` above the estimate): their
own rim is darker than the photo on every side.

A soft shadow is semi-transparent black, `I = (1 − a)·B`: painting over it loses the photo it darkens (a
pale ghost of the letters over wood or leaves). So its darkening `a` is estimated per pixel from its shape:
the *glyphs* (the letter pixels lighter than the estimate) moved and blurred (offset and blur searched
around the ones found above, `SIGMAS`), scaled by the least-squares fit of the measured darkening
`1 − I/B̂` around the letters. A fit that explains at least `EXPLAINED` of that darkening, is at least
`MIN_ALPHA` deep and whose darkening peaks at `MIN_PEAK` or more (thin letters blurred give a faint fit)
is the shadow (it also stands in for the `DEEP` test: the letter mask often takes in the shadow's dark core,
leaving only its faint tail to measure); it is un-blended (`unshadow`) where `a` ≤
`MAX_ALPHA` and filled where deeper (amplifying by more than 1/(1 − `MAX_ALPHA`) would amplify the fit's
error past recognition). The letter pixels that are shadow, not glyph (beyond `GLYPH_RIM` px of a glyph),
leave the mask to be un-blended. A light piece of the letter mask that casts none of the shadow
(`_casting`: a sunlit streak of the photo) gives the shadow none of its shape (it stays masked: a letter
over a dark patch can fail that test too).
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

REACH = 0.4
SKIP = 2
DARKER = 6.0
LIGHT_LETTERS = 12.0
LIGHT_SHARE = 0.3
OFFSET = 0.15
STEP = 1 / 20
BLUR = 1 / 20
CORE = 0.3
SHARE = 0.5
LEAD = 0.2
TAIL = 0.08
MOST = 1.0
DEEP = 12.0
TELEA_RADIUS = 3
SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)
EXPLAINED = 0.2
"""Share of the darkening's variance around the letters the fit must explain. Over grass or foliage a true
shadow's fit explains 0.20–0.27 at about the drawn depth (the rest is texture); fits explaining 0.13–0.18 were
worse un-blended than filled (tune shadow ColorfulCups-1, YellowFlower-0, LadyBird-1)."""
MIN_ALPHA = 0.2
MIN_PEAK = 0.3
MAX_ALPHA = 0.6
FAINT = 0.01
GLYPH_RIM = 2
FIT_SHARE = 0.15
CAST = 0.2
CAST_PIXELS = 12

Floats = npt.NDArray[np.float32]


def _grow(layer: Mask, radius: int) -> Mask:
    size = 2 * max(0, radius) + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return np.asarray(cv2.dilate(layer.astype(np.uint8), disk) > 0)


@dataclass(frozen=True, slots=True, eq=False)
class Shadow:
    """A drop shadow's darkening `a` (I = (1 − a)·B) over the window whose top-left pixel is (top, left)."""

    top: int
    left: int
    alpha: Floats


def add_shadow(rgb: RGBImage, quad: Quad, letters: Mask, out: Mask, halo: int = 0) -> Shadow | None:
    """Mark in `out` the drop shadow of the line `quad` whose letter pixels are `letters` (full-image): the
    darkening to un-blend (`unshadow`) when its shape fits it, else its pixels to fill (None returned).
    `halo`: the px the caller grew the letters by, kept filled around the glyphs."""
    line = quad_size(quad)[1]
    reach = max(2, math.ceil(REACH * line))
    margin = reach + TELEA_RADIUS + 2
    height, width = rgb.shape[:2]
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int) - margin - round(line), 0)
    x1, y1 = np.minimum(np.ceil(quad.max(0)).astype(int) + margin + round(line) + 1, [width, height])
    ink = letters[y0:y1, x0:x1]
    if int(ink.sum()) < 16:
        return None
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    inner = np.zeros(ink.shape, bool)
    inner[1:-1, 1:-1] = True
    zone = _grow(ink, reach) & inner
    change = _change(crop, zone)
    glyphs = ink & (change < -LIGHT_LETTERS)
    if int(glyphs.sum()) >= max(16, FIT_SHARE * int(ink.sum())):
        grown = _grow(glyphs, reach) & inner
        # The same zone (the light glyphs are most of the letters) diffuses the same background: not redone.
        fitted = _unblendable(crop, grown, glyphs, line, change if np.array_equal(grown, zone) else None)
        zone = grown
        if fitted is not None:
            alpha = fitted
            keep = _grow(glyphs, GLYPH_RIM + halo)
            alpha[keep | ~zone] = 0.0
            out[y0:y1, x0:x1] |= (alpha > MAX_ALPHA) | keep
            # Dark letter pixels beyond the glyphs' rim are shadow (un-blended) or photo the letters' colour
            # step took in (a dark treeline under a dark shadow): neither is filled. (Light ones are letters
            # the glyph test missed over a pale photo.)
            out[y0:y1, x0:x1] &= ~(ink & ~keep & (alpha <= MAX_ALPHA) & (change > DARKER))
            return Shadow(int(y0), int(x0), alpha)
    if float(glyphs.sum()) < LIGHT_SHARE * float(ink.sum()):
        return None
    around = zone & ~_grow(ink, SKIP)
    darker = (change > DARKER) & around
    found = _offset(ink.astype(np.float32), darker, around, line)
    if found is None:
        return None
    under = (found > CORE) & around
    if float(np.median(change[under])) < DEEP:
        return None  # a faint darkening next to the letters: the photo's own shading, not a shadow
    shadow = (found > TAIL) & zone & ~ink
    if int(shadow.sum()) <= MOST * int(ink.sum()):
        out[y0:y1, x0:x1] |= shadow
    return None


def _change(crop: RGBImage, zone: Mask) -> Floats:
    """How much darker than the photo diffused into `zone` from around it each pixel is (mean over channels)."""
    background = cv2.inpaint(crop, zone.astype(np.uint8), TELEA_RADIUS, cv2.INPAINT_TELEA)
    return np.asarray(channels.mean32(background) - channels.mean32(crop), np.float32)


def _unblendable(crop: RGBImage, zone: Mask, glyphs: Mask, line: float, change: Floats | None = None) -> Floats | None:
    """The darkening of the glyphs' drop shadow, cast by the glyphs that have one (`_casting`), when they
    have one (`_offset`) that `_fit` fits; found in a zone grown from the glyphs alone (the letter mask can
    take in dark photo). `change`: `_change(crop, zone)` when already known."""
    change = _change(crop, zone) if change is None else change
    around = zone & ~_grow(glyphs, SKIP)
    if _offset(glyphs.astype(np.float32), (change > DARKER) & around, around, line) is None:
        return None
    free = zone & ~_grow(glyphs, GLYPH_RIM)
    fitted = _fit(glyphs, crop, change, free, line)
    if fitted is None:
        return None
    scale, (dx, dy, sigma) = fitted
    casting = _casting(glyphs, _darkening(crop, change), free, scale, (dx, dy, sigma))
    alpha = np.asarray(np.clip(scale * _template(casting, dx, dy, sigma), 0.0, 1.0), np.float32)
    # Thin letters (an outline, a 1-px stroke) blurred give a faint template: a least-squares scale of a
    # photo's noise around them, not a shadow anyone would see.
    return alpha if float(alpha.max()) >= MIN_PEAK else None


def _casting(glyphs: Mask, darkening: Floats, free: Mask, scale: float, params: tuple[int, int, float]) -> Mask:
    """The glyphs that cast the shadow: a light piece of photo the letter mask took in (a sunlit streak) has
    no darkening under its own moved, blurred shape (above `TAIL`: less than `CAST` of what the fit expects
    there). A piece with fewer than `CAST_PIXELS` such pixels (a thin stroke's shadow lies under its rim)
    cannot be judged and stays."""
    count, labels = cv2.connectedComponents(glyphs.astype(np.uint8), connectivity=8)
    out = glyphs.copy()
    for index in range(1, count):
        piece = labels == index
        template = scale * _template(piece, *params)
        under = free & (template > scale * TAIL)
        if int(under.sum()) < CAST_PIXELS:
            continue
        if float(darkening[under].mean()) < CAST * float(template[under].mean()):
            out &= ~piece
    return out


def _darkening(crop: RGBImage, change: Floats) -> Floats:
    """1 − I/B̂ per pixel (B̂: the photo diffused from around the zone)."""
    estimate = np.maximum(channels.mean32(crop) + change, 8.0)
    return np.asarray(np.clip(change / estimate, -1.0, 1.0), np.float32)


def _template(glyphs: Mask, dx: int, dy: int, sigma: float) -> Floats:
    return np.asarray(cv2.GaussianBlur(_shifted(glyphs.astype(np.float32), dx, dy), (0, 0), sigma), np.float32)


class _Moved:
    """`layer` moved by (dx, dy) and blurred by `sigma`, for many offsets: blurred once per `sigma` and moved.
    The same values, bit for bit, as blurring each moved copy when the layer is empty within the kernel's
    reach plus the move plus `SLACK` px of the window's sides (no reflected border reaches it, and the filter's
    last, partial vector of a row sees zeros either way); otherwise each is blurred as before."""

    SLACK = 32

    def __init__(self, layer: Floats) -> None:
        self.layer = layer
        rows, cols = np.flatnonzero(layer.any(axis=1)), np.flatnonzero(layer.any(axis=0))
        height, width = layer.shape
        self.room = (min(int(rows[0]), height - 1 - int(rows[-1])), min(int(cols[0]), width - 1 - int(cols[-1]))) \
            if rows.size else (height, width)
        self.blurred: dict[float, Floats] = {}

    def __call__(self, dx: int, dy: int, sigma: float) -> Floats:
        reach = (round(sigma * 8 + 1) | 1) // 2 + self.SLACK  # OpenCV's kernel for float images: 8σ + 1
        if self.room[0] < reach + abs(dy) or self.room[1] < reach + abs(dx):
            return np.asarray(cv2.GaussianBlur(_shifted(self.layer, dx, dy), (0, 0), sigma), np.float32)
        if sigma not in self.blurred:
            self.blurred[sigma] = np.asarray(cv2.GaussianBlur(self.layer, (0, 0), sigma), np.float32)
        return _shifted(self.blurred[sigma], dx, dy)


def _shifted(layer: Floats, x: int, y: int) -> Floats:
    height, width = layer.shape
    moved = np.zeros_like(layer)
    moved[max(0, y) : height + min(0, y), max(0, x) : width + min(0, x)] = \
        layer[max(0, -y) : height - max(0, y), max(0, -x) : width - max(0, x)]
    return moved


def _fit(glyphs: Mask, crop: RGBImage, change: Floats, free: Mask,
         line: float) -> tuple[float, tuple[int, int, float]] | None:
    """(depth, (dx, dy, sigma)) of the moved, blurred glyphs that best fit the darkening (least squares)."""
    if int(glyphs.sum()) < 16 or int(free.sum()) < 64:
        return None
    darkening = _darkening(crop, change)[free]
    darkening = darkening - float(darkening.mean())  # with a constant term: a shading bias favours no width
    total = float((darkening**2).sum())
    step = max(1, round(STEP * line))
    reach = max(1, round(OFFSET * line / step))
    best: tuple[float, float, tuple[int, int, float] | None] = (EXPLAINED * total, 0.0, None)
    moved = _Moved(glyphs.astype(np.float32))
    for dy in range(reach + 1):
        for dx in range(reach + 1):
            if dx == 0 and dy == 0:
                continue
            for sigma in SIGMAS:
                params = (dx * step, dy * step, max(0.8, sigma * BLUR * line))
                t = moved(*params)[free]
                t = t - float(t.mean())
                energy = float((t * t).sum())
                if energy < 1e-3:
                    continue
                projection = float((t * darkening).sum())
                gain = projection * projection / energy
                if projection > 0 and gain > best[0]:
                    best = (gain, projection / energy, params)
    scale, fitted = best[1], best[2]
    if fitted is None or scale < MIN_ALPHA:
        return None
    return scale, fitted


def unshadow(rgb: RGBImage, shadows: list[Shadow]) -> RGBImage:
    """`rgb` with every shadow's darkening divided out where it is at most `MAX_ALPHA` (deeper: filled)."""
    out = rgb.copy()
    for shadow in shadows:
        h, w = shadow.alpha.shape
        window = (slice(shadow.top, shadow.top + h), slice(shadow.left, shadow.left + w))
        alpha = np.where(shadow.alpha <= MAX_ALPHA, shadow.alpha, 0.0)[..., None]
        restored = out[window].astype(np.float32) / (1.0 - alpha)
        out[window] = np.clip(np.round(restored), 0, 255).astype(np.uint8)
    return out


def _offset(ink: Floats, darker: Mask, around: Mask, line: float) -> Floats | None:
    """The moved, blurred letters at the offset the darkening follows best, or None."""
    step = max(1, round(STEP * line))
    reach = max(1, round(OFFSET * line / step))
    sigma = max(1.0, BLUR * line)
    blurred = _Moved(ink)

    def moved(dx: int, dy: int) -> Floats:
        return blurred(dx * step, dy * step, sigma)

    best: tuple[float, Floats | None] = (LEAD, None)
    for dy in range(reach + 1):
        for dx in range(reach + 1):
            if dx == 0 and dy == 0:
                continue
            template = moved(dx, dy)
            here = (template > CORE) & around
            there = (moved(-dx, -dy) > CORE) & around
            if here.sum() < 16 or there.sum() < 16:
                continue
            share = float(darker[here].mean())
            lead = share - float(darker[there].mean())
            if share >= SHARE and lead >= best[0]:
                best = (lead, template)
    return best[1]
