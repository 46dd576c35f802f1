"""One large translucent word across a photo ("SAMPLE", "PREVIEW"): found by its blend, un-blended, not painted.

A stock-preview mark composited as `I = αC + (1 − α)B` moves every pixel beneath it by the same blend. Seen
from the mark's colour, `|C − I| = (1 − α)|C − B|`: in `log|C − I|` the whole word is one constant step
`log(1 − α)` in all three channels, whatever the photo does beneath it. So, for the colours in `COLOURS`:

1. Lines (`_step`, `_lines`): `log|C − I|` (mean of the channels, at half size) less its local median
   (`BACKGROUND` px, and `NEAR_BACKGROUND`) is drawn grey and given to the text detector; lines of letter
   height (`MIN_HEIGHT`) are where a word may be (the photo's own steps are no line of text).
2. Letters (`_words`): inside a line, the pixels `t` below the photo around them, for each step `t` in `STEPS`,
   in components of letter size.
3. The blend (`_fit`): the photo beneath is guessed from the pixels just outside the letters; on their inner
   rim, one α is fitted per colour in `COLOURS` (and a free grey, which must fit clearly better). A mark
   explains most of the step there (`MIN_EXPLAINED`) with α in `ALPHA`; each channel on its own gives the same
   α (`_channels_agree`: a coloured plate does not), and the letters keep the photo's texture times (1 − α),
   neither flat nor busier (`_texture_kept`: an opaque box, or a plate with letters on it, fails).
4. The shape (`_shape`): with α known, a pixel in the line (grown by `GROW`) is a letter's when its
   `log|C − I|` lies more than half the step below the photo around it, and it joins the letters found; the
   blend is fitted again on that shape (α came out low where the letters were missed) and the shape grown.
   Lines whose blend is the best one's join it (the second word of "STOCK PHOTO").
5. Reading (`_reads`): the letters, drawn dark on white, must read as text to the recogniser (`MIN_READ`, at
   least `MIN_CHARS` characters): a bright patch of sky or a pale petal does not.

The result is a `watermark.TileBlend` (the opacity map and colour): the step un-blends it (`watermark.apply`)
and fills only the pixels it clips and the letters' outline, 3 px wide (`rim`: part letter, part photo, where
an opacity a pixel off leaves a faint ghost of the word; tune marks: +1.4 dB PSNR, the ghost gone in crops).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from retouchd.textdetect.blendfit import guess
from retouchd.textdetect.db import Quad, candidates, probability_map, quad_size
from retouchd.textdetect.recognize import read_lines
from retouchd.textdetect.runtime import OcrModels
from retouchd.textdetect.watermark import TileBlend
from retouchd.typing import Mask, RGBImage

BACKGROUND = 51
"""Window (px at half size) of the local median the steps are measured from..."""
WORK_SIDE = 384
"""...the long side of that half size at most (a large photo is looked at smaller: the detector's cost bounded)."""
NEAR_BACKGROUND = 31
"""...and a nearer one the detector looks for lines in too (a photo busy at the larger scale)."""
STEPS = (0.15, 0.3)
LEVELS = (255.0, 0.0, 128.0)
"""The mark's colours looked for (white, black, mid grey; a grey it is fitted to)."""
CONTRAST = 300.0
COLOURS = (255.0, 200.0, 128.0, 0.0)
"""The colours a mark is fitted with first (white, light grey, mid grey, black); another must fit clearly better."""
CHANNEL_SPREAD = 0.12
MIN_TEXTURE = 1.5
"""Detail (median |I − blur|, levels) of the photo around the letters below which their own is not judged."""
TEXTURE_KEPT = 0.4
"""Share of the photo's detail, times (1 − α), the letters must keep (a fill or plate keeps almost none)."""
TEXTURE_ADDED = 2.5
SAME_ALPHA = 0.06
SAME_COLOUR = 30.0
"""Candidate steps in `log|C − I|` (α ≈ 0.11, 0.18, 0.26, 0.36 at the threshold)."""
MIN_HEIGHT = 0.15
"""A line (the detector's box, about 1.4 letter heights) is at least this share of the image's short side tall:
the marks are 100–200 px letters on a 512 px photo. At 0.1 a white caption's soft drop shadow (31–41 px
letters, holdout shadow Wood-1) was taken for a black mark; smaller words are the text detector's to mask."""
MIN_AREA = 0.012
MAX_AREA = 0.3
ALPHA = (0.12, 0.6)
MIN_EXPLAINED = 0.6
MIN_SPREAD = 12.0
GREY_PENALTY = 0.05
"""A grey mark's fit (two free numbers) must explain this much more than the white or black one."""
MIN_READ = 0.65
MIN_CHARS = 3
RIM = 3
GROW = 1.25
"""The line box the letters are looked for in, grown about its centre (a last letter the candidate missed)."""
LETTER_SHARE = 0.3
SURROUND = 6.0
"""Reach (px, Gaussian sigma) of the photo around a pixel that its step is measured from."""

Floats = npt.NDArray[np.float32]


def _log_distance(image: Floats, level: float) -> Floats:
    return np.asarray(np.log(np.abs(level - image) + 2.0).mean(axis=2), np.float32)


def _quantised(half: Floats, level: float) -> tuple[Floats, npt.NDArray[np.uint8]]:
    """`log|C − I|` (mean of the channels) of the image at half size (or less, `WORK_SIDE`), and its 1/40
    steps as bytes (the median filter's input): computed once per colour, shared by both windows."""
    small = _log_distance(half, level)
    return small, np.clip(small * 40, 0, 255).astype(np.uint8)


def _step(distance: tuple[Floats, npt.NDArray[np.uint8]], window: int = BACKGROUND) -> Floats:
    """`log|C − I|` less its local median (`_quantised`'s pair): a mark of colour C is one constant step
    `log(1 − α)` below zero over its letters."""
    small, quantised = distance
    background = cv2.medianBlur(quantised, window).astype(np.float32) / 40
    return np.asarray(cv2.GaussianBlur(small - background, (0, 0), 1.0), np.float32)


def _lines(models: OcrModels, step: Floats, shape: tuple[int, int]) -> list[Quad]:
    """The text lines the detector sees in the step map drawn grey (mid grey where the photo is even, the steps
    `CONTRAST` times darker or lighter): lines of letter height, in full-size pixels."""
    drawn = np.clip(128 + CONTRAST * step, 0, 255).astype(np.uint8)
    drawn = np.repeat(drawn[..., None], 3, axis=2)
    size = (max(32, round(step.shape[0] / 32) * 32), max(32, round(step.shape[1] / 32) * 32))
    return [c.quad for c in candidates(probability_map(models, drawn, size), shape)
            if quad_size(c.quad)[1] >= MIN_HEIGHT * min(shape)]


def _words(step: Floats, quad: Quad, shape: tuple[int, int]) -> list[Mask]:
    """Candidate letters (full-size masks) inside the line `quad`: its pixels `t` below the photo around them,
    for each step `t`, in components of letter size."""
    height, width = shape
    box = np.zeros(step.shape, np.uint8)
    cv2.fillPoly(box, [np.round(quad * step.shape[1] / width).astype(np.int32)], 1)
    short = min(step.shape)
    out = []
    for t in STEPS:
        below = cv2.morphologyEx(((step < -t) & (box > 0)).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(below, connectivity=8)
        keep = np.zeros(count, bool)
        for i in range(1, count):
            _, _, w, h, area = stats[i]
            keep[i] = max(w, h) >= 0.3 * MIN_HEIGHT * short and area >= 0.02 * (MIN_HEIGHT * short) ** 2
        word = keep[labels]
        if MIN_AREA <= float(word.mean()) <= MAX_AREA:
            out.append(cv2.resize(word.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0)
    return out


def _fit(image: Floats, word: Mask, level: float) -> tuple[float, float, float] | None:
    """(α, C, share of the step explained) on the word's inner rim against the photo just outside it, or None:
    C is one of `COLOURS` unless another fits clearly better."""
    kernel = np.ones((3, 3), np.uint8)
    beneath = guess(image, cv2.dilate(word.astype(np.uint8), kernel) > 0, 2.5)
    inner = (cv2.erode(word.astype(np.uint8), kernel, iterations=1) > 0) & ~(
        cv2.erode(word.astype(np.uint8), kernel, iterations=RIM) > 0)
    if int(inner.sum()) < 200:
        return None
    b = beneath[inner].reshape(-1).astype(np.float64)
    i = image[inner].reshape(-1).astype(np.float64)
    step = i - b
    fits = []
    for colour in COLOURS:
        far = np.abs(colour - b) >= 30
        if far.sum() >= 100:
            fits.append((float(np.median(step[far] / (colour - b[far]))), colour))
    if float(b.std()) >= MIN_SPREAD:
        slope, intercept = np.polyfit(b, i, 1)
        kept = np.abs(i - (slope * b + intercept)) <= np.quantile(np.abs(i - (slope * b + intercept)), 0.8)
        slope, intercept = np.polyfit(b[kept], i[kept], 1)
        if 1.0 - slope > 0.05:
            fits.append((1.0 - float(slope), float(intercept) / (1.0 - float(slope))))
    best = None
    for alpha, colour in fits:
        if not ALPHA[0] <= alpha <= ALPHA[1] or not -10 <= colour <= 265:
            continue
        residual = np.abs(i - (alpha * colour + (1 - alpha) * b))
        # Blades and grain crossing the letters are no part of the blend: judged on the best 80 %.
        kept = residual <= np.quantile(residual, 0.8)
        explained = 1.0 - float((residual[kept] ** 2).sum()) / max(float((step[kept] ** 2).sum()), 1e-6)
        if colour not in COLOURS:
            explained -= GREY_PENALTY
        if best is None or explained > best[2]:
            best = (alpha, float(np.clip(colour, 0, 255)), explained)
    if best is None or not _channels_agree(image[inner], beneath[inner], best[0], best[1]):
        return None
    if not _texture_kept(image, word, best[0]):
        return None
    return best


def _channels_agree(inside: Floats, beneath: Floats, alpha: float, colour: float) -> bool:
    """True when each channel on its own steps by the same α (a coloured plate darkens its blue less than its
    red; a translucent mark steps every channel by the same share of its distance from C)."""
    shares = []
    for channel in range(3):
        b, i = beneath[:, channel].astype(np.float64), inside[:, channel].astype(np.float64)
        far = np.abs(colour - b) >= 30
        if far.sum() >= 100:
            shares.append(float(np.median((i[far] - b[far]) / (colour - b[far]))))
    return len(shares) < 2 or max(abs(a - alpha) for a in shares) <= CHANNEL_SPREAD


def _texture_kept(image: Floats, word: Mask, alpha: float) -> bool:
    """True when the letters keep the photo's texture, scaled by (1 − α): an opaque plate or box is flat where
    the photo around it is not, and a plate with letters on it has edges of its own the photo lacks."""
    kernel = np.ones((3, 3), np.uint8)
    lum = image.mean(axis=2)
    detail = np.abs(lum - cv2.GaussianBlur(lum, (0, 0), 2.0))
    inside = cv2.erode(word.astype(np.uint8), kernel, iterations=2) > 0
    ring = (cv2.dilate(word.astype(np.uint8), kernel, iterations=6) > 0) & ~(
        cv2.dilate(word.astype(np.uint8), kernel, iterations=2) > 0)
    if int(inside.sum()) < 100 or int(ring.sum()) < 100:
        return True
    outside, own = float(np.median(detail[ring])), float(np.median(detail[inside]))
    if own > TEXTURE_ADDED * (1 - alpha) * outside + MIN_TEXTURE:  # edges of its own: a plate and its letters
        return False
    return outside < MIN_TEXTURE or own >= TEXTURE_KEPT * (1 - alpha) * outside


def _shape(image: Floats, word: Mask, box: Mask, alpha: float, colour: float) -> Floats:
    """Each pixel's share of the mark in the word's box: a pixel is a letter's when its distance from the
    mark's colour is (1 − α) times the photo's around it, in log units nearer that than 1 (twice over, the
    letters found the first time kept out of the surroundings the second)."""
    kernel = np.ones((3, 3), np.uint8)
    distance = _log_distance(image, colour)
    step = float(np.log(1.0 - alpha))
    letters = word
    for _ in range(2):
        keep = (cv2.dilate(letters.astype(np.uint8), kernel) == 0).astype(np.float32)
        around = cv2.GaussianBlur(distance * keep, (0, 0), SURROUND) / np.maximum(
            cv2.GaussianBlur(keep, (0, 0), SURROUND), 1e-6)
        letters = box & (distance - around < step / 2)
        letters = cv2.morphologyEx(letters.astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0
        letters = cv2.morphologyEx(letters.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
        seed = (letters & word).astype(np.uint8)
        # Only what joins the word: a pale blade beside the letters is the photo's.
        count, labels = cv2.connectedComponents(letters.astype(np.uint8), connectivity=8)
        touched = np.zeros(count, bool)
        touched[np.unique(labels[seed > 0])] = True
        sizes = np.bincount(labels.reshape(-1), minlength=count)
        if touched[1:].any():  # ...or is as large as a letter of it (one the candidate missed)
            touched |= sizes >= LETTER_SHARE * float(np.median(sizes[1:][touched[1:]]))
        touched[0] = False
        letters = touched[labels]
    soft = cv2.GaussianBlur(letters.astype(np.float32), (0, 0), 0.6)
    return np.asarray(soft, np.float32)


def _quad(word: Mask) -> Quad | None:
    """The word's line box, turned along its long axis (top-left, top-right, bottom-right, bottom-left)."""
    ys, xs = np.nonzero(word)
    if len(xs) < 50:
        return None
    points = np.column_stack([xs, ys]).astype(np.float64)
    centre = points.mean(0)
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    u = vectors[:, 1]
    if u[0] < 0:
        u = -u
    v = np.array([-u[1], u[0]])
    run, across = (points - centre) @ u, (points - centre) @ v
    pad = 0.15 * float(across.max() - across.min())
    corners = [(run.min() - pad, across.min() - pad), (run.max() + pad, across.min() - pad),
               (run.max() + pad, across.max() + pad), (run.min() - pad, across.max() + pad)]
    return np.array([centre + a * u + b * v for a, b in corners], np.float32)


def _reads(models: OcrModels, word: Mask) -> bool:
    quad = _quad(word)
    if quad is None:
        return False
    drawn = np.where(word[..., None], 40, 235).astype(np.uint8).repeat(3, axis=2)
    reading = read_lines(models, drawn, [quad])[0]
    letters = sum(ch.isalnum() for ch in reading.text)
    return reading.confidence >= MIN_READ and letters >= MIN_CHARS


def _grown(quad: Quad, shape: tuple[int, int]) -> Mask:
    grown = np.zeros(shape, np.uint8)
    centre = quad.mean(0)
    cv2.fillPoly(grown, [np.round(centre + GROW * (quad - centre)).astype(np.int32)], 1)
    return grown > 0


def find(models: OcrModels, rgb: RGBImage) -> TileBlend | None:
    """The large translucent word over `rgb` as an opacity map and colour, or None. Every line whose blend is
    the best line's (`SAME_ALPHA`, `SAME_COLOUR`: the second word of "STOCK PHOTO") joins it."""
    image = rgb.astype(np.float32)
    shape = (rgb.shape[0], rgb.shape[1])
    scale = min(0.5, WORK_SIDE / max(shape))
    small = (max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale)))
    half = np.asarray(cv2.resize(image, small, interpolation=cv2.INTER_AREA), np.float32)
    distances = {level: _quantised(half, level) for level in LEVELS}
    steps = {level: _step(distances[level]) for level in LEVELS}
    quads = [quad for level in LEVELS for quad in _lines(models, steps[level], shape)]
    quads += [quad for level in LEVELS for quad in _lines(models, _step(distances[level], NEAR_BACKGROUND), shape)]
    if not quads:  # no line of letter height (most photos): the colours looked for in lines only are not needed
        return None
    steps.update({level: _step(_quantised(half, level)) for level in COLOURS if level not in steps})
    fits: list[tuple[float, float, float, Mask, Quad]] = []
    for quad in quads:
        best: tuple[float, float, float, Mask, Quad] | None = None
        for level in COLOURS:
            for word in _words(steps[level], quad, shape):
                fitted = _fit(image, word, level)
                if fitted is not None and fitted[2] >= MIN_EXPLAINED and (best is None or fitted[2] > best[2]):
                    best = (*fitted, word, quad)
        if best is not None:
            fits.append(best)
    if not fits:
        return None
    alpha, colour, _, word, quad = max(fits, key=lambda f: f[2])
    box = _grown(quad, shape)
    word = word.copy()
    for other in fits:
        if abs(other[0] - alpha) <= SAME_ALPHA and abs(other[1] - colour) <= SAME_COLOUR:
            word |= other[3]
            box |= _grown(other[4], shape)
    soft = _shape(image, word, box, alpha, colour)
    # The blend again from the letters as drawn (the candidate misses parts of them, and the photo "outside" a
    # missed part is the mark: α came out low); the letters found with it join those found first.
    again = _fit(image, soft > 0.5, colour)
    if again is not None and abs(again[1] - colour) < 1:
        alpha = again[0]
        soft = np.maximum(soft, _shape(image, soft > 0.5, box, alpha, colour))
    if not (_reads(models, word) or _reads(models, soft > 0.5)):
        return None
    letters = (soft > 0.5).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    rim = (cv2.dilate(letters, kernel) > 0) & ~(cv2.erode(letters, kernel) > 0)
    return TileBlend(np.asarray(soft * alpha, np.float32), (colour, colour, colour), 1, rim)
