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


def prefer_passive_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (torch's and ncnn's libgomp read this when they load,
    so call it before either is imported). A slot's threads share the cores with other slots and the
    daemon; spinning made 2 threads 2.4× slower than 1 for torch x4plus on a busy 2-core machine (0.97× with
    PASSIVE). An explicit OMP_WAIT_POLICY in the environment wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
