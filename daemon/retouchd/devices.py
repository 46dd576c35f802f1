"""Which devices the slots run on. Its own module so that `retouchd process`, which needs only this from
the pool, imports neither the pool nor the store (SQLAlchemy and Alembic: about a second of start-up)."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("retouchd.devices")


def resolve_devices(setting: str) -> list[str]:
    """`auto` = every CUDA device (torch is imported only if an NVIDIA device node exists), else the CPU."""
    if setting == "cpu":
        return ["cpu"]
    if setting != "auto":
        return setting.split(",")
    if not Path("/dev/nvidiactl").exists():
        return ["cpu"]
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as exc:  # a broken driver install means CPU, not a crash
        log.warning("an NVIDIA device is present but CUDA cannot be used; running on the CPU",
                    error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        count = 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


OPENCV_ACTIVE_WAIT = ("OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER", "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN")
"""How long (spin iterations) OpenCV's pool threads and the calling thread busy-wait for work before they sleep."""


def prefer_passive_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (torch's and ncnn's libgomp read this when they load,
    so call it before either is imported). A slot's threads share the cores with other slots and the
    daemon; spinning made 2 threads 2.4× slower than 1 for torch x4plus on a busy 2-core machine (0.97× with
    PASSIVE). An explicit OMP_WAIT_POLICY in the environment wins.

    OpenCV's own thread pool (its Lanczos resize) spins the same way, with sched_yield, for a while after
    each call: told not to (read when cv2 loads), a worker's 256×171 lanczos ×2 job takes ~1 ms less CPU
    (26.3 against 27.4 ms, load ~6) and a 3 → 12 MP resize the same wall time within 2 %. Settings in the
    environment win here too."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for name in OPENCV_ACTIVE_WAIT:
        os.environ.setdefault(name, "0")
