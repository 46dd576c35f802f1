"""Inpainting quality and speed: telea against patch on scikit-image's bundled photos.

Each photo gets a seeded synthetic blob mask covering 3–6 % of it, and a striped magenta/cyan "object"
is painted inside the mask, so the input really has something to remove. Measured inside the hole:
PSNR against the untouched photo, texture ratio (gradient energy in the hole / in a ring around it; ≈ 1
means as textured as the surroundings, a blur gives ≪ 1), the same energy relative to the truth, and the
share of hole pixels that still look like the object. Then the time for a 768×512 photo with a 5 % mask
and for a 12 MP one (wall and CPU seconds: on a shared machine the CPU time is the steadier figure).
Side-by-side images (input | mask | telea | patch) go to the printed folder.

Run: /tmp/venv/bin/python bench/inpaint_quality.py [--out DIR] [--threads N] [--no-12mp]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch

from retouchd.inpaint import inpaint
from retouchd.steps.base import StepContext

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "brick", "grass", "gravel")
ENGINES = ("telea", "patch")
OBJECT_COLOURS = np.array([[255, 0, 255], [0, 255, 255]], dtype=np.float32)
RING_PX = 12


def load_photo(name: str) -> np.ndarray:
    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    return np.ascontiguousarray(image[..., :3])


def blob_mask(height: int, width: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """One to three wobbly blobs whose union covers about `fraction` of the image."""
    mask = np.zeros((height, width), np.uint8)
    count = int(rng.integers(1, 4))
    for _ in range(count):
        radius = np.sqrt(fraction * height * width / count / np.pi)
        cy = rng.uniform(radius * 1.3, height - radius * 1.3)
        cx = rng.uniform(radius * 1.3, width - radius * 1.3)
        theta = np.linspace(0, 2 * np.pi, 90, endpoint=False)
        wobble = sum(rng.uniform(-0.15, 0.15) * np.cos(k * theta + rng.uniform(0, 6.3)) for k in range(2, 5))
        rr = radius * (1 + wobble)
        points = np.stack([cx + rr * np.cos(theta), cy + rr * np.sin(theta)], 1).astype(np.int32)
        cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def paint_object(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Stripes of the object colours inside the mask, 1 px short of its edge (a mask with a margin)."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    stripes = ((xx + yy) // 6) % 2
    out = image.copy()
    out[inner] = OBJECT_COLOURS[stripes[inner]].astype(np.uint8)
    return out


def gradient_energy(image: np.ndarray, region: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return float((gx * gx + gy * gy)[region].mean())


def hole_metrics(truth: np.ndarray, out: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    size = 2 * RING_PX + 1
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool) & ~hole
    mse = float(((truth.astype(np.float64) - out.astype(np.float64))[hole] ** 2).mean())
    pixels = out[hole].astype(np.float32)
    near = np.linalg.norm(pixels[:, None, :] - OBJECT_COLOURS[None], axis=2).min(axis=1) < 60
    return {
        "psnr": 10 * np.log10(255**2 / max(mse, 1e-9)),
        "texture_ratio": gradient_energy(out, hole) / max(gradient_energy(out, ring), 1e-9),
        "energy_vs_truth": gradient_energy(out, hole) / max(gradient_energy(truth, hole), 1e-9),
        "object_trace": float(near.mean()),
    }


def side_by_side(images: list[np.ndarray]) -> np.ndarray:
    return cv2.cvtColor(np.hstack(images), cv2.COLOR_RGB2BGR)


def quality(ctx: StepContext, out_dir: Path) -> list[dict[str, object]]:
    rng = np.random.default_rng(2026)
    rows: list[dict[str, object]] = []
    for name in PHOTOS:
        truth = load_photo(name)
        hole = blob_mask(truth.shape[0], truth.shape[1], float(rng.uniform(0.03, 0.06)), rng)
        given = paint_object(truth, hole)
        panels = [given, np.dstack([hole.astype(np.uint8) * 255] * 3)]
        for engine in ENGINES:
            start = time.perf_counter()
            out = inpaint(given, hole, engine=engine, ctx=ctx)
            seconds = time.perf_counter() - start
            rows.append({"photo": name, "engine": engine, "mask": float(hole.mean()), "seconds": seconds,
                         **hole_metrics(truth, out, hole)})
            panels.append(out)
        cv2.imwrite(str(out_dir / f"{name}.png"), side_by_side(panels))
    return rows


def timing(ctx: StepContext, out_dir: Path, size: tuple[int, int], label: str) -> dict[str, float]:
    rng = np.random.default_rng(7)
    photo = cv2.resize(load_photo("motorcycle"), size, interpolation=cv2.INTER_AREA)
    hole = blob_mask(size[1], size[0], 0.05, rng)
    given = paint_object(photo, hole)
    result: dict[str, float] = {"mask": float(hole.mean())}
    panels = [given]
    for engine in ENGINES:
        start, cpu = time.perf_counter(), time.process_time()
        out = inpaint(given, hole, engine=engine, ctx=ctx)
        result[engine] = time.perf_counter() - start
        result[f"{engine}_cpu"] = time.process_time() - cpu
        panels.append(out)
    preview = side_by_side(panels)
    scale = min(1.0, 2400 / preview.shape[1])
    preview = cv2.resize(preview, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out_dir / f"{label}.png"), preview)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "retouchd-bench" / "inpaint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-12mp", action="store_true", help="skip the 12 MP timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = StepContext(rule="bench", source=Path("bench"))

    rows = quality(ctx, args.out)
    print(f"{'photo':<11} {'engine':<6} {'mask':>5} {'PSNR':>6} {'texture':>7} {'vs truth':>8} {'trace':>6} {'s':>6}")
    for row in rows:
        print(f"{row['photo']:<11} {row['engine']:<6} {row['mask']:5.3f} {row['psnr']:6.2f} "
              f"{row['texture_ratio']:7.2f} {row['energy_vs_truth']:8.2f} {row['object_trace']:6.3f} "
              f"{row['seconds']:6.2f}")
    summary: dict[str, object] = {}
    for engine in ENGINES:
        mine = [r for r in rows if r["engine"] == engine]
        summary[engine] = {
            key: statistics.fmean(float(r[key]) for r in mine)  # type: ignore[arg-type]
            for key in ("psnr", "texture_ratio", "energy_vs_truth", "object_trace", "seconds")
        }
    print("mean:", {e: {k: round(v, 3) for k, v in s.items()} for e, s in summary.items()})  # type: ignore[union-attr]

    timings = {"768x512": timing(ctx, args.out, (768, 512), "time_768x512")}
    if not args.no_12mp:
        timings["12MP"] = timing(ctx, args.out, (4240, 2832), "time_12mp")
    for label, values in timings.items():
        spent = ", ".join(f"{e} {values[e]:.2f} s (CPU {values[e + '_cpu']:.2f} s)" for e in ENGINES)
        print(f"time {label}: mask {values['mask']:.3f}, {spent}")
    print(f"images: {args.out}")
    report = {"threads": args.threads, "photos": rows, "mean": summary, "timing": timings, "images": str(args.out)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
