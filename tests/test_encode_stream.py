"""Encoding streams into the output file, with a measured default PNG compression that a rule can change."""

from __future__ import annotations

import errno
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from retouchd.images import OutputSpec, decode, encode
from retouchd.typing import Frame


def textured(height: int = 600, width: int = 800) -> bytes:
    """A PNG with noise on gradients: it compresses, but not to nothing."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1) + rng.normal(0, 12, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class Recorder:
    """A write-only file that records the size of every write it is asked to take."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sizes: list[int] = []
        self.data = bytearray()
        self.fail_after = fail_after

    def write(self, data: Any) -> int:
        view = memoryview(data)
        if self.fail_after is not None and len(self.data) + view.nbytes > self.fail_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.sizes.append(view.nbytes)
        self.data += view
        return view.nbytes


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_large_outputs_stream_in_pieces_not_one_copy(fmt: str) -> None:
    """No write carries the whole file: the encoder streams into the file instead of a BytesIO copy."""
    decoded = decode(textured(), max_pixels=10**7)
    sink = Recorder()
    encode(decoded.frame, decoded.info, OutputSpec(format=fmt), sink)
    total = len(sink.data)
    assert total > 200_000 and len(sink.sizes) > 3
    assert max(sink.sizes) < total / 2
    assert Image.open(io.BytesIO(bytes(sink.data))).size == (800, 600)


def test_png_compression_level_is_applied_and_lossless() -> None:
    """Level 0 stores, the default 1 compresses, 9 compresses more; all decode to the same pixels."""
    decoded = decode(textured(300, 400), max_pixels=10**7)
    sizes, pixels = {}, []
    for level in (0, 1, 9):
        sink = Recorder()
        encode(decoded.frame, decoded.info, OutputSpec(format="png", png_compression=level), sink)
        sizes[level] = len(sink.data)
        pixels.append(np.asarray(Image.open(io.BytesIO(bytes(sink.data))).convert("RGB")))
    assert OutputSpec().png_compression == 1
    assert sizes[0] > 300 * 400 * 3 > sizes[1] > sizes[9]
    assert all(np.array_equal(p, decoded.frame.rgb) for p in pixels)


def test_png_compression_is_validated() -> None:
    """Only zlib's levels 0–9 are accepted, with the field named in the error."""
    with pytest.raises(ValidationError, match="png_compression"):
        OutputSpec(png_compression=10)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff"])
def test_a_full_disk_is_an_os_error_not_an_encoder_failure(fmt: str) -> None:
    """The file's own error comes out as OSError (retried as I/O), not as a permanent encoder StepError."""
    frame = Frame(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))
    decoded = decode(textured(300, 300), max_pixels=10**7)
    with pytest.raises(OSError, match="No space left") as caught:
        encode(frame, decoded.info, OutputSpec(format=fmt), Recorder(fail_after=10_000))
    assert caught.value.errno == errno.ENOSPC
