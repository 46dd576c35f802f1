"""How much a candidate box looks like an overlay; an image's overlay score is its best box's evidence.

evidence = det × read × length × repetition × tilt, each factor in [0, 1]:

- det = clip((det_score − 0.3) / 0.5): the detector's mean probability inside the box (0.8 and up → 1).
- read = the recogniser's mean character probability over the decoded string.
- length = 0, 0.3, 0.7, 1 for 0, 1, 2, ≥3 non-space characters: a lone "character" is most often an eye,
  a flower or a knot in wood, a line of several is writing.
- repetition = distinct / total non-space characters when the reading contains characters outside the
  Latin blocks (code points below U+0250), else 1. The recogniser reads daisies and seed heads as a
  repeated ideograph (米米米); real CJK captions rarely repeat one glyph, and Latin dates do ("11 11")
  without penalty.
- tilt = 1 up to 1.5° from the image axes, falling linearly to 0.3 at 6° and beyond: overlays are typeset
  level (or vertical); scene text (signs in perspective, shirts, coins) and texture are not. A tilted line
  whose reading repeats along other lines at the same angle (a tiled watermark) gets its 1 back
  (`repeated`): signs do not come in rows of identical copies.
"""

from __future__ import annotations

from dataclasses import dataclass

DET_FLOOR = 0.3
DET_SPAN = 0.5
LENGTH_WEIGHT = (0.0, 0.3, 0.7)
TILT_FREE = 1.5
TILT_FULL = 6.0
TILT_FLOOR = 0.3
REPEAT_ANGLE = 2.0
REPEATS = 3
REPEAT_CHARS = 4


@dataclass(frozen=True, slots=True)
class Evidence:
    det: float
    read: float
    length: float
    repetition: float
    tilt: float

    @property
    def value(self) -> float:
        return self.det * self.read * self.length * self.repetition * self.tilt


def _is_latin(char: str) -> bool:
    return ord(char) < 0x250


def weigh(det_score: float, text: str, confidence: float, tilt_degrees: float) -> Evidence:
    """The factors for one box (see the module docstring)."""
    glyphs = [c for c in text if not c.isspace()]
    det = min(1.0, max(0.0, (det_score - DET_FLOOR) / DET_SPAN))
    length = LENGTH_WEIGHT[len(glyphs)] if len(glyphs) < len(LENGTH_WEIGHT) else 1.0
    latin = all(_is_latin(c) for c in glyphs)
    repetition = 1.0 if latin or not glyphs else len(set(glyphs)) / len(glyphs)
    over = min(1.0, max(0.0, (tilt_degrees - TILT_FREE) / (TILT_FULL - TILT_FREE)))
    tilt = 1.0 - over * (1.0 - TILT_FLOOR)
    return Evidence(det, max(0.0, min(1.0, confidence)), length, repetition, tilt)


def _similar(a: str, b: str) -> bool:
    a, b = a.replace(" ", "").casefold(), b.replace(" ", "").casefold()
    return len(a) >= REPEAT_CHARS and len(b) >= REPEAT_CHARS and (a in b or b in a)


def repeated(readings: list[tuple[str, float]]) -> list[bool]:
    """Per line (reading, signed angle in degrees): whether at least `REPEATS` lines, itself included, read
    alike (one reading inside the other, ≥ `REPEAT_CHARS` characters) at the same angle."""
    out = []
    for text, angle in readings:
        alike = sum(1 for t, a in readings if abs(a - angle) <= REPEAT_ANGLE and _similar(text, t))
        out.append(alike >= REPEATS)
    return out
