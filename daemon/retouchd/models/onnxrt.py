"""ONNX Runtime sessions for every ONNX model (the text detector and recogniser, MI-GAN): one place that maps a
retouchd device to providers and sets the threads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from retouchd.exceptions import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort


def providers_for(device: str) -> list[tuple[str, dict[str, str]]]:
    """ONNX Runtime providers (with options) for a retouchd device name: "cpu", "cuda", "cuda:1".

    A GPU device uses the CUDA provider when this onnxruntime build has it, the CPU otherwise.
    """
    import onnxruntime as ort

    cpu: list[tuple[str, dict[str, str]]] = [("CPUExecutionProvider", {})]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.partition(":")[2] or "0"}), *cpu]
    return cpu


def open_session(path: Path, device: str = "cpu", threads: int = 0, *, label: str | None = None,
                 fix: str = "check the file") -> ort.InferenceSession:
    """An inference session on `device`; `threads` = 0 lets ONNX Runtime choose. ModelError when the file
    cannot be loaded: "cannot load `label`: why; `fix`"."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # The pool already runs one job per slot: no parallel operators on top of the threads it grants.
    options.inter_op_num_threads = 1
    if threads > 0:
        options.intra_op_num_threads = threads
    providers = providers_for(device)
    try:
        return ort.InferenceSession(
            str(path), options, providers=[name for name, _ in providers], provider_options=[o for _, o in providers]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable files
        raise ModelError(f"cannot load {label or path}: {exc}; {fix}") from exc
