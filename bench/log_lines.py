"""Whole log lines under load: N tiny PNGs through `retouchd run --once` with JSON logs into one pipe, as under
systemd or a log shipper, the daemon and its workers writing at once. Every line must be one JSON object.

    python bench/log_lines.py [--files 10000] [--slots 2] [--level info]

Prints a table (lines, records per event, lines that are not one JSON object), then one JSON object.
Exits 1 when a line is not one whole JSON object. Not a test: a 10 000-file run takes minutes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RULES = """[[rule]]
name = "upscale"
inbox = "upscale"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]
"""


def make_inputs(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):  # distinct bytes: a repeat would be archived as a duplicate, not processed
        pixels = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.png", compress_level=1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--level", default="info", choices=["debug", "info"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_inputs(root / "inbox" / "upscale", args.files)
        (root / "rules.toml").write_text(RULES)
        env = {**os.environ, "RETOUCHD_WATCH__SETTLE_TIME": "0", "RETOUCHD_WORKERS__CPU_SLOTS": str(args.slots),
               "RETOUCHD_WORKERS__QUEUE_BOUND": "1000", "RETOUCHD_LOG__FORMAT": "json",
               "RETOUCHD_LOG__LEVEL": args.level}
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "retouchd", "run", "--once", "--root", str(root),
                                 "--rules", str(root / "rules.toml")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - started
        done = sum(1 for _ in (root / "outbox" / "upscale").iterdir())
    lines = result.stderr.decode("utf-8", "replace").splitlines()
    events: collections.Counter[str] = collections.Counter()
    pids: set[int] = set()
    broken = []
    for line in lines:
        try:
            record = json.loads(line)
            events[str(record["event"])] += 1
        except (ValueError, KeyError, TypeError):
            broken.append(line[:200])
            continue
        if "pid" in record:
            pids.add(int(record["pid"]))
    print(f"{args.files} PNGs, {args.slots} slots, level {args.level}: exit {result.returncode}, {done} outputs, "
          f"{wall:.0f} s, load {os.getloadavg()[0]:.1f}")
    print(f"{'lines':>8} {'not one JSON object':>20}")
    print(f"{len(lines):>8} {len(broken):>20}")
    for event, count in events.most_common(8):
        print(f"{count:>8}  {event}")
    for line in broken[:5]:
        print("broken:", line)
    print(json.dumps({"benchmark": "log_lines", "files": args.files, "slots": args.slots, "level": args.level,
                      "exit": result.returncode, "outputs": done, "lines": len(lines), "broken": len(broken),
                      "wall_s": round(wall, 1), "events": dict(events.most_common(8))}))
    return 0 if not broken and result.returncode == 0 and done == args.files else 1


if __name__ == "__main__":
    sys.exit(main())
