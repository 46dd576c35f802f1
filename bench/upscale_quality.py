"""PSNR-Y and SSIM-Y of the upscale models against bicubic: scikit-image photos, or real thumbnails.

Each photo (a centre crop of at most --crop pixels, trimmed to a multiple of the scale) is downscaled with
Pillow's bicubic filter, then enlarged back by bicubic (the baseline) and by the `upscale` step with each
model. Metrics are on the BT.601 luma with `scale` pixels of border shaved, as SR papers report them.
Targets: `fast` beats bicubic by ≥ 1.5 dB at ×2 and ≥ 1.0 dB at ×4.

    /tmp/venv/bin/python bench/upscale_quality.py [--crop 384] [--models fast,anime,photo,lanczos]

With `--set tune|holdout` it builds the "real thumbnails" table instead, on bench/photoset.py's photos:
each **full frame** (768×512, trimmed to a multiple of the scale) is the ground truth, downscaled by area
(box) or Lanczos, saved as JPEG at quality 60 / 75 / 90, and enlarged ×2 / ×3 / ×4 by bicubic, Lanczos and
`fast` (which reads the JPEG's tables, as in the daemon); clean bicubic downscales at ×2 / ×4 are the
control. Per row: mean PSNR-Y / SSIM-Y of each method, `fast`'s mean, median and worst-photo gain over
bicubic (one flat photo can carry a mean) and its gain over Lanczos; per photo in the JSON. "written" is
end to end: `fast`'s output encoded as the daemon writes it (images.encode, the rule's default output:
same format, quality "same") and decoded again, its gain over the bicubic array and its bytes over the
thumbnail's. Targets:
`fast` ≥ +0.5 dB over bicubic on every thumbnail row, no photo below bicubic by more than 0.2 dB,
≥ +3.0 dB on the bicubic control. Centre crops flatter
`fast` (the subject is in the centre; flat sky and bokeh are at the edges), so only full frames are reported;
`--crop N`, `--every N` and `--cases` give a faster subset while developing.

    python bench/upscale_quality.py --set holdout            # the reported table (~40 min on 2 busy cores)
    python bench/upscale_quality.py --set tune --every 6 --cases area60x2,lanczos90x4 [--crop 256]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity

from retouchd.images import OutputSpec, decode, encode
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


THUMBNAIL_CASES = [(kind, quality, scale) for kind in ("area", "lanczos") for quality in (60, 75, 90)
                   for scale in SCALES] + [("bicubic", None, 2), ("bicubic", None, 4)]
FILTERS = {"area": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


def thumbnail(truth: np.ndarray, kind: str, quality: int | None, scale: int, folder: Path) -> tuple[np.ndarray, Path]:
    """The small image and the file the daemon would have read it from (a JPEG, or a PNG when clean)."""
    h, w = truth.shape[:2]
    low = Image.fromarray(truth).resize((w // scale, h // scale), FILTERS[kind])
    path = folder / ("thumb.jpg" if quality else "thumb.png")
    buffer = io.BytesIO()
    low.save(buffer, "JPEG" if quality else "PNG", **({"quality": quality} if quality else {}))
    path.write_bytes(buffer.getvalue())
    with Image.open(path) as decoded:
        return np.asarray(decoded.convert("RGB")), path


def as_written(frame: Frame, source: Path) -> tuple[np.ndarray, float]:
    """`frame` as the daemon writes it for `source` (default output spec), decoded; and its bytes over the source's."""
    data = source.read_bytes()
    info = decode(data, max_pixels=1 << 30).info
    buffer = io.BytesIO()
    encode(frame, info, OutputSpec(), buffer)
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        return np.asarray(im.convert("RGB")), buffer.tell() / len(data)


