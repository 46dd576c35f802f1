"""Which devices the slots run on (retouchd.devices): a broken CUDA install means the CPU, said once."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from retouchd import devices


class _Present:
    def __init__(self, path: str) -> None:
        self.path = path

    def exists(self) -> bool:
        return True


def test_broken_cuda_install_falls_back_to_the_cpu_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An NVIDIA device node but a CUDA runtime that raises: `auto` gives the CPU and logs one warning that
    names the error."""

    def broken() -> bool:
        raise RuntimeError("CUDA driver version is insufficient for CUDA runtime version\nmore")

    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=broken, device_count=lambda: 1))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setattr(devices, "Path", _Present)
    with capture_logs() as logs:
        assert devices.resolve_devices("auto") == ["cpu"]
    assert [(e["log_level"], e["error"]) for e in logs] == [
        ("warning", "CUDA driver version is insufficient for CUDA runtime version")]
    assert "CPU" in logs[0]["event"]


def test_no_nvidia_device_is_the_cpu_without_a_word(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /dev/nvidiactl, `auto` is the CPU and nothing is logged (torch is not imported)."""
    monkeypatch.setattr(devices, "Path", lambda p: Path("/nonexistent") / p.lstrip("/"))
    with capture_logs() as logs:
        assert devices.resolve_devices("auto") == ["cpu"]
    assert logs == []
