"""One check of a CUDA machine, in under 5 minutes: prints a small table per section, then one JSON line.

Sections (each one is timed and may fail on its own; the others still run):
- `fp16`: every bundled model's fp16 tiles on CUDA against fp32 on the CPU (torch), PSNR (target > 40 dB).
- `throughput`: images/s for a 1 MP ×4 `fast` and `photo` job (decode, upscale, PNG encode + fsync, the
  real `pipeline.run_task`) with 1 and 2 slots per device; each slot is its own spawned process with its
  own CUDA context, as in the daemon. Device busy / wall comes from nvidia-smi's utilisation samples, and
  the model's share of each job from the step timings.
- `oom`: with `torch.cuda.set_per_process_memory_fraction` capping the process, a 1024 tile must shrink;
  with the cap filled up to the model itself, the step falls back to the CPU.
- `text_detector`: the PP-OCRv4 detector on CUDA when onnxruntime has the CUDA provider (onnxruntime-gpu).

Without a CUDA device it prints one line saying so and exits 0.

    python bench/gpu_check.py [--device cuda:0] [--skip-photo]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MODELS = ("fast", "anime", "photo")
DEADLINE_S = 270.0
"""Sections that would start after this many seconds are skipped, so the whole check stays under 5 min."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return round(float(10 * np.log10(255.0**2 / max(mse, 1e-12))), 2)


def photo(width: int, height: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.LANCZOS))


def check_fp16(device: str) -> list[dict[str, Any]]:
    """fp16 tiles on `device` against fp32 on the CPU ("cpu" for a dry run: fp32 against itself)."""
    import torch

    from retouchd.models.registry import load_bundled
    from retouchd.steps.upscale import PRE_PAD, _prepare
    from retouchd.tiling import tiled_upscale

    image = photo(96, 80)
    rows = []
    for name in MODELS:
        cpu = _prepare(load_bundled(name, 4), "cpu", False)
        fp16 = device != "cpu"
        gpu = _prepare(load_bundled(name, 4), device, fp16)
        with torch.inference_mode():
            reference = tiled_upscale(cpu.module, image, 4, tile=64, tile_pad=cpu.receptive_radius, pre_pad=PRE_PAD)
            started = time.perf_counter()
            half = tiled_upscale(gpu.module, image, 4, tile=64, tile_pad=gpu.receptive_radius, pre_pad=PRE_PAD,
                                 device=device, fp16=fp16, channels_last=True)
            if fp16:
                torch.cuda.synchronize(device)
        value = psnr(half.image, reference.image)
        rows.append({"model": name, "psnr_fp16_vs_cpu_fp32": value, "ok": value > 40,
                     "gpu_s": round(time.perf_counter() - started, 3)})
        del gpu
        if fp16:
            torch.cuda.empty_cache()
    return rows


def _slot(device: str, model: str, sources: list[str], work: str, queue: Any) -> None:
    """One slot: a fresh process, as a daemon slot's worker is; reports per-job wall and step seconds."""
    from retouchd.logging import configure_logging
    from retouchd.pipeline import Task, run_task

    configure_logging("json", "warning")  # the step's info lines would bury the table
    cache: dict[str, object] = {}

    class Cache:
        def get(self, key: str, load: Callable[[], object]) -> object:
            if key not in cache:
                cache[key] = load()
            return cache[key]

    steps = [{"op": "upscale", "scale": 4, "model": model}]
    jobs = []
    for index, source in enumerate(sources):
        task = Task(rule="gpu", source=source, steps=steps, output={"format": "png"}, work_dir=work,
                    device=device, allow_cpu_fallback=False, job_id=index, max_output_pixels=10**9)
        started = time.perf_counter()
        result = run_task(task, models=Cache())
        if not result.ok:
            queue.put({"error": f"{result.error_step}: {result.error}"})
            return
        jobs.append({"wall_s": time.perf_counter() - started, "end": time.time(),
                     "step_s": sum(float(r["seconds"]) for r in result.steps)})
        Path(str(result.tmp_path)).unlink(missing_ok=True)
    queue.put({"jobs": jobs})


def smi_index(ordinal: int) -> str:
    """nvidia-smi's name for torch's device `ordinal`: torch counts only CUDA_VISIBLE_DEVICES (in that order),
    nvidia-smi counts every GPU; an entry there may be an index or a GPU/MIG UUID, both of which -i takes."""
    import os

    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[ordinal] if ordinal < len(visible) else str(ordinal)


