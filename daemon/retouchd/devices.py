"""Which devices the slots run on. Its own module so that `retouchd process`, which needs only this from
the pool, imports neither the pool nor the store (SQLAlchemy and Alembic: about a second of start-up)."""

from __future__ import annotations

from pathlib import Path


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
    except Exception:  # a broken driver install means CPU, not a crash
        count = 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]
