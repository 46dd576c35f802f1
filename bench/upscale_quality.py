"""PSNR-Y and SSIM-Y of the upscale models against bicubic, on scikit-image's bundled photos.

Each photo (a centre crop of at most --crop pixels, trimmed to a multiple of the scale) is downscaled with
Pillow's bicubic filter, then enlarged back by bicubic (the baseline) and by the `upscale` step with each
model. Metrics are on the BT.601 luma with `scale` pixels of border shaved, as SR papers report them.
Targets: `fast` beats bicubic by ≥ 1.5 dB at ×2 and ≥ 1.0 dB at ×4.

    /tmp/venv/bin/python bench/upscale_quality.py [--crop 384] [--models fast,anime,photo,lanczos]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity

from retouchd.steps.base import StepContext
from retouchd.steps.upscale import UpscaleOptions, UpscaleStep
from retouchd.typing import Frame

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SCALES = (2, 3, 4)


class Cache:
    def __init__(self) -> None:
        self.items: dict[str, object] = {}

    def get(self, key: str, load: Any) -> object:
        if key not in self.items:
            self.items[key] = load()
        return self.items[key]


def luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def metrics(truth: np.ndarray, guess: np.ndarray, border: int) -> tuple[float, float]:
    a = luma(truth)[border:-border, border:-border]
    b = luma(guess)[border:-border, border:-border]
    psnr = 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))
    ssim = structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    return float(psnr), float(ssim)


def record(results: dict[str, dict[str, Any]], scale: int, model: str, values: tuple[float, float, float]) -> None:
    entry = results.setdefault(f"x{scale}", {}).setdefault(model, {"psnr": [], "ssim": [], "s": []})
    for key, value in zip(("psnr", "ssim", "s"), values, strict=True):
        entry[key].append(value)


def centre_crop(rgb: np.ndarray, size: int, scale: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = min(h, size) // scale * scale, min(w, size) // scale * scale
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[top : top + ch, left : left + cw])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=384, help="largest side of the ground-truth crop")
    parser.add_argument("--models", default="fast,anime,photo,lanczos")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    models = args.models.split(",")
    ctx = StepContext(rule="bench", source=Path("bench"), models=Cache(), cpu_threads=args.threads)
    results: dict[str, dict[str, Any]] = {}
    for scale in SCALES:
        for name in PHOTOS:
            truth = centre_crop(getattr(data, name)()[..., :3], args.crop, scale)
            h, w = truth.shape[:2]
            low = np.asarray(Image.fromarray(truth).resize((w // scale, h // scale), Image.Resampling.BICUBIC))
            bicubic = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC))
            record(results, scale, "bicubic", (*metrics(truth, bicubic, scale), 0.0))
            for model in models:
                start = time.perf_counter()
                out = UpscaleStep(UpscaleOptions(scale=scale, model=model)).run(Frame(low), ctx).frame.rgb
                record(results, scale, model, (*metrics(truth, out, scale), time.perf_counter() - start))
    print(f"{'scale':5} {'model':8} {'PSNR-Y':>7} {'gain dB':>7} {'SSIM-Y':>7} {'s/img':>6}")
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for scale_key, by_model in results.items():
        base = float(np.mean(by_model["bicubic"]["psnr"]))
        for model, entry in by_model.items():
            row = {"psnr_y": round(float(np.mean(entry["psnr"])), 2), "ssim_y": round(float(np.mean(entry["ssim"])), 4),
                   "gain_db": round(float(np.mean(entry["psnr"])) - base, 2),
                   "seconds_per_image": round(float(np.mean(entry["s"])), 2),
                   "per_photo_psnr": dict(zip(PHOTOS, (round(p, 2) for p in entry["psnr"]), strict=True))}
            summary.setdefault(scale_key, {})[model] = row
            print(f"{scale_key:5} {model:8} {row['psnr_y']:7.2f} {row['gain_db']:+7.2f} {row['ssim_y']:7.4f} "
                  f"{row['seconds_per_image']:6.2f}")
    targets = {}
    if "fast" in models:
        targets = {"fast_x2_gain_ge_1.5": summary["x2"]["fast"]["gain_db"] >= 1.5,
                   "fast_x4_gain_ge_1.0": summary["x4"]["fast"]["gain_db"] >= 1.0}
    print(json.dumps({"crop": args.crop, "photos": PHOTOS, "results": summary, "targets": targets}))


if __name__ == "__main__":
    main()