class Utilisation(threading.Thread):
    """Samples nvidia-smi's GPU utilisation (percent of time a kernel ran) every 0.2 s, with timestamps."""

    def __init__(self, device: str) -> None:
        super().__init__(daemon=True)
        self.index = smi_index(int(device.partition(":")[2] or 0))
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        exe = shutil.which("nvidia-smi")
        while exe and not self.stop.wait(0.2):
            out = subprocess.run([exe, "-i", self.index, "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, check=False)
            if out.returncode == 0 and out.stdout.strip().isdigit():
                self.samples.append((time.time(), int(out.stdout.strip())))

    def busy(self, start: float, end: float) -> float | None:
        inside = [value for when, value in self.samples if start <= when <= end]
        return round(float(np.mean(inside)) / 100, 3) if inside else None


def _collect(procs: list[Any], queue: Any, timeout: float) -> list[dict[str, Any]]:
    """One report per slot process; a process that died without reporting becomes an error report."""
    import queue as queues

    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(reports) < len(procs) and time.monotonic() < deadline:
        try:
            reports.append(queue.get(timeout=1.0))
        except queues.Empty:
            if not any(proc.is_alive() for proc in procs):
                break
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    missing = len(procs) - len(reports)
    return reports + [{"error": "a slot process died or timed out without a report"}] * missing


def images_per_second(reports: list[dict[str, Any]]) -> float:
    """Sum of each slot's rate over its own timed span (from the end of its warm-up job to the end of its
    last job): a slot that finished its warm-up early must not count jobs run while another was loading."""
    total = 0.0
    for report in reports:
        jobs = report["jobs"]
        total += (len(jobs) - 1) / max(jobs[-1]["end"] - jobs[0]["end"], 1e-9)
    return round(total, 3)


def check_throughput(device: str, models: tuple[str, ...], size: tuple[int, int] = (1224, 816),
                     deadline: float | None = None) -> list[dict[str, Any]]:
    """`deadline` (time.monotonic) bounds the whole section: a configuration that would start past it is
    skipped, and one that runs past it is cut short as an error row."""
    ctx = multiprocessing.get_context("spawn")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="retouchd-gpu-") as tmp:
        source = Path(tmp) / "input.png"
        Image.fromarray(photo(*size)).save(source)  # 1224×816 = 1.0 MP
        for model in models:
            for slots in (1, 2):
                left = 150.0 if deadline is None else min(150.0, deadline - time.monotonic())
                if left < 20:
                    rows.append({"model": model, "slots": slots, "skipped": "past the time budget"})
                    continue
                jobs = [str(source)] * (1 + (3 if model == "fast" else 2))  # the first loads the model: untimed
                queue = ctx.Queue()
                sampler = Utilisation(device)
                sampler.start()
                procs = [ctx.Process(target=_slot, args=(device, model, jobs, tmp, queue)) for _ in range(slots)]
                for proc in procs:
                    proc.start()
                reports = _collect(procs, queue, timeout=left)
                sampler.stop.set()
                errors = [r["error"] for r in reports if "error" in r]
                if errors:
                    rows.append({"model": model, "slots": slots, "error": errors[0]})
                    continue
                timed = [job for r in reports for job in r["jobs"][1:]]
                # Device busy over the span in which every slot was past its warm-up job.
                start = max(r["jobs"][0]["end"] for r in reports)
                end = max(job["end"] for job in timed)
                rows.append({
                    "model": model, "input": f"{size[0]}x{size[1]}", "slots": slots, "images": len(timed),
                    "images_per_s": images_per_second(reports),
                    "job_wall_s": round(float(np.mean([j["wall_s"] for j in timed])), 3),
                    "model_share_of_job": round(sum(j["step_s"] for j in timed) / sum(j["wall_s"] for j in timed), 3),
                    "device_busy_over_wall": sampler.busy(start, end),
                })
    return rows


def fill_allocator(device: str) -> list[Any]:
    """Take every byte the capped allocator can still give, down to 512-byte pieces (free room inside the
    segments that hold the weights included), so that any tile fails. Call only under a small cap."""
    import torch

    held = []
    for shift in range(26, 8, -1):
        while len(held) < 100_000:
            try:
                held.append(torch.empty(1 << shift, dtype=torch.uint8, device=device))
            except torch.OutOfMemoryError:
                break
    return held


def check_oom(device: str) -> dict[str, Any]:
    import torch

    from retouchd.models.registry import load_bundled
    from retouchd.steps.base import StepContext
    from retouchd.steps.upscale import UpscaleOptions, UpscaleStep, _prepare
    from retouchd.tiling import tiled_upscale
    from retouchd.typing import Frame

    index = torch.device(device).index or 0
    total = torch.cuda.get_device_properties(index).total_memory
    result: dict[str, Any] = {}
    # 1) A 1.5 GB cap: a 1024 fp16 tile of x4plus (several GB of activations) must shrink.
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5e9 / total), index)
    net = _prepare(load_bundled("photo", 4), device, True)
    image = photo(1024, 1024)
    with torch.inference_mode():
        tiled = tiled_upscale(net.module, image, 4, tile=1024, tile_pad=net.receptive_radius, pre_pad=2,
                              device=device, fp16=True, channels_last=True)
    result.update(cap_gb=1.5, tile_asked=1024, tile_used=tiled.tile, tiles=tiled.tiles,
                  tile_shrank=tiled.tile < 1024)
    del net, tiled
    torch.cuda.empty_cache()
    # 2) The cap filled up to the loaded model: even the smallest tile fails, the step runs on the CPU.
    torch.cuda.set_per_process_memory_fraction(1.0, index)
    step = UpscaleStep(UpscaleOptions(scale=4, model="fast"))
    ctx = StepContext(rule="oom", source=Path("oom.png"), device=device, allow_cpu_fallback=True)
    small = Frame(photo(64, 48))
    step.run(small, ctx)  # loads the model on the device
    torch.cuda.synchronize(index)
    torch.cuda.empty_cache()
    cap = torch.cuda.memory_reserved(index) + 4 * 2**20
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), index)
    ballast = fill_allocator(device)
    fallback = step.run(Frame(photo(200, 150)), ctx)
    result.update(fallback_cap_mb=round(cap / 2**20), cpu_fallback=bool(fallback.metrics.get("cpu_fallback")),
                  fallback_device=fallback.metrics.get("device"), fallback_backend=fallback.metrics.get("backend"))
    del ballast
    torch.cuda.set_per_process_memory_fraction(1.0, index)
    torch.cuda.empty_cache()
    result["ok"] = bool(result["tile_shrank"] and result["cpu_fallback"])
    return result


