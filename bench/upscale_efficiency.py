"""How fast `upscale` runs against ncnn on the same weights, against plain convolution, and its memory.

Each end-to-end run is `retouchd process FILE --rule x --out DIR --rules RULES.toml` in a child process;
wall time and peak RSS are that child's alone (os.wait4 returns the child's own rusage). In the same run,
inference-only children time the same tiles of the same image, warm (model loaded, one small tile run
first), with the same thread count:
- `retouchd`: our model object through tiling.tiled_upscale (on the CPU the ncnn backend, models/ncnnrun.py):
  the whole step's tile loop, crops, conversions and writes into the output included;
- `ncnn`: the `ncnn` package on the wheel's `.param`/`.bin` with its default options (Winograd on), the
  same tile grid and pads, timing only the extractions;
- `torch`: our PyTorch module through tiled_upscale (what the CPU ran before the ncnn backend).
`retouchd` and `ncnn` run in ONE child, alternated (ABAB… `--repeat` pairs): on a machine shared with other
work the load changes by several times within minutes, and two children run one after the other measured
that change, not the runtimes (a 1.63× "gap" for `photo` became 0.9–1.0× alternated). `ratio` = retouchd /
ncnn, the min and the median of the per-pair ratios (≤ 1.0 means at least as fast as ncnn).

Efficiency = (model FLOPs / plain conv FLOP/s) / step time, with FLOPs counted as direct convolution
(Winograd does fewer multiplies, so the ncnn path can exceed 1). `photo` (x4plus) runs on a 250×140 input.

    python bench/upscale_efficiency.py [--threads 2] [--skip-photo] [--skip-torch] [--repeat 3] [--quarter]
                                       [--models …]
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

from retouchd.tiling import CPU_ACTIVATION_BUDGET

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


INFER = """
import json, sys, time
import numpy as np
from PIL import Image
from retouchd.models.registry import BUNDLED, bundled_files, load_bundled
from retouchd.tiling import _context, auto_tile, grid, tiled_upscale

which, model, path, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
repeat = int(sys.argv[5]) if len(sys.argv) > 5 else 1
image = np.asarray(Image.open(path).convert("RGB"))
height, width = image.shape[:2]
net = load_bundled(model, 4, backend="torch" if which == "torch" else "ncnn", threads=threads)
runs = {}
pad = net.receptive_radius
tile = auto_tile(net.bytes_per_pixel, pad=pad, resident=net.resident_bytes)
warm = image[:64, :64].copy()
if which == "pair":
    import ncnn
    param, weights = bundled_files(BUNDLED[model], 4)
    raw = ncnn.Net()
    raw.opt.use_vulkan_compute = False
    raw.opt.num_threads = threads
    raw.load_param(str(param))
    raw.load_model(str(weights))
    blob = "input" if net.family == "srmd" else "data"
    code = np.asarray(getattr(net.module, "code", ()), np.float32)

    def run(img):
        h, w = img.shape[:2]
        spent = 0.0
        for x0, y0, x1, y1 in grid(w, h, tile):
            px0, px1 = _context(x0, x1, w, pad, 2)
            py0, py1 = _context(y0, y1, h, pad, 2)
            rows = np.clip(np.arange(py0, py1), 0, h - 1)
            cols = np.clip(np.arange(px0, px1), 0, w - 1)
            x = img[rows[:, None], cols[None, :]].transpose(2, 0, 1).astype(np.float32) / 255.0
            if code.size:
                x = np.concatenate([x, np.broadcast_to(code[:, None, None], (code.size, *x.shape[1:]))])
            x = np.ascontiguousarray(x)
            start = time.perf_counter()
            ex = raw.create_extractor()
            ex.input(blob, ncnn.Mat(x))
            status, out = ex.extract("output")
            spent += time.perf_counter() - start
            assert status == 0, status
        return spent
    runs["ncnn"] = run
if which != "ncnn":
    import contextlib
    if which == "torch":
        import torch
        torch.set_num_threads(threads)
        module = net.module.to(memory_format=torch.channels_last).eval()
        mode = torch.inference_mode
    else:
        module, mode = net.module, contextlib.nullcontext

    def ours(img):
        start = time.perf_counter()
        with mode():
            tiled_upscale(module, img, 4, tile=tile, tile_pad=pad, pre_pad=2, channels_last=True)
        return time.perf_counter() - start
    runs["torch" if which == "torch" else "retouchd"] = ours
for run in runs.values():
    run(warm)
seconds = {name: [] for name in runs}
for _ in range(repeat):
    for name, run in runs.items():
        seconds[name].append(run(image))
print(json.dumps({"seconds": seconds, "tile": tile}))
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


def infer_seconds(which: str, model: str, source: Path, threads: int, repeat: int = 1) -> dict[str, list[float]]:
    """Seconds per run by column: "pair" runs `retouchd` and `ncnn` alternated in one child."""
    _wall, _rss, out = child([sys.executable, "-c", INFER, which, model, str(source), str(threads), str(repeat)])
    seconds: dict[str, list[float]] = json.loads(out.strip().splitlines()[-1])["seconds"]
    return seconds


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


