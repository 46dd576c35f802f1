"""How close `upscale` runs to the machine's plain convolution speed, and how much memory it takes.

Each measured run is `retouchd process FILE --rule x --out DIR --rules RULES.toml` in a child process;
wall time and peak RSS are that child's alone (os.wait4 returns the child's own rusage, the per-child form
of getrusage(RUSAGE_CHILDREN)). The plain conv throughput is measured in fresh child processes right before
and after the model runs, with the same thread count; the better of the two is used, which makes the
reported efficiency conservative.

Efficiency = (model FLOPs / plain conv FLOP/s) / wall time. Model FLOPs are nominal: every convolution's
multiply-adds ×2 for the image, including SRMD's 15 constant input channels that our module folds into a
bias. `photo` (Real-ESRGAN x4plus) runs on a 250×140 input: it takes minutes per input megapixel on two
cores; its seconds per input megapixel are reported.

Targets: `fast` ×4 on a 1000×562 photo ≥ 0.8 and peak RSS < 1.2 GB; ×2 `lanczos` of an 18 MP photo peak
RSS < 2.5 × output bytes + 400 MB.

    /tmp/venv/bin/python bench/upscale_efficiency.py [--threads 2] [--skip-photo]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage import data

CONV_PROBE = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
best = 0.0
with torch.inference_mode():
    for side in (128, 256, 384):
        conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
        x = torch.rand(1, 128, side, side).contiguous(memory_format=torch.channels_last)
        conv(x)
        start = time.perf_counter()
        for _ in range(3):
            conv(x)
        seconds = (time.perf_counter() - start) / 3
        best = max(best, 2 * 128 * 128 * 9 * side * side / seconds)
print(best)
"""


def child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run `cmd`; return (wall seconds, peak RSS bytes of that child, stdout + stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return wall, usage.ru_maxrss * 1024, output


def conv_throughput(threads: int) -> float:
    _wall, _rss, out = child([sys.executable, "-c", CONV_PROBE, str(threads)])
    return float(out.strip().splitlines()[-1])


def model_flops_per_pixel(model: str, scale: int) -> float:
    """Nominal FLOPs per input pixel: conv hooks on a 32×32 input; convs never called run at input size."""
    import torch

    from retouchd.models.registry import load_network

    module = load_network(model, scale).module
    macs: dict[int, float] = {}

    def hook(conv: torch.nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
        kernel = conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]
        macs[id(conv)] = macs.get(id(conv), 0.0) + output.numel() * kernel / 32**2

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    handles = [conv.register_forward_hook(hook) for conv in convs]
    with torch.inference_mode():
        module(torch.rand(1, 3, 32, 32))
    for handle in handles:
        handle.remove()
    total = sum(macs.get(id(c), float(c.weight.numel())) for c in convs)
    return 2.0 * total


def step_seconds(output: str) -> float:
    match = re.search(r"\(([\d.]+) s\)", output)
    return float(match.group(1)) if match else float("nan")


def write_inputs(work: Path) -> dict[str, Path]:
    photo = Image.fromarray(data.coffee()).resize((1000, 667), Image.Resampling.LANCZOS).crop((0, 50, 1000, 612))
    photo.save(work / "photo_1000x562.jpg", quality=92)
    photo.resize((250, 140), Image.Resampling.LANCZOS).save(work / "photo_250x140.jpg", quality=92)
    big = Image.fromarray(data.astronaut()).resize((5196, 3464), Image.Resampling.LANCZOS)
    big.save(work / "photo_18mp.jpg", quality=92)
    return {"small": work / "photo_1000x562.jpg", "quarter": work / "photo_250x140.jpg",
            "big": work / "photo_18mp.jpg"}


def rules_file(work: Path) -> Path:
    lines = []
    for name, scale, model in (("fast", 4, "fast"), ("anime", 4, "anime"), ("photo", 4, "photo"),
                               ("lanczos", 2, "lanczos")):
        lines += ["[[rule]]", f'name = "{name}"', f'inbox = "{name}"',
                  f'steps = [{{ op = "upscale", scale = {scale}, model = "{model}" }}]', ""]
    path = work / "rules.toml"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-photo", action="store_true", help="skip Real-ESRGAN x4plus (minutes on a CPU)")
    args = parser.parse_args()
    retouchd = str(Path(sys.executable).with_name("retouchd"))
    env = {**os.environ, "RETOUCHD_WORKERS__CPU_THREADS": str(args.threads), "RETOUCHD_WORKERS__DEVICES": "cpu"}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="retouchd-bench-") as tmp:
        work = Path(tmp)
        inputs, rules = write_inputs(work), rules_file(work)
        runs = [("fast", "small", 4), ("anime", "small", 4), ("lanczos", "big", 2)]
        if not args.skip_photo:
            # x4plus needs minutes per megapixel on two cores: a 250×140 input keeps the run short.
            runs.append(("photo", "quarter", 4))
        for rule, which, scale in runs:
            source = inputs[which]
            width, height = Image.open(source).size
            before = conv_throughput(args.threads) if rule != "lanczos" else float("nan")
            cmd = [retouchd, "process", str(source), "--rule", rule, "--out", str(work / "out" / rule),
                   "--rules", str(rules), "--root", str(work / "root"), "--log-level", "warning"]
            wall, rss, output = child(cmd, env)
            after = conv_throughput(args.threads) if rule != "lanczos" else float("nan")
            row: dict[str, Any] = {"model": rule, "input": f"{width}x{height}", "scale": scale,
                                   "wall_s": round(wall, 2), "step_s": step_seconds(output),
                                   "peak_rss_mb": round(rss / 2**20)}
            out_bytes = width * scale * height * scale * 3
            if rule == "lanczos":
                row["rss_limit_mb"] = round((2.5 * out_bytes + 400 * 2**20) / 2**20)
            else:
                throughput = max(before, after)
                flops = model_flops_per_pixel(rule, scale) * width * height
                ideal = flops / throughput
                row.update(conv_gflops=round(throughput / 1e9, 1), conv_gflops_before_after=[
                    round(before / 1e9, 1), round(after / 1e9, 1)], model_tflop=round(flops / 1e12, 3),
                    ideal_s=round(ideal, 2), efficiency=round(ideal / wall, 3),
                    step_efficiency=round(ideal / row["step_s"], 3),
                    step_s_per_input_mp=round(row["step_s"] / (width * height / 1e6), 1))
            rows.append(row)
    print(f"{'model':8} {'input':>10} {'×':>2} {'wall s':>7} {'step s':>7} {'ideal s':>7} {'eff':>5} "
          f"{'step eff':>8} {'RSS MB':>7}")
    for r in rows:
        print(f"{r['model']:8} {r['input']:>10} {r['scale']:>2} {r['wall_s']:>7.2f} {r['step_s']:>7.2f} "
              f"{r.get('ideal_s', float('nan')):>7.2f} {r.get('efficiency', float('nan')):>5.2f} "
              f"{r.get('step_efficiency', float('nan')):>8.2f} {r['peak_rss_mb']:>7}")
    fast = next(r for r in rows if r["model"] == "fast")
    lanczos = next(r for r in rows if r["model"] == "lanczos")
    targets = {
        "fast_efficiency_ge_0.8": fast["efficiency"] >= 0.8,
        "fast_rss_lt_1200mb": fast["peak_rss_mb"] < 1200,
        "lanczos_18mp_rss_within_limit": lanczos["peak_rss_mb"] < lanczos["rss_limit_mb"],
    }
    print(json.dumps({"threads": args.threads, "runs": rows, "targets": targets}))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
