"""The blend of a tiled mark measured from its copies (`repeats` finds its shape; this measures it).

The photo beneath the mark's support is guessed from the pixels around it (`guess`); each pixel's opacity is
voted over the copies (`opacity`); across the copies a mark lying over the photo steps `I − B = α(C − B)`, in
proportion to the photo's distance from one colour C: the per-pixel line through the copies (`line`) gives α and
C (`colour`), and which parts of a repeated shape follow it (`marks`).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect import channels
from retouchd.textdetect.cells import Cells as _Cells
from retouchd.textdetect.cells import median as _median
from retouchd.typing import Mask

MIN_BLOB = 12
GUESS_SIGMA = 3.0
MIN_CONTRAST = 40.0
MIN_COPIES = 4
TRANSLUCENT = (0.05, 0.85)
"""Median opacity of the strokes a watermark has (fainter is noise, more is an opaque pattern)."""
MIN_VARIATION = 15.0
"""Spread (levels) of the photo beneath a stroke pixel across the copies needed to fit its blend."""
MIN_VARIED = 0.3
"""Share of the stroke pixels over a photo that varies that much between the copies."""
MIN_FEW = 0.05
"""Share of the stroke pixels that must vary for their slope to veto a mark over an even photo (over a dark
busy photo a few pixels vary by chance, their guesses gone wrong: tune analogues 0.4–2 % of the strokes)."""
OUTLIER = 3.0
COLOUR_SPREAD = 60.0
"""Spread (robust sigma, levels) of the colour the stroke pixels imply, past which they are no one mark..."""
NOISE_SPREAD = 1.5
"""...unless their own fits' errors explain it (robust sigma of the pixels' deviations over their standard
errors): over a dark photo the photo beneath varies little against its distance from a white mark, and each
pixel's colour is uncertain by 40–50 levels (tune: 0.7–1.3 on marks whose colours spread 4–85 levels)."""
SAME_COLOUR = 15.0
OFF_COLOUR = 120.0
EVEN_SPREAD = 0.1

Floats = npt.NDArray[np.float32]


def guess(image: Floats, hole: Mask, sigma: float = GUESS_SIGMA) -> Floats:
    """The photo beneath `hole`, from the pixels around it (normalised convolution, reach `sigma` px)."""
    keep = (~hole).astype(np.float32)
    total = cv2.GaussianBlur(image * keep[..., None], (0, 0), sigma)
    weight = cv2.GaussianBlur(keep, (0, 0), sigma)[..., None]
    return np.asarray(np.where(hole[..., None], total / np.maximum(weight, 1e-6), image), np.float32)


def vote(cells: _Cells, alpha: Floats, valid: Mask, where: Mask | None = None) -> tuple[Floats, Mask]:
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


def opacity(image: Floats, beneath: Floats, cells: _Cells, single: _Cells | None, support: Mask,
             level: float | Floats) -> Floats:
    """The median over the copies of each pixel's opacity, within the cell's `support`, given the photo
    `beneath`. Pixels too few whole cells measured take the vote of the single copies (`single`, when the
    layout is staggered: more copies, half a pixel apart)."""
    gap = level - beneath
    weight = channels.total(gap**2)
    alpha = np.asarray(channels.total((image - beneath) * gap) / np.maximum(weight, 1.0), np.float32)
    valid = weight >= 3 * MIN_CONTRAST**2
    out, known = vote(cells, alpha, valid, support)
    if single is not None and not known[support].all():
        voted, measured = vote(single, alpha, valid)
        spread, inside = cells.cut(single.paste(voted))
        counted, _ = cells.cut(single.paste(measured.astype(np.float32)))
        usable = inside & (counted > 0.5)
        fallback = (spread * usable).sum(axis=0) / np.maximum(usable.sum(axis=0), 1)
        out = np.where(known | ~usable.any(axis=0), out, fallback)
    out[~support] = 0
    return np.asarray(np.clip(out, 0.0, 1.0), np.float32)


class Line(NamedTuple):
    """Per stroke pixel: the blend line through its copies, whether it was fitted, and the standard error of
    the colour offset it implies (`offset / slope`, where the line meets y = 0)."""

    slope: Floats
    offset: Floats
    fitted: Mask
    error: Floats