def flops_in_child(model: str, scale: int) -> float:
    """model_flops_per_pixel in a child: torch must not load here, because Linux carries a parent's peak
    RSS over into the ru_maxrss of the children it starts later."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import upscale_efficiency as u; " \
           f"print(u.model_flops_per_pixel({model!r}, {scale}))"
    _wall, _rss, out = child([sys.executable, "-c", code])
    return float(out.strip().splitlines()[-1])


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
    parser.add_argument("--skip-torch", action="store_true", help="skip the torch column (the slowest)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="(retouchd, ncnn) pairs alternated in one child; median and min ratio reported")
    parser.add_argument("--quarter", action="store_true",
                        help="run fast and anime on the 250×140 input too (a quick check on a loaded machine)")
    parser.add_argument("--models", nargs="+", default=["fast", "anime", "lanczos", "photo"],
                        help="which runs (default: all)")
    args = parser.parse_args()
    retouchd = str(Path(sys.executable).with_name("retouchd"))
    env = {**os.environ, "RETOUCHD_WORKERS__CPU_THREADS": str(args.threads), "RETOUCHD_WORKERS__DEVICES": "cpu"}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="retouchd-bench-") as tmp:
        work = Path(tmp)
        inputs, rules = write_inputs(work), rules_file(work)
        sr_input = "quarter" if args.quarter else "small"
        runs = [("fast", sr_input, 4), ("anime", sr_input, 4), ("lanczos", "big", 2)]
        if not args.skip_photo:
            # x4plus needs minutes per megapixel on two cores: a 250×140 input keeps the run short.
            runs.append(("photo", "quarter", 4))
        throughput = conv_throughput(args.threads)
        for rule, which, scale in (run for run in runs if run[0] in args.models):
            source = inputs[which]
            width, height = Image.open(source).size
            cmd = [retouchd, "process", str(source), "--rule", rule, "--out", str(work / "out" / rule),
                   "--rules", str(rules), "--root", str(work / "root"), "--log-level", "warning"]
            wall, rss, output = child(cmd, env)
            row: dict[str, Any] = {"model": rule, "input": f"{width}x{height}", "scale": scale,
                                   "wall_s": round(wall, 2), "step_s": step_seconds(output),
                                   "peak_rss_mb": round(rss / 2**20)}
            out_bytes = width * scale * height * scale * 3
            row["output_mb"] = round(out_bytes / 2**20)
            if rule == "lanczos":
                row["rss_limit_mb"] = round((2.5 * out_bytes + 400 * 2**20) / 2**20)
            else:
                mp = width * height / 1e6
                # Alternated in one child: other load on the machine hits both alike.
                pair = infer_seconds("pair", rule, source, args.threads, args.repeat)
                ours, reference = min(pair["retouchd"]), min(pair["ncnn"])
                ratios = sorted(a / b for a, b in zip(pair["retouchd"], pair["ncnn"], strict=True))
                torch_s = float("nan") if args.skip_torch else min(
                    infer_seconds("torch", rule, source, args.threads)["torch"])
                flops = flops_in_child(rule, scale) * width * height
                ideal = flops / throughput
                row.update(retouchd_s=round(ours, 2), ncnn_s=round(reference, 2), torch_s=round(torch_s, 2),
                           ratio=round(ratios[len(ratios) // 2], 3), ratio_min=round(ratios[0], 3),
                           ratio_max=round(ratios[-1], 3), pairs=len(ratios),
                           ratio_of_bests=round(ours / reference, 3), torch_vs_ours=round(torch_s / ours, 2),
                           s_per_input_mp={"retouchd": round(ours / mp, 1), "ncnn": round(reference / mp, 1),
                                           "torch": round(torch_s / mp, 1)},
                           conv_gflops=round(throughput / 1e9, 1), model_tflop=round(flops / 1e12, 3),
                           ideal_s=round(ideal, 2), step_efficiency=round(ideal / row["step_s"], 3),
                           rss_limit_mb=round((out_bytes + CPU_ACTIVATION_BUDGET) / 2**20) + 200)
            rows.append(row)
            print(json.dumps(row), flush=True)  # partial results survive an interrupted run
    print(f"{'model':8} {'input':>10} {'×':>2} {'wall s':>7} {'step s':>7} {'ours s':>7} {'ncnn s':>7} "
          f"{'ratio':>5} {'min':>5} {'torch s':>7} {'eff':>5} {'RSS MB':>7} {'limit':>6}")
    nan = float("nan")
    for r in rows:
        print(f"{r['model']:8} {r['input']:>10} {r['scale']:>2} {r['wall_s']:>7.2f} {r['step_s']:>7.2f} "
              f"{r.get('retouchd_s', nan):>7.2f} {r.get('ncnn_s', nan):>7.2f} {r.get('ratio', nan):>5.2f} "
              f"{r.get('ratio_min', nan):>5.2f} "
              f"{r.get('torch_s', nan):>7.2f} {r.get('step_efficiency', nan):>5.2f} {r['peak_rss_mb']:>7} "
              f"{r['rss_limit_mb']:>6}")
    targets = {f"{r['model']}_ratio_le_1": r["ratio"] <= 1.0 for r in rows if "ratio" in r}
    targets.update({f"{r['model']}_rss_within_limit": r["peak_rss_mb"] <= r["rss_limit_mb"] for r in rows})
    print(json.dumps({"threads": args.threads, "conv_gflops": round(throughput / 1e9, 1), "runs": rows,
                      "targets": targets}))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
