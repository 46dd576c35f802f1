"""Memory in use per device, without touching the devices.

CUDA figures come from `nvidia-smi` (the driver's own view, every process included): asking torch in the
daemon would create a CUDA context, and hundreds of MiB with it, on every GPU. `cuda:N` is matched to
nvidia-smi's GPU N, which is CUDA's order when CUDA_DEVICE_ORDER=PCI_BUS_ID. For the CPU the figure is
the resident memory of the daemon and its worker processes, out of the machine's total.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
_QUERY = ["--query-gpu=index,name,memory.used,memory.total", "--format=csv,noheader,nounits"]


def parse_nvidia_smi(text: str) -> dict[int, dict[str, Any]]:
    """`index, name, used MiB, total MiB` lines → {index: {name, used, total}} in bytes."""
    gpus: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        try:
            used, total = int(float(parts[-2]) * MIB), int(float(parts[-1]) * MIB)
        except ValueError:  # "[N/A]" on some boards
            used = total = 0
        gpus[int(parts[0])] = {"name": ",".join(parts[1:-2]), "used": used or None, "total": total or None}
    return gpus


def gpu_memory(timeout: float = 5.0) -> tuple[dict[int, dict[str, Any]], str | None]:
    """Per-GPU memory from nvidia-smi, and why it is missing when it is."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}, "nvidia-smi not found"
    try:
        out = subprocess.run([exe, *_QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"nvidia-smi failed: {exc}"
    if out.returncode != 0:
        return {}, f"nvidia-smi failed: {(out.stderr or out.stdout).strip()[:200]}"
    return parse_nvidia_smi(out.stdout), None


def rss_bytes(pid: int, proc: Path = Path("/proc")) -> int:
    """Resident memory of one process (0 if it is gone)."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def host_memory_total(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sample(slot_devices: Sequence[str], pids: Iterable[int]) -> list[dict[str, Any]]:
    """One entry per distinct device of the slots: device, name, slots, memory used/total (bytes or None)."""
    devices = list(dict.fromkeys(slot_devices))
    gpus: dict[int, dict[str, Any]] = {}
    note = None
    if any(device.startswith("cuda") for device in devices):
        gpus, note = gpu_memory()
    entries = []
    for device in devices:
        entry: dict[str, Any] = {"device": device, "slots": sum(1 for d in slot_devices if d == device)}
        if device == "cpu":
            entry.update(name=f"CPU ({os.cpu_count() or 1} cores)", memory_used=sum(rss_bytes(p) for p in pids),
                         memory_total=host_memory_total(), memory_scope="RSS of daemon + workers")
        else:
            gpu = gpus.get(int(device.partition(":")[2] or 0))
            entry.update(name=gpu["name"] if gpu else device, memory_used=gpu["used"] if gpu else None,
                         memory_total=gpu["total"] if gpu else None, memory_scope="whole device",
                         note=None if gpu else note or "not listed by nvidia-smi")
        entries.append(entry)
    return entries