def line(x_image: Floats, y_image: Floats, cells: _Cells, core: Mask) -> Line:
    """The least-squares line `y = slope·x + offset` through the copies of each `core` pixel of the cell,
    fitted where x varies by `MIN_VARIATION` or more between them; refitted once without the copies `OUTLIER`
    robust sigmas off it (a place the layout left empty, a guess gone wrong). A copy is judged by its residual
    against the line the others fit (deleted residual): over a dark busy photo the guess beneath one copy goes
    wrong (a bright blade beside dark moss), and alone far out in x, that copy would draw the line through
    itself and show no residual."""
    x, inside = cells.cut(np.ascontiguousarray(x_image))
    y, _ = cells.cut(np.ascontiguousarray(y_image))
    xs, ys, valid = x[:, core], y[:, core], inside[:, core]
    for _ in range(2):
        used = valid
        count = np.maximum(used.sum(axis=0), 1)
        mx, my = (xs * used).sum(axis=0) / count, (ys * used).sum(axis=0) / count
        vx = (((xs - mx) ** 2) * used).sum(axis=0) / count
        cxy = ((xs - mx) * (ys - my) * used).sum(axis=0) / count
        slope = cxy / np.maximum(vx, 1e-6)
        offset = my - slope * mx
        raw = ys - slope * xs - offset
        leverage = 1 / count + (xs - mx) ** 2 / np.maximum(count * vx, 1e-6)
        residual = np.abs(raw) / np.maximum(1 - leverage, 0.05)
        spread = _median(residual, used, 1)
        valid = used & (residual <= np.maximum(OUTLIER * 1.4826 * spread, 4.0))
    sigma = np.sqrt((raw**2 * used).sum(axis=0) / np.maximum(count - 2, 1))
    bent = np.maximum(np.abs(slope), 1e-3)
    error = sigma / bent * np.sqrt(1 / count + (my / bent) ** 2 / np.maximum(count * vx, 1e-6))
    return Line(slope, offset, (valid.sum(axis=0) >= 3) & (vx >= MIN_VARIATION**2), np.asarray(error, np.float32))


def implied(fit: Line, need: float) -> tuple[float, float, float] | None:
    """(median, robust spread, and that spread in the pixels' own standard errors) of the colour offset
    `offset / slope` the fitted pixels imply, if enough."""
    usable = fit.fitted & (fit.slope >= TRANSLUCENT[0])
    if usable.sum() < max(need, 1):
        return None
    implied = fit.offset[usable] / fit.slope[usable]
    middle = float(np.median(implied))
    scores = (implied - middle) / np.maximum(fit.error[usable], 1e-3)
    return middle, 1.4826 * float(np.median(np.abs(implied - middle))), 1.4826 * float(np.median(np.abs(scores)))


def colour(image: Floats, beneath: Floats, cells: _Cells, core: Mask,
            level: float) -> tuple[Floats, bool] | None:
    """The mark's colour C, when it lies over the photo: across the copies its step `I − B` grows in proportion
    to the photo's distance from a colour (`I − B = α(C − B)`: slope α, and an offset that implies the same
    colour at every stroke pixel). A scene's own pattern is opaque (its step shrinks as the surface
    brightens), or the surface beneath it never varies enough to tell: None. A colour within `SAME_COLOUR` of
    white (black) is taken as white (black): the guess of the photo beneath is smooth, and its errors lean;
    so is one the pixels imply only within their own errors (spread past `COLOUR_SPREAD`, within
    `NOISE_SPREAD`). With it, whether it was assumed (over a photo too even to fit, `even`, or that noisy)."""
    gap, step = level - beneath, image - beneath
    need = MIN_VARIED * core.sum()
    gap_mean, step_mean = channels.mean(gap), channels.mean(step)
    fit = line(gap_mean, step_mean, cells, core)
    slope, fitted = fit.slope, fit.fitted
    grey = implied(fit, need)
    few = float(np.median(slope[fitted])) if fitted.sum() >= max(MIN_BLOB, MIN_FEW * core.sum()) else None
    if grey is None and (few is None or TRANSLUCENT[0] <= few <= TRANSLUCENT[1]) and \
            even(gap_mean, step_mean, cells, core):
        return np.full(3, level, np.float32), True
    if grey is None or not TRANSLUCENT[0] <= float(np.median(slope[fitted])) <= TRANSLUCENT[1] or \
            (grey[1] > COLOUR_SPREAD and grey[2] > NOISE_SPREAD):
        return None
    if grey[1] > COLOUR_SPREAD:
        # The pixels' own errors spread their colours this far: the photo beneath varies less between the
        # copies than its guess errs, and the guess's error, in both the step and the distance, tilts each
        # line toward the photo's colour (errors in variables): only α·(C − B) is measured, not C.
        return np.full(3, level, np.float32), True
    colour = np.full(3, level + grey[0], np.float32)
    for channel in range(3):
        own = implied(line(gap[..., channel], step[..., channel], cells, core), need)
        if own is not None:
            colour[channel] = level + own[0]
    colour = np.clip(colour, 0, 255)
    return (np.full(3, level, np.float32) if float(np.abs(colour - level).max()) <= SAME_COLOUR else colour), False


def even(gap: Floats, step: Floats, cells: _Cells, core: Mask) -> bool:
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


def marks(image: Floats, beneath: Floats, cells: _Cells, core: Mask, level: float) -> Mask:
    """The parts of the repeated shape (`core`, in the cell) that lie over the photo as the mark does: their
    step across the copies follows the photo's distance from the mark's level (median slope at least
    `TRANSLUCENT[0]`, implied colour within `OFF_COLOUR` of it). A photo that nearly repeats along the
    lattice too (the waves of a facade) adds its own streaks to the shape, whose step does not (tune and
    holdout: slope ≤ 0.02 or colours thousands of levels off, the letters' 0.3–0.6 and within 65 levels).
    Parts over a photo too even across the copies to fit are kept."""
    slope, offset, fitted, _ = line(channels.mean(level - beneath), channels.mean(image - beneath), cells, core)
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
