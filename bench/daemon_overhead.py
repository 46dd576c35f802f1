"""Daemon overhead: N small PNGs through `retouchd run --once` (lanczos ×2) against a plain Pillow loop
that does the same work (open, resize, save + fsync, rename into an outbox, move the original).

    python bench/daemon_overhead.py [--files 200] [--slots 1 2]

Prints a table, then one JSON object. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from retouchd.images import OutputSpec

SIZE = (256, 171)
PNG_LEVEL = OutputSpec().png_compression
"""The loop writes PNGs at the daemon's default level, so that both do the same work."""


def make_inputs(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    for i in range(n):
        base = np.stack([x, y, (x * y + i) % 256], axis=-1) + rng.normal(0, 8, (SIZE[1], SIZE[0], 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"img{i:04d}.png")


def plain_loop(inbox: Path, outbox: Path, archive: Path) -> float:
    outbox.mkdir(parents=True)
    archive.mkdir(parents=True)
    started = time.perf_counter()
    for src in sorted(inbox.iterdir()):
        with Image.open(src) as im:
            out = im.convert("RGB").resize((im.width * 2, im.height * 2), Image.Resampling.LANCZOS)
        tmp = outbox / f".{src.name}.tmp"
        with open(tmp, "wb") as fh:
            out.save(fh, "PNG", compress_level=PNG_LEVEL)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, outbox / src.name)
        shutil.move(src, archive / src.name)
    return time.perf_counter() - started


RULES = """[[rule]]
name = "upscale"
inbox = "upscale"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]
"""


def daemon_once(root: Path, slots: int) -> tuple[float, float]:
    env = {**os.environ, "RETOUCHD_WATCH__SETTLE_TIME": "0", "RETOUCHD_WORKERS__CPU_SLOTS": str(slots),
           "RETOUCHD_WORKERS__QUEUE_BOUND": "1000", "RETOUCHD_LOG__FORMAT": "json", "RETOUCHD_LOG__LEVEL": "info"}
    rules = root / "rules.toml"
    rules.write_text(RULES)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "retouchd", "run", "--once", "--root", str(root),
                             "--rules", str(rules)],
                            env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    stamps = []
    for line in result.stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") in ("retouchd started", "stopping: draining in-flight jobs"):
            stamps.append(entry["timestamp"])
    from datetime import datetime

    first, last = (datetime.fromisoformat(s.replace("Z", "+00:00")) for s in (stamps[0], stamps[-1]))
    return wall, (last - first).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_inputs(work / "src", args.files)
        shutil.copytree(work / "src", work / "loop" / "inbox")
        loop = plain_loop(work / "loop" / "inbox", work / "loop" / "outbox", work / "loop" / "archive")
        rows = []
        for slots in args.slots:
            root = work / f"daemon{slots}"
            shutil.copytree(work / "src", root / "inbox" / "upscale")
            wall, processing = daemon_once(root, slots)
            done = len(list((root / "outbox" / "upscale").iterdir()))
            assert done == args.files, f"only {done} outputs"
            rows.append({"slots": slots, "wall_s": round(wall, 3), "processing_s": round(processing, 3),
                         "ratio_wall": round(wall / loop, 3), "ratio_processing": round(processing / loop, 3)})
    print(f"{args.files} PNGs {SIZE[0]}×{SIZE[1]}, lanczos ×2; plain Pillow loop: {loop:.2f} s")
    print(f"{'slots':>5} {'wall s':>8} {'ratio':>6} {'processing s':>13} {'ratio':>6}")
    for r in rows:
        print(f"{r['slots']:>5} {r['wall_s']:>8.2f} {r['ratio_wall']:>6.2f} {r['processing_s']:>13.2f} "
              f"{r['ratio_processing']:>6.2f}")
    print(json.dumps({"benchmark": "daemon_overhead", "files": args.files, "loop_s": round(loop, 3),
                      "target_ratio": 1.15, "runs": rows}))


if __name__ == "__main__":
    main()