def check_text_detector(device: str) -> dict[str, Any]:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return {"skipped": "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)",
                "providers": providers}
    from retouchd.textdetect import detect
    from retouchd.textdetect.runtime import load_models

    models = {where: load_models(where) for where in ("cpu", device)}
    image = photo(768, 512)
    times, masks = {}, {}
    for where, loaded in models.items():
        detect(loaded, image)  # warm-up: CUDA kernels and cuDNN autotuning
        started = time.perf_counter()
        masks[where] = detect(loaded, image).mask
        times[where] = round(time.perf_counter() - started, 4)
    agree = float(np.mean(masks["cpu"] == masks[device]))
    # onnxruntime-gpu falls back to the CPU with only a warning when its CUDA/cuDNN libraries do not load.
    used = models[device].det.get_providers()
    return {"providers_used": used, "cpu_s": times["cpu"], "cuda_s": times[device],
            "mask_agreement": round(agree, 5), "ok": agree > 0.999 and "CUDAExecutionProvider" in used}


def run_section(name: str, started: float, fn: Callable[[], Any]) -> dict[str, Any]:
    if time.perf_counter() - started > DEADLINE_S:
        return {"section": name, "skipped": f"past the {DEADLINE_S:.0f} s budget"}
    t0 = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # a section that fails must not hide the others' results
        return {"section": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4),
                "seconds": round(time.perf_counter() - t0, 1)}
    return {"section": name, "result": value, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--skip-photo", action="store_true", help="throughput for `fast` only")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="exercise the fp16 and throughput code on the CPU (small input, fast only)")
    args = parser.parse_args()
    import torch

    if args.dry_run_cpu:
        sections = [run_section("fp16", time.perf_counter(), lambda: check_fp16("cpu")),
                    run_section("throughput", time.perf_counter(),
                                lambda: check_throughput("cpu", ("fast",), (160, 120)))]
        print(json.dumps({"cuda": False, "dry_run_cpu": True, "sections": sections}))
        return 0 if all("error" not in s for s in sections) else 1
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing to check, exiting 0")
        print(json.dumps({"cuda": False, "torch": torch.__version__, "torch_cuda": torch.version.cuda}))
        return 0
    device = args.device
    name = torch.cuda.get_device_name(torch.device(device))
    print(f"gpu_check on {device}: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    started = time.perf_counter()
    models = ("fast",) if args.skip_photo else ("fast", "photo")
    sections = [
        run_section("fp16", started, lambda: check_fp16(device)),
        run_section("throughput", started,
                    lambda: check_throughput(device, models, deadline=time.monotonic() + DEADLINE_S - 60
                                             - (time.perf_counter() - started))),
        run_section("oom", started, lambda: check_oom(device)),
        run_section("text_detector", started, lambda: check_text_detector(device)),
    ]
    for section in sections:
        print(f"== {section['section']} ({section.get('seconds', 0)} s)")
        body = section.get("result", {k: v for k, v in section.items() if k != "section"})
        for row in body if isinstance(body, list) else [body]:
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items() if k != "traceback"))
    print(json.dumps({"cuda": True, "device": device, "name": name, "torch": torch.__version__,
                      "wall_s": round(time.perf_counter() - started, 1), "sections": sections}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
