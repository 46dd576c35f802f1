"""Time of the inpainting engine on 1 MP photos, per mask shape: wall and CPU seconds, the least of N runs.

Tune crops (bench/photoset.py; 768×512) are enlarged to 1224×816 (bicubic). Masks: a seeded 5 % blob
(`blobs`, issue 17's time target: < 3 s on 2 cores), and the other shapes of bench/inpaint_quality.py drawn
at this size (border 4.3 %, large 15 %, person 8 %, edge 4 %, scratches 2 %). The hole is painted grey. Runs
alternate photos and shapes, so a change in the machine's load spreads over all of them. `--save DIR` writes
each output as PNG, to compare the fills of two trees pixel by pixel (`--compare DIR`: the mean |Δ| and
the hole PSNR of one against the other).

Run: python bench/inpaint_time.py [--photos Kite-0,Volna-1] [--shapes blobs,large] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inpaint_quality import GREY, SHAPES, _blob
from photoset import photos
from retouchd.inpaint import inpaint
from retouchd.steps.base import StepContext

SIZE = (1224, 816)
DEFAULT_PHOTOS = "GreenMeadow-1,Kite-0"
DEFAULT_SHAPES = "blobs,border,large,person,edge,scratch"


def blob5(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One blob of 5 % of the image, in the middle (the issue's time target)."""
    h, w = truth.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    _blob(mask, h / 2, w / 2, np.sqrt(0.05 * h * w / np.pi), rng)
    return mask.astype(bool)


def cases(names: list[str], shapes: list[str]) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(photo, shape, given image, hole) for every pair; masks seeded by photo and shape."""
    by_name = dict(photos("tune"))
    out = []
    for i, name in enumerate(names):
        photo = cv2.resize(by_name[name], SIZE, interpolation=cv2.INTER_CUBIC)
        for shape in shapes:
            rng = np.random.default_rng([i, list(SHAPES).index(shape), 17])
            hole = blob5(photo, rng) if shape == "blobs" else SHAPES[shape][1](photo, rng)
            given = photo.copy()
            given[hole] = GREY
            out.append((name, shape, given, hole))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=DEFAULT_PHOTOS)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engine", default="patch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", type=Path, help="write each output here as PNG")
    parser.add_argument("--compare", type=Path, help="compare the outputs with those saved here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    ctx = StepContext(rule="bench", source=Path("bench"))
    todo = cases(args.photos.split(","), args.shapes.split(","))
    walls: dict[tuple[str, str], list[float]] = {(p, s): [] for p, s, _, _ in todo}
    cpus: dict[tuple[str, str], list[float]] = {(p, s): [] for p, s, _, _ in todo}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.runs):
        for name, shape, given, hole in todo:
            start, cpu = time.perf_counter(), time.process_time()
            outputs[name, shape] = inpaint(given, hole, engine=args.engine, ctx=ctx)
            walls[name, shape].append(time.perf_counter() - start)
            cpus[name, shape].append(time.process_time() - cpu)
        loads.append(os.getloadavg()[0])
    rows = []
    print(f"{args.engine}, {SIZE[0]}×{SIZE[1]}, least of {args.runs} runs; load {min(loads):.1f}–{max(loads):.1f}")
    print("| photo | shape | hole | wall s | CPU s | CPU median s | vs saved: mean abs diff, hole PSNR |")
    print("|---|---|---|---|---|---|---|")
    for name, shape, _given, hole in todo:
        key = (name, shape)
        row: dict[str, object] = {"photo": name, "shape": shape, "area": float(hole.mean()),
                                  "wall_s": min(walls[key]), "cpu_s": min(cpus[key]),
                                  "cpu_median_s": statistics.median(cpus[key])}
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.save / f"{name}-{shape}.png"), cv2.cvtColor(outputs[key], cv2.COLOR_RGB2BGR))
        versus = ""
        if args.compare:
            other = cv2.cvtColor(cv2.imread(str(args.compare / f"{name}-{shape}.png")), cv2.COLOR_BGR2RGB)
            diff = outputs[key].astype(np.float64) - other.astype(np.float64)
            mse = float((diff[hole] ** 2).mean())
            row["vs_mad"] = float(np.abs(diff[hole]).mean())
            row["vs_psnr"] = 10 * float(np.log10(255**2 / max(mse, 1e-9)))
            versus = f"{row['vs_mad']:.2f}, {row['vs_psnr']:.1f} dB"
        rows.append(row)
        print(f"| {name} | {shape} | {hole.mean():.1%} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | "
              f"{row['cpu_median_s']:.2f} | {versus} |", flush=True)
    print(json.dumps({"engine": args.engine, "size": SIZE, "runs": args.runs,
                      "load": [min(loads), max(loads)], "rows": rows}))


if __name__ == "__main__":
    main()
