"""Where the `patch` fill's hole error comes from, per photo and mask shape (issue 17): a diagnostic, not a score.

For each photo and shape of bench/inpaint_quality.py, on the hole of the whole engine's output:
- `lf`: share of the hole's squared error that is low-frequency (the error's masked Gaussian mean, sigma 6 px);
- `oracle`: PSNR with the fill's local mean swapped for the truth's (what a perfect shading fix would give);
- `telea_lf`: PSNR with the fill's local mean swapped for Telea's (what a membrane-style shading fix gives);
- `bias`: mean luma of the fill minus the truth's (negative: too dark).
Then, on the completion alone (no edge guides, no period, no seam or grain) of a crop around the hole:
- `coherence`: share of hole targets of the finest field whose right neighbour copies with the same offset;
- `voted` / `copied`: texture ratio of the voted fill and of a fill where each pixel takes only the centre of
  the source matched to the patch centred on it (no averaging of overlapping patches).

Run: python bench/inpaint_causes.py [--set tune] [--limit N] [--shapes blobs,person]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inpaint_quality import GREY, SHAPES, metrics
from photoset import photos
from retouchd.inpaint import inpaint
from retouchd.inpaint.completion import complete
from retouchd.inpaint.patchmatch import Params
from retouchd.steps.base import StepContext

SIGMA = 6.0
MARGIN = 60


def local_mean(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Gaussian mean of `image` over hole pixels only (H×W×3 float)."""
    w = hole.astype(np.float32)
    num = cv2.GaussianBlur(image * w[..., None], (0, 0), SIGMA)
    return np.asarray(num / np.maximum(cv2.GaussianBlur(w, (0, 0), SIGMA)[..., None], 1e-6))


def psnr(a: np.ndarray, b: np.ndarray, hole: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64))[hole] ** 2).mean())
    return 10 * float(np.log10(255**2 / max(mse, 1e-9)))


def error_split(truth: np.ndarray, out: np.ndarray, telea: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    t, o, te = (x.astype(np.float32) for x in (truth, out, telea))
    lo_t, lo_o = local_mean(t, hole), local_mean(o, hole)
    mse = float(((o - t)[hole] ** 2).mean())
    return {
        "psnr": psnr(o, t, hole),
        "telea": psnr(te, t, hole),
        "lf": float(((lo_o - lo_t)[hole] ** 2).mean()) / max(mse, 1e-9),
        "oracle": psnr(np.clip(o - lo_o + lo_t, 0, 255), t, hole),
        "telea_lf": psnr(np.clip(o - lo_o + local_mean(te, hole), 0, 255), t, hole),
        "bias": float((o.mean(-1) - t.mean(-1))[hole].mean()),
    }


def field_split(truth: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    ys, xs = np.nonzero(hole)
    y0, x0 = max(0, int(ys.min()) - MARGIN), max(0, int(xs.min()) - MARGIN)
    y1, x1 = min(hole.shape[0], int(ys.max()) + MARGIN), min(hole.shape[1], int(xs.max()) + MARGIN)
    t, h = truth[y0:y1, x0:x1], hole[y0:y1, x0:x1]
    given = t.copy()
    given[h] = GREY
    params = Params(seam=False, grain=0.0)
    out_t, field = complete(torch.from_numpy(given).permute(2, 0, 1).float(), torch.from_numpy(h), params)
    voted = out_t.permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    if field is None:
        return {"coherence": float("nan"), "voted": float("nan"), "copied": float("nan")}
    r = params.patch // 2
    ty, tx, sy, sx = (a.numpy() - r for a in (field.ty, field.tx, field.sy, field.sx))
    inside = (ty >= 0) & (ty < h.shape[0]) & (tx >= 0) & (tx < h.shape[1])
    ty, tx, sy, sx = ty[inside], tx[inside], sy[inside], sx[inside]
    own = h[ty, tx]
    copied = voted.copy()
    copied[ty[own], tx[own]] = given[sy[own], sx[own]]
    grid = np.full((*h.shape, 2), np.iinfo(np.int64).min, np.int64)
    grid[ty, tx] = np.stack([sy - ty, sx - tx], 1)
    right = np.roll(grid, -1, axis=1)
    has_right = own & (tx + 1 < h.shape[1])
    same = (grid[ty, tx] == right[ty, tx]).all(1) & (right[ty, tx, 0] != np.iinfo(np.int64).min)
    return {
        "coherence": float(same[has_right].mean()),
        "voted": metrics(t, voted, h)["texture"],
        "copied": metrics(t, copied, h)["texture"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("tune", "holdout", "fresh", "tune-extra", "tune-b"), default="tune")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--shapes", default="blobs,person,edge")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ctx = StepContext(rule="bench", source=Path("bench"))
    subset = photos(args.set)
    if args.limit and args.limit < len(subset):
        subset = [subset[round(i * len(subset) / args.limit)] for i in range(args.limit)]
    keys = ("psnr", "telea", "lf", "oracle", "telea_lf", "bias", "coherence", "voted", "copied")
    print("| photo | shape | " + " | ".join(keys) + " |")
    rows: dict[str, list[dict[str, float]]] = {}
    for index, (name, truth) in enumerate(subset):  # the masks of inpaint_quality.py with the same --limit
        for shape in args.shapes.split(","):
            rng = np.random.default_rng([index, list(SHAPES).index(shape), 2026])
            hole = SHAPES[shape][1](truth, rng)
            given = truth.copy()
            given[hole] = GREY
            out = inpaint(given, hole, engine="patch", ctx=ctx)
            telea = inpaint(given, hole, engine="telea", ctx=ctx)
            row = error_split(truth, out, telea, hole) | field_split(truth, hole)
            rows.setdefault(shape, []).append(row)
            print(f"| {name} | {shape} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |", flush=True)
    for shape, rs in rows.items():
        print(f"| median | {shape} | " + " | ".join(f"{statistics.median(r[k] for r in rs):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
