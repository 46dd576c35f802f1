"""Do 2 threads ever run slower than 1? Each bundled model on the ncnn CPU backend, one net loaded with 1
thread and one with N (ncnn fixes its Winograd tiling at load), the same tile alternated between them
(1, N, 1, N, … `--repeat` rounds) in one process, so that other load on the machine hits both alike.
The outputs must be identical (the thread count changes only the work split).

    python bench/ncnn_threads.py [--threads 2] [--repeat 4] [--models fast anime photo]

Tiles: `fast` and `anime` 256 px, `photo` 84 px (its auto tile, 64 px plus the 10 px pad each side).
Prints one line per model, then one JSON object: `ratio` = N-thread seconds / 1-thread seconds (min and
median over the rounds; < 1 means N threads are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from retouchd.devices import prefer_passive_openmp

TILE = {"fast": 256, "anime": 256, "photo": 84}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=["fast", "anime", "photo"])
    args = parser.parse_args()
    prefer_passive_openmp()  # as in a worker, before ncnn loads
    from retouchd.models.registry import load_bundled

    rows = []
    for model in args.models:
        nets = {n: load_bundled(model, 4, backend="ncnn", threads=n).module for n in (1, args.threads)}
        side = TILE[model]
        tile = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
        outputs = {n: net(tile) for n, net in nets.items()}  # also the warm-up
        seconds: dict[int, list[float]] = {n: [] for n in nets}
        for _ in range(args.repeat):
            for n, net in nets.items():
                started = time.perf_counter()
                net(tile)
                seconds[n].append(time.perf_counter() - started)
        ratios = sorted(a / b for a, b in zip(seconds[args.threads], seconds[1], strict=True))
        row = {"model": model, "tile": side, "threads": args.threads,
               "one_thread_s": [round(v, 3) for v in seconds[1]],
               "n_threads_s": [round(v, 3) for v in seconds[args.threads]],
               "ratio_min": round(ratios[0], 3), "ratio_median": round(ratios[len(ratios) // 2], 3),
               "ratio_max": round(ratios[-1], 3), "identical": bool(np.array_equal(outputs[1], outputs[args.threads]))}
        rows.append(row)
        print(f"{model:6} {side:>4} px  1 thread {min(seconds[1]):7.2f} s  {args.threads} threads "
              f"{min(seconds[args.threads]):7.2f} s  ratio min {row['ratio_min']:.2f} median {row['ratio_median']:.2f} "
              f"max {row['ratio_max']:.2f}  identical {row['identical']}", flush=True)
    print(json.dumps({"benchmark": "ncnn_threads", "load": round(os.getloadavg()[0], 1), "runs": rows}))


if __name__ == "__main__":
    main()
