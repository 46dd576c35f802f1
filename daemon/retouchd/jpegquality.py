"""`quality = "same"`: a JPEG written from a JPEG keeps the source's quantisation tables and chroma subsampling.

Re-encoding with the source's own tables re-quantises unchanged 8×8 blocks to (nearly) the same
coefficients, so a pass through the daemon costs next to nothing where no step painted; a fixed quality
would re-round every block to other tables (a full JPEG generation). Where the source's tables cannot be
reused (not a JPEG, CMYK, an unusual table layout), "same" means DEFAULT_QUALITY.

An enlarged output has no unchanged blocks to keep, and the source's steps cost it more than they cost the
source: on the tune photos (area thumbnails at q75, `fast`), writing the ×2 result with the source's own
tables kept +0.21 of its +0.72 dB over bicubic, the ×4 result +0.62 of +0.83. So for an output enlarged by
`s` the source's steps are divided by min(s, ENLARGED_DIVISOR): ×2 kept +0.48 dB (3.4× the source's bytes
instead of 2.4×), ×4 +0.72 (8.4× instead of 6.0×); dividing by s at ×4 kept +0.74 for 12× the bytes, and
4:4:4 chroma kept no more luma for 30 % more bytes. Subsampling stays the source's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image, JpegImagePlugin

from retouchd.outputspec import Quality

DEFAULT_QUALITY = 92
"""What "same" means when the source has no tables to reuse (and for WebP)."""
ENLARGED_DIVISOR = 2.0
"""The most the source's quantisation steps are divided by for an enlarged output (see above)."""


@dataclass(frozen=True)
class JpegTables:
    """A JPEG source's quantisation tables (zig-zag order, as Pillow gives them) and subsampling."""

    qtables: tuple[tuple[int, ...], ...]
    subsampling: int
    """Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0; -1 = unknown (libjpeg's default is used)."""


def read_tables(im: Image.Image) -> JpegTables | None:
    """The tables of an opened JPEG with 1 (gray) or 3 (YCbCr) components, else None."""
    if im.format not in ("JPEG", "MPO") or getattr(im, "layers", 0) not in (1, 3):
        return None
    quantization: Any = getattr(im, "quantization", None)
    if not isinstance(quantization, dict) or not quantization or len(quantization) > 4:
        return None
    try:
        tables = tuple(tuple(int(v) for v in quantization[k]) for k in sorted(quantization))
    except (TypeError, ValueError):
        return None
    if any(len(t) != 64 for t in tables):
        return None
    return JpegTables(qtables=tables, subsampling=int(JpegImagePlugin.get_sampling(im)))


def numeric(quality: Quality) -> int:
    """The 1-100 quality an encoder gets when it cannot take tables."""
    return DEFAULT_QUALITY if quality == "same" else quality


def jpeg_params(quality: Quality, tables: JpegTables | None, mode: str, enlarged: float = 1.0) -> dict[str, Any]:
    """Pillow save parameters for JPEG: the source's tables for "same" where they fit the image written,
    their steps divided by min(`enlarged`, ENLARGED_DIVISOR) for an output `enlarged` times the source."""
    if quality != "same" or tables is None:
        return {"quality": numeric(quality)}
    components = 1 if mode == "L" else 3
    # A gray source written in colour (or the reverse) needs the other number of tables: use the default.
    if (components == 1) != (len(tables.qtables) == 1):
        return {"quality": DEFAULT_QUALITY}
    params: dict[str, Any] = {"qtables": [finer(t, enlarged) for t in tables.qtables]}
    if components == 3 and tables.subsampling in (0, 1, 2):
        params["subsampling"] = tables.subsampling
    return params


def finer(table: tuple[int, ...], enlarged: float) -> list[int]:
    """`table`'s steps for an output `enlarged` times its source: divided by min(enlarged, ENLARGED_DIVISOR),
    rounded, at least 1; unchanged for an output that is not larger."""
    divisor = min(max(enlarged, 1.0), ENLARGED_DIVISOR)
    if divisor == 1.0:
        return list(table)
    return [max(1, round(step / divisor)) for step in table]
