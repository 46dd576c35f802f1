"""Evidence for a line the recogniser cannot read: a row of glyphs of one height on one baseline.

The bundled recogniser reads Latin, digits and Chinese; Hangul (and any script it lacks) comes back empty
or at low confidence. A detection must not be vetoed for that: when the letter mask of a confidently
detected, level line splits (by empty columns) into at least `MIN_GLYPHS` clusters whose tops and
bottoms line up (within `ALIGN` of the text height, for `ALIGNED_SHARE` of them) and whose ink spans most
of the line, the line is written in a script we do not read. Petals, eyes and knots make one or two blobs
of unequal height, not a row.
"""

from __future__ import annotations

import numpy as np

from retouchd.textdetect.db import Quad
from retouchd.typing import Mask

MIN_GLYPHS = 3
ALIGN = 0.3
ALIGNED_SHARE = 0.75
MIN_HEIGHT = 0.55
"""A cluster counts when it is at least this share of the median cluster height tall."""
COVER = 0.45
GLYPH_READ = 0.8
"""The reading confidence a row of glyphs stands in for."""


def glyph_row(letters: Mask, quad: Quad) -> int:
    """How many aligned glyph clusters the letters of a level line make (0 when they do not form a row)."""
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int), 0)
    x1, y1 = np.ceil(quad.max(0)).astype(int) + 1
    ink = letters[y0:y1, x0:x1]
    columns = ink.any(axis=0)
    if columns.sum() < 4:
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], columns.astype(np.int8), [0]])))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    extents = []
    for start, stop in runs:
        rows = np.flatnonzero(ink[:, start:stop].any(axis=1))
        extents.append((int(rows[0]), int(rows[-1]) + 1, int(stop - start)))
    height = float(np.median([bottom - top for top, bottom, _ in extents]))
    tall = [e for e in extents if e[1] - e[0] >= MIN_HEIGHT * height]
    if len(tall) < MIN_GLYPHS or height < 4:
        return 0
    top = float(np.median([e[0] for e in tall]))
    bottom = float(np.median([e[1] for e in tall]))
    aligned = [e for e in tall if abs(e[0] - top) <= ALIGN * height and abs(e[1] - bottom) <= ALIGN * height]
    span = int(edges[-1] - edges[0])
    if len(aligned) < max(MIN_GLYPHS, ALIGNED_SHARE * len(tall)) or sum(e[2] for e in tall) < COVER * span:
        return 0
    return len(aligned)
