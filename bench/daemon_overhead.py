"""Daemon overhead: N small PNGs through `retouchd run --once` (lanczos ×2) against a plain Pillow loop
that does the same work (open, resize, save + fsync, rename into an outbox, move the original).

    python bench/daemon_overhead.py [--files 200] [--slots 1 2] [--repeat 3]

The loop and the daemon runs alternate (loop, daemon 1 slot, daemon 2 slots, loop, …, `--repeat` rounds),
each on a fresh copy of the inputs, and each daemon run is compared with the loop run of its own round: on
a machine shared with other work the load changes several-fold within minutes. Reported per slot count: the
min and the median of the per-round wall ratios, and the same for CPU seconds (user + system of the whole
command and its workers against the loop's own), which other load disturbs far less than wall time.
The loop runs inside this process (its interpreter and Pillow already loaded); `ratio_cpu_cmd` compares
with the same loop run as a command of its own (`python bench/daemon_overhead.py --loop-only DIR`): the
whole command on both sides, interpreter start-up and imports included.
Prints a table, then one JSON object. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

SIZE = (256, 171)


def png_level() -> int:
    """The loop writes PNGs at the daemon's default level, so that both do the same work."""
    from retouchd.images import OutputSpec

    return OutputSpec().png_compression


def make_inputs(folder: Path, n: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    for i in range(n):
        base = np.stack([x, y, (x * y + i) % 256], axis=-1) + rng.normal(0, 8, (SIZE[1], SIZE[0], 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"img{i:04d}.png")


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def plain_loop(inbox: Path, outbox: Path, archive: Path, level: int) -> tuple[float, float]:
    """Wall and CPU seconds of the loop."""
    outbox.mkdir(parents=True)
    archive.mkdir(parents=True)
    cpu = cpu_seconds(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for src in sorted(inbox.iterdir()):
        with Image.open(src) as im:
            out = im.convert("RGB").resize((im.width * 2, im.height * 2), Image.Resampling.LANCZOS)
        tmp = outbox / f".{src.name}.tmp"
        with open(tmp, "wb") as fh:
            out.save(fh, "PNG", compress_level=level)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, outbox / src.name)
        shutil.move(src, archive / src.name)
    return time.perf_counter() - started, cpu_seconds(resource.RUSAGE_SELF) - cpu


RULES = """[[rule]]
name = "upscale"
inbox = "upscale"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]
"""


def daemon_once(root: Path, slots: int) -> tuple[float, float, float]:
    """Wall seconds of the whole command, seconds from "started" to "draining", and CPU seconds of the
    command and its workers (reaped children count into RUSAGE_CHILDREN)."""
    env = {**os.environ, "RETOUCHD_WATCH__SETTLE_TIME": "0", "RETOUCHD_WORKERS__CPU_SLOTS": str(slots),
           "RETOUCHD_WORKERS__QUEUE_BOUND": "1000", "RETOUCHD_LOG__FORMAT": "json", "RETOUCHD_LOG__LEVEL": "info"}
    rules = root / "rules.toml"
    rules.write_text(RULES)
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "retouchd", "run", "--once", "--root", str(root),
                             "--rules", str(rules)],
                            env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
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
    return wall, (last - first).total_seconds(), cpu


def loop_command(base: Path, level: int) -> tuple[float, float]:
    """Wall and CPU seconds of the plain loop as a command of its own (a fresh interpreter; Pillow only)."""
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--loop-only", str(base), str(level)], check=True)
    return time.perf_counter() - started, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--loop-only":
        base = Path(sys.argv[2])
        plain_loop(base / "inbox", base / "outbox", base / "archive", int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of (loop, daemon per slot count)")
    args = parser.parse_args()
    level = png_level()
    loops: list[tuple[float, float]] = []
    runs: dict[int, list[dict[str, float]]] = {slots: [] for slots in args.slots}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_inputs(work / "src", args.files)
        for round_ in range(args.repeat):
            base = work / f"round{round_}"
            shutil.copytree(work / "src", base / "loop" / "inbox")
            loop = base / "loop"
            loop_wall, loop_cpu = plain_loop(loop / "inbox", loop / "outbox", loop / "archive", level)
            loops.append((loop_wall, loop_cpu))
            shutil.copytree(work / "src", base / "loopcmd" / "inbox")
            _, cmd_cpu = loop_command(base / "loopcmd", level)
            for slots in args.slots:
                root = base / f"daemon{slots}"
                shutil.copytree(work / "src", root / "inbox" / "upscale")
                wall, processing, cpu = daemon_once(root, slots)
                done = len(list((root / "outbox" / "upscale").iterdir()))
                assert done == args.files, f"only {done} outputs"
                runs[slots].append({"loop_s": loop_wall, "wall_s": wall, "processing_s": processing,
                                    "ratio_wall": wall / loop_wall, "ratio_processing": processing / loop_wall,
                                    "loop_cpu_s": loop_cpu, "cpu_s": cpu, "ratio_cpu": cpu / loop_cpu,
                                    "loop_cmd_cpu_s": cmd_cpu, "ratio_cpu_cmd": cpu / cmd_cpu})
                last = {k: round(v, 3) for k, v in runs[slots][-1].items()}
                print(json.dumps({"round": round_, "slots": slots, **last}), flush=True)
            shutil.rmtree(base)
    rows = []
    for slots, items in runs.items():
        row: dict[str, float | int] = {"slots": slots, "rounds": len(items)}
        for key in ("ratio_wall", "ratio_processing", "ratio_cpu", "ratio_cpu_cmd"):
            values = sorted(item[key] for item in items)
            row[f"{key}_min"] = round(values[0], 3)
            row[f"{key}_median"] = round(values[len(values) // 2], 3)
        rows.append(row)
    loop_walls = sorted(wall for wall, _ in loops)
    print(f"{args.files} PNGs {SIZE[0]}×{SIZE[1]}, lanczos ×2, {args.repeat} rounds; plain Pillow loop: "
          f"{loop_walls[0]:.2f}–{loop_walls[-1]:.2f} s wall; load {os.getloadavg()[0]:.1f}")
    print(f"{'slots':>5} {'wall ratio min / median':>24} {'processing':>18} {'CPU ratio min / median':>24} "
          f"{'vs loop command':>18}")
    for r in rows:
        print(f"{r['slots']:>5} {r['ratio_wall_min']:>11.2f} / {r['ratio_wall_median']:<10.2f} "
              f"{r['ratio_processing_min']:>7.2f} / {r['ratio_processing_median']:<8.2f} "
              f"{r['ratio_cpu_min']:>11.2f} / {r['ratio_cpu_median']:<10.2f} "
              f"{r['ratio_cpu_cmd_min']:>7.2f} / {r['ratio_cpu_cmd_median']:<8.2f}")
    print(json.dumps({"benchmark": "daemon_overhead", "files": args.files, "target_ratio": 1.15,
                      "loop_s": [round(wall, 3) for wall, _ in loops], "runs": rows}))


if __name__ == "__main__":
    main()
