"""The PP-OCRv4 detection and recognition networks shipped in the `rapidocr_onnxruntime` wheel.

Only the `.onnx` files are used; the wheel's own pipeline is never imported. The files are found through
the package's import search locations, so nothing is downloaded and nothing of the package runs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from retouchd.exceptions import DeviceOutOfMemoryError, ModelError, StepError
from retouchd.models import onnxrt

if TYPE_CHECKING:
    import onnxruntime as ort

PACKAGE = "rapidocr_onnxruntime"
DET_FILE = "ch_PP-OCRv4_det_infer.onnx"
REC_FILE = "ch_PP-OCRv4_rec_infer.onnx"
_INSTALL_HINT = f"install it with `pip install {PACKAGE}==1.4.4` (it ships the text detector)"


def model_dir() -> Path:
    """The wheel's `models/` folder; ModelError when the package or its files are missing."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "models"
        if (folder / DET_FILE).is_file() and (folder / REC_FILE).is_file():
            return folder
    if not locations:
        raise ModelError(f"the text detector package {PACKAGE!r} is not installed; {_INSTALL_HINT}")
    raise ModelError(f"{DET_FILE} / {REC_FILE} not found under {locations}; reinstall: {_INSTALL_HINT}")


def open_session(path: Path, device: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """An inference session on `device`; `threads` = 0 lets ONNX Runtime choose."""
    return onnxrt.open_session(path, device, threads, label=path.name, fix=f"reinstall: {_INSTALL_HINT}")


@dataclass(frozen=True, slots=True)
class OcrModels:
    """The two sessions and the recogniser's alphabet (CTC index 0 is the blank)."""

    det: ort.InferenceSession
    rec: ort.InferenceSession
    charset: tuple[str, ...]

    def run_det(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """N×3×H×W normalised BGR → N×H×W text probability."""
        return _run(self.det, batch)[:, 0]

    def run_rec(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """N×3×48×W normalised BGR → N×T×C character probabilities."""
        return _run(self.rec, batch)


def _run(session: ort.InferenceSession, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    try:
        out = session.run(None, {session.get_inputs()[0].name: batch})[0]
    except Exception as exc:  # onnxruntime's errors are untyped; out-of-memory is the one worth retrying
        if "memory" in str(exc).lower() or "alloc" in str(exc).lower():
            raise DeviceOutOfMemoryError(
                f"the text detector ran out of memory on a {batch.shape[3]}×{batch.shape[2]} input; "
                "free device memory or lower max_input_pixels"
            ) from exc
        raise StepError(f"the text detector failed: {exc}") from exc
    return np.asarray(out, dtype=np.float32)


def load_models(device: str = "cpu", threads: int = 0) -> OcrModels:
    """Open both networks from the installed wheel."""
    folder = model_dir()
    det = open_session(folder / DET_FILE, device, threads)
    rec = open_session(folder / REC_FILE, device, threads)
    alphabet = rec.get_modelmeta().custom_metadata_map.get("character")
    if not alphabet:
        raise ModelError(f"{REC_FILE} carries no character list; reinstall: {_INSTALL_HINT}")
    # PaddleOCR's CTC layout: blank first, then the alphabet, then the space.
    return OcrModels(det, rec, ("", *alphabet.splitlines(), " "))
