"""`retouchd doctor`, the checks that run things: devices compute, and every step the rules use runs once on a
32×32 image (its model loaded from its weights, as a worker would)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retouchd.devicemem import host_memory_total
from retouchd.rules import RuleSet
from retouchd.settings import Settings
from retouchd.typing import Frame

if TYPE_CHECKING:
    from retouchd.commands.doctor import Report
    from retouchd.steps.options import StepOptions

GIB = float(1 << 30)
TEST_SIDE = 32


def _probe_cuda(device: str) -> tuple[bool, str]:
    """Allocate and multiply on `device`: (usable, what was found)."""
    import torch

    if not torch.cuda.is_available():
        return False, "torch finds no CUDA device (a CPU build of torch, or no driver)"
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return False, f"only {torch.cuda.device_count()} CUDA device(s) are visible"
    target = torch.device(device)
    a = torch.randn(256, 256, device=target)
    value = float((a @ a).sum().item())
    if not np.isfinite(value):
        return False, "a test multiplication gave a non-finite result"
    free, total = torch.cuda.mem_get_info(target)
    return True, f"{torch.cuda.get_device_name(target)}, {free / GIB:.1f} of {total / GIB:.1f} GiB free"


def check_devices(report: Report, settings: Settings) -> list[str]:
    """Report every configured device; returns the usable ones (the CPU when none is)."""
    from retouchd.devices import resolve_devices

    workers = settings.workers
    devices = resolve_devices(workers.devices)
    if workers.devices == "auto" and devices == ["cpu"] and Path("/dev/nvidiactl").exists():
        report.add("devices", "cuda", "warn", "an NVIDIA driver is present, but torch finds no CUDA device",
                   "install the CUDA build of torch==2.13.0 that matches the driver, or set "
                   'workers.devices = "cpu"')
    usable = []
    for device in devices:
        if device == "cpu":
            total = host_memory_total()
            memory = f", {total / GIB:.1f} GiB memory" if total else ""
            threads = workers.cpu_threads or max(1, (os.cpu_count() or 1) // workers.cpu_slots)
            report.add("devices", "cpu", "ok", f"{os.cpu_count()} cores{memory}; {workers.cpu_slots} slot(s), "
                       f"{threads} thread(s) each")
            usable.append(device)
            continue
        try:
            ok, detail = _probe_cuda(device)
        except Exception as exc:  # a broken driver or runtime: report it, keep checking
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok:
            report.add("devices", device, "ok", f"{detail}; {workers.slots_per_device} slot(s)")
            usable.append(device)
        else:
            report.add("devices", device, "fail", detail, 'check `nvidia-smi` and the CUDA build of torch, or set '
                       'workers.devices = "cpu"')
    return usable or ["cpu"]


def sample_frame(side: int = TEST_SIDE) -> Frame:
    """A small photo-like image: gradients plus fixed noise (a flat output then means a broken model)."""
    y, x = np.mgrid[0:side, 0:side]
    rng = np.random.default_rng(32)
    base = np.stack([x * 255 / (side - 1), y * 255 / (side - 1), (x + y) * 127 / (side - 1)], axis=-1)
    return Frame(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))


def _label(options: StepOptions) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in options.model_dump(exclude_unset=True, exclude={"op"}).items())
    return f"{options.op}({extra})" if extra else options.op


def _write_mask(path: Path, side: int) -> None:
    from PIL import Image

    mask = np.zeros((side, side), np.uint8)
    mask[side // 3: 2 * side // 3, side // 3: 2 * side // 3] = 255
    Image.fromarray(mask).save(path)


def check_models(report: Report, settings: Settings, rules: RuleSet, devices: list[str]) -> None:
    """Run each distinct step of the enabled rules once, on the first usable device."""
    from retouchd.exceptions import ConfigError
    from retouchd.steps import build_step
    from retouchd.steps.base import StepContext

    groups: dict[str, tuple[StepOptions, list[str]]] = {}
    for rule in rules.rules:
        if rule.enabled:
            for options in rule.steps:
                groups.setdefault(options.model_dump_json(), (options, []))[1].append(rule.name)
    frame, device = sample_frame(), devices[0]
    with tempfile.TemporaryDirectory(prefix="retouchd-doctor-") as tmp:
        mask = Path(tmp) / "doctor.mask.png"
        _write_mask(mask, TEST_SIDE)
        for options, names in groups.values():
            label, rule = _label(options), rules.by_name(names[0])
            used_by = f"rule{'s' if len(names) > 1 else ''} {', '.join(dict.fromkeys(names))}"
            ctx = StepContext(rule=rule.name, source=Path(tmp) / "doctor.png", sidecar_mask=mask, device=device,
                              allow_cpu_fallback=rule.cpu_fallback, cpu_threads=settings.workers.cpu_threads,
                              max_output_pixels=settings.limits.max_output_pixels, engines=dict(settings.engines))
            started = time.perf_counter()
            try:
                step = build_step(options)
                step.preflight(dict(settings.engines))
                result = step.run(frame, ctx)
            except ConfigError as exc:
                report.add("models", label, "fail", f"{exc} ({used_by})")
                continue
            except Exception as exc:  # whatever a model does wrong is reported, never raised
                report.add("models", label, "fail", f"{type(exc).__name__}: {exc} ({used_by})",
                           f"run `retouchd process IMAGE --rule {rule.name} --out /tmp/x` for the full error")
                continue
            seconds = time.perf_counter() - started
            out = result.frame
            if not isinstance(out, Frame) or out.width < 1 or out.height < 1:
                report.add("models", label, "fail", f"returned no image ({used_by})")
            elif float(out.rgb.std()) < 1.0:
                report.add("models", label, "fail", f"returned a flat image from a photo-like one ({used_by})",
                           "the model's weights are probably damaged: reinstall the package that ships them")
            else:
                report.add("models", label, "ok", f"{TEST_SIDE}×{TEST_SIDE} → {out.width}×{out.height} in "
                           f"{seconds:.2f} s on {ctx.device} ({used_by})")
