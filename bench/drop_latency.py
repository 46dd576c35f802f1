"""Drop → done latency in the live daemon over inotify: copy a small PNG into the inbox, time until its
result is in the outbox, one file at a time.

    python bench/drop_latency.py [--files 20] [--settle 2.0]

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--settle", type=float, default=2.0, help="watch.settle_time (the default is 2 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "root"
        src = work / "src"
        src.mkdir()
        rng = np.random.default_rng(1)
        for i in range(args.files):
            Image.fromarray(rng.integers(0, 255, (171, 256, 3), dtype=np.uint8)).save(src / f"f{i}.png")
        env = {**os.environ, "RETOUCHD_WATCH__SETTLE_TIME": str(args.settle), "RETOUCHD_LOG__FORMAT": "json",
               "RETOUCHD_WATCH__MODE": "events"}
        log = open(work / "daemon.log", "wb")  # noqa: SIM115 - closed below
        rules = work / "rules.toml"
        rules.write_text('[[rule]]\nname = "upscale"\ninbox = "upscale"\n'
                         'steps = [{ op = "upscale", scale = 2, model = "lanczos" }]\n')
        proc = subprocess.Popen([sys.executable, "-m", "retouchd", "run", "--root", str(root), "--rules", str(rules)],
                                env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        inbox, outbox = root / "inbox" / "upscale", root / "outbox" / "upscale"
        deadline = time.monotonic() + 60
        while b"retouchd started" not in (work / "daemon.log").read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("daemon did not start")
            time.sleep(0.05)
        time.sleep(1.0)  # let the worker process finish starting
        latencies = []
        for i in range(args.files):
            started = time.perf_counter()
            shutil.copy(src / f"f{i}.png", inbox / f"f{i}.png")
            while not (outbox / f"f{i}.png").exists():
                if time.perf_counter() - started > 60:
                    raise SystemExit(f"f{i}.png not done after 60 s")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
    q = statistics.quantiles(latencies, n=20)
    result = {"benchmark": "drop_latency", "files": args.files, "settle_time": args.settle,
              "median_s": round(statistics.median(latencies), 4), "p95_s": round(q[18], 4),
              "max_s": round(max(latencies), 4), "target_median_s": 1.0, "exit_code": code}
    print(f"{'files':>5} {'settle s':>8} {'median s':>9} {'p95 s':>7} {'max s':>7}")
    print(f"{args.files:>5} {args.settle:>8.1f} {result['median_s']:>9.3f} {result['p95_s']:>7.3f} "
          f"{result['max_s']:>7.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