def real_thumbnails(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from photoset import photos

    chosen = photos(args.set)[:: args.every]
    crop = args.crop if args.crop != 384 else 0
    wanted = set(args.cases.split(",")) if args.cases else None
    rows: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for kind, quality, scale in THUMBNAIL_CASES:
            case = f"{kind} q{quality or '-'} x{scale}"
            if wanted is not None and f"{kind}{quality or ''}x{scale}" not in wanted:
                continue
            per: dict[str, dict[str, tuple[float, float]]] = {"bicubic": {}, "lanczos": {}, "fast": {}, "written": {}}
            sizes: list[float] = []
            for name, rgb in chosen:
                truth = centre_crop(rgb, crop or max(rgb.shape), scale)
                h, w = truth.shape[:2]
                low, path = thumbnail(truth, kind, quality, scale, Path(tmp))
                for method, filt in (("bicubic", Image.Resampling.BICUBIC), ("lanczos", Image.Resampling.LANCZOS)):
                    per[method][name] = metrics(truth, np.asarray(Image.fromarray(low).resize((w, h), filt)), scale)
                ctx = StepContext(rule="bench", source=path, models=CACHE, cpu_threads=args.threads)
                result = UpscaleStep(UpscaleOptions(scale=scale, model="fast")).run(Frame(low), ctx)
                per["fast"][name] = metrics(truth, result.frame.rgb, scale)
                written, size = as_written(result.frame, path)
                per["written"][name] = metrics(truth, written, scale)
                sizes.append(size)
            gains = [per["fast"][n][0] - per["bicubic"][n][0] for n, _ in chosen]
            ends = [per["written"][n][0] - per["bicubic"][n][0] for n, _ in chosen]
            rows[case] = {
                **{f"{m}_psnr_y": round(float(np.mean([v[0] for v in per[m].values()])), 2) for m in per},
                **{f"{m}_ssim_y": round(float(np.mean([v[1] for v in per[m].values()])), 4) for m in per},
                "gain_vs_bicubic_db": round(float(np.mean(gains)), 2),
                "median_vs_bicubic_db": round(float(np.median(gains)), 2),
                "worst_vs_bicubic_db": round(float(min(gains)), 2),
                "gain_vs_lanczos_db": round(float(np.mean([per["fast"][n][0] - per["lanczos"][n][0]
                                                            for n, _ in chosen])), 2),
                "written_vs_bicubic_db": round(float(np.mean(ends)), 2),
                "written_median_vs_bicubic_db": round(float(np.median(ends)), 2),
                "written_bytes_over_thumbnail": round(float(np.mean(sizes)), 2),
                "per_photo_gain_db": {n: round(g, 2) for (n, _), g in zip(chosen, gains, strict=True)},
                "per_photo_written_gain_db": {n: round(g, 2) for (n, _), g in zip(chosen, ends, strict=True)},
            }
            r = rows[case]
            print(f"{case:18} bic {r['bicubic_psnr_y']:6.2f}/{r['bicubic_ssim_y']:.4f}  "
                  f"lz {r['lanczos_psnr_y']:6.2f}/{r['lanczos_ssim_y']:.4f}  "
                  f"fast {r['fast_psnr_y']:6.2f}/{r['fast_ssim_y']:.4f}  vs bic {r['gain_vs_bicubic_db']:+5.2f} "
                  f"(median {r['median_vs_bicubic_db']:+5.2f}, worst {r['worst_vs_bicubic_db']:+5.2f})  "
                  f"vs lz {r['gain_vs_lanczos_db']:+5.2f}  written {r['written_vs_bicubic_db']:+5.2f} "
                  f"(median {r['written_median_vs_bicubic_db']:+5.2f}, {r['written_bytes_over_thumbnail']:.1f}× bytes)",
                  flush=True)
    jpeg = [r for case, r in rows.items() if not case.startswith("bicubic")]
    targets = {
        "thumbnail_gain_ge_0.5": all(r["gain_vs_bicubic_db"] >= 0.5 for r in jpeg),
        "no_photo_below_bicubic_by_0.2": all(r["worst_vs_bicubic_db"] >= -0.2 for r in jpeg),
        "bicubic_control_ge_3.0": all(r["gain_vs_bicubic_db"] >= 3.0 for c, r in rows.items() if c.startswith("bic")),
    }
    print(json.dumps({"set": args.set, "crop": crop, "photos": [n for n, _ in chosen], "results": rows,
                      "targets": targets, "seconds": round(time.perf_counter() - start, 1)}))


CACHE = Cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=384,
                        help="largest side of the ground-truth crop (with --set: full frames unless given)")
    parser.add_argument("--models", default="fast,anime,photo,lanczos")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--set", choices=("tune", "holdout", "fresh"), help="the real-thumbnails table on these photos")
    parser.add_argument("--every", type=int, default=1, help="with --set: use every n-th photo")
    parser.add_argument("--cases", default="", help="with --set: only these rows, e.g. area60x2,lanczos90x4,bicubicx2")
    args = parser.parse_args()
    if args.set:
        real_thumbnails(args)
        return
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
