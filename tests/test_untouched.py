"""No generation loss: untouched images are copied byte for byte, JPEGs keep their tables
(retouchd.untouched, retouchd.jpegquality)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from retouchd.images import OutputSpec, decode, encode
from retouchd.pipeline import Task, run_task

MAX = 4_000_000
# The case: remove_text on a photo without overlay text changes no pixel.
NO_OP = [{"op": "remove_text", "when": "auto"}]


def _photo(seed: int = 0) -> np.ndarray:
    """A smooth 96×64 image with some texture, JPEG-friendly like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:96]
    base = np.stack([xx * 2, yy * 3, (xx + yy) * 1.5], axis=2)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _jpeg(quality: int, subsampling: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def _run(tmp_path: Path, name: str, data: bytes, steps: list[dict[str, object]],
         output: dict[str, object] | None = None) -> tuple[bytes, str]:
    source = tmp_path / name
    source.write_bytes(data)
    task = Task(rule="r", source=str(source), steps=steps, output=output or {}, work_dir=str(tmp_path),
                sha256=hashlib.sha256(data).hexdigest(), max_input_pixels=MAX)
    result = run_task(task)
    assert result.ok, result.error
    assert result.tmp_path and result.output_sha256
    return Path(result.tmp_path).read_bytes(), result.output_sha256


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_untouched_image_is_the_inputs_bytes(tmp_path: Path, fmt: str) -> None:
    """A step that changes no pixel gives the input's exact bytes, and the recorded hash is theirs."""
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, fmt, quality=80)
    data = buf.getvalue()
    out, digest = _run(tmp_path, f"a.{fmt.lower()}", data, NO_OP, {"quality": 95})
    assert out == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_untouched_image_to_another_format_is_encoded(tmp_path: Path) -> None:
    """The copy is only taken when the output format is the input's: a JPEG asked as PNG is converted."""
    out, _ = _run(tmp_path, "a.jpg", _jpeg(80, 2), NO_OP, {"format": "png"})
    assert out.startswith(b"\x89PNG")


def test_changed_pixels_are_encoded_not_copied(tmp_path: Path) -> None:
    """A step that paints gives a new encoding (the copy is for untouched images only)."""
    data = _jpeg(80, 2)
    out, _ = _run(tmp_path, "a.jpg", data, [{"op": "remove_objects", "regions": [[10, 10, 8, 8]]}])
    assert out != data
    assert Image.open(io.BytesIO(out)).size == (96, 64)


@pytest.mark.parametrize(("quality", "subsampling"), [(60, 2), (85, 1), (97, 0)])
def test_jpeg_same_quality_keeps_the_source_tables(quality: int, subsampling: int) -> None:
    """quality = "same" (the default) re-encodes a JPEG with its own quantisation tables and subsampling."""
    data = _jpeg(quality, subsampling)
    decoded = decode(data, max_pixels=MAX)
    buf = io.BytesIO()
    encode(decoded.frame, decoded.info, OutputSpec(), buf)
    with Image.open(io.BytesIO(data)) as src, Image.open(io.BytesIO(buf.getvalue())) as out:
        assert out.quantization == src.quantization
        assert JpegImagePlugin.get_sampling(out) == subsampling


def test_jpeg_second_generation_with_same_tables_barely_moves() -> None:
    """Re-encoding a q75 JPEG with its own tables moves pixels less than re-encoding it at 92 does."""
    decoded = decode(_jpeg(75, 2), max_pixels=MAX)
    moved = {}
    for quality in ("same", 92):
        buf = io.BytesIO()
        encode(decoded.frame, decoded.info, OutputSpec(quality=quality), buf)
        again = decode(buf.getvalue(), max_pixels=MAX).frame.rgb.astype(int)
        moved[quality] = float(np.abs(again - decoded.frame.rgb).mean())
    assert moved["same"] < moved[92]


def test_same_quality_without_jpeg_source_is_92() -> None:
    """A PNG written as JPEG with quality "same" gets the standard tables of quality 92."""
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "PNG")
    decoded = decode(buf.getvalue(), max_pixels=MAX)
    same, q92 = io.BytesIO(), io.BytesIO()
    encode(decoded.frame, decoded.info, OutputSpec(format="jpeg"), same)
    encode(decoded.frame, decoded.info, OutputSpec(format="jpeg", quality=92), q92)
    assert same.getvalue() == q92.getvalue()


def test_quality_is_validated_with_a_clear_message() -> None:
    """quality accepts 1-100 or "same" and says so otherwise."""
    for bad in (0, 101, "best", True):
        with pytest.raises(ValueError, match='1-100 or "same"'):
            OutputSpec(quality=bad)  # type: ignore[arg-type]
