"""The parallel PNG writer: exact pixels back for every mode and strip split, Pillow's chunks and size."""

from __future__ import annotations

import io
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms

from retouchd import pngwrite
from retouchd.images import OutputSpec, decode, encode


def _photo_like(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """What an upscaler writes: a small noisy picture (gradients, an edge) enlarged ×4 with Lanczos."""
    rng = np.random.default_rng(seed)
    small_h, small_w = max(1, height // 4), max(1, width // 4)
    y, x = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    base = 120 + 60 * np.sin(x / 9.0) * np.cos(y / 6.0) + (x > small_w / 2) * 40
    planes = [Image.fromarray(np.clip(base + 15 * c + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
              .resize((width, height), Image.Resampling.LANCZOS) for c in range(channels)]
    stacked = np.stack([np.asarray(p) for p in planes], axis=-1)
    return stacked[..., 0] if channels == 1 else stacked


def _encode(pixels: np.ndarray, mode: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    pngwrite.write_png(out.write, pixels, mode, **{"level": 1, **kw})
    return out.getvalue()


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 7), (257, 300)])
@pytest.mark.parametrize("threads", [1, 3])
def test_pixels_come_back_exactly(mode: str, channels: int, height: int, width: int, threads: int,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every mode, odd sizes, one strip or many (a 1 KiB strip), one thread or several: Pillow decodes the
    very pixels written, in Pillow's own mode."""
    monkeypatch.setattr(pngwrite, "STRIP_BYTES", 1024)
    pixels = _photo_like(height, width, channels, seed=height + channels)
    pixels[: height // 2, : width // 3] = 200  # a flat patch: the None and Up filters win there
    with Image.open(io.BytesIO(_encode(pixels, mode, threads=threads))) as im:
        assert im.mode == mode
        assert np.array_equal(np.asarray(im), pixels)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_size_is_pillows_at_the_same_level(level: int) -> None:
    """Per-row filter choice and the strip joins cost at most 2 % over Pillow's file at the same zlib level
    (level 0 stores: the sizes match within the chunk headers)."""
    pixels = _photo_like(600, 800, 3)
    ours = _encode(pixels, "RGB", level=level, threads=2)
    theirs = io.BytesIO()
    Image.fromarray(pixels).save(theirs, "PNG", compress_level=level)
    assert len(ours) <= 1.02 * len(theirs.getvalue())
    with Image.open(io.BytesIO(ours)) as im:
        assert np.array_equal(np.asarray(im), pixels)


def test_icc_profile_and_exif_are_written_as_pillow_writes_them() -> None:
    """The iCCP and eXIf chunks read back as they do from Pillow's file (the profile bytes, the EXIF tags)."""
    pixels = _photo_like(40, 50, 3)
    icc = bytes(range(256)) * 3
    exif = Image.Exif()
    exif[0x010F] = "ACME camera"
    exif_bytes = b"Exif\x00\x00" + exif.tobytes()
    with Image.open(io.BytesIO(_encode(pixels, "RGB", icc_profile=icc, exif=exif_bytes))) as im:
        assert im.info["icc_profile"] == icc
        assert im.getexif()[0x010F] == "ACME camera"
        im.load()  # the IDAT stream and its checksum are valid
        assert im.info["exif"] == exif_bytes


def test_strips_stream_out_as_they_are_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is written strip by strip (many IDAT chunks), never built whole in memory first."""
    monkeypatch.setattr(pngwrite, "STRIP_BYTES", 4096)
    pixels = _photo_like(400, 300, 3)
    writes: list[bytes] = []
    pngwrite.write_png(writes.append, pixels, "RGB", level=1, threads=2)
    idat = [w for w in writes if w[4:8] == b"IDAT"]
    strips = -(-400 // (4096 // 900))
    assert len(idat) == strips + 2  # the zlib header, one per strip, the checksum
    assert max(len(w) for w in writes) < 8 * 4096


def test_adler32_combine_matches_zlib() -> None:
    """Checksums of parts combine into the checksum of the whole, for parts longer than the modulus too."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    for cut in (0, 1, 65_521, 65_522, 200_000, 300_000):
        a, b = data[:cut], data[cut:]
        assert pngwrite.adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(data)


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE = 0x010F


def _pillow_png(im: Image.Image, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "PNG", **params)
    return buffer.getvalue()


def _through_encode(data: bytes) -> Image.Image:
    """Decode `data` and write it back through `images.encode` (the daemon's path), as a loaded image."""
    decoded = decode(data, max_pixels=4_000_000)
    buffer = io.BytesIO()
    encode(decoded.frame, decoded.info, OutputSpec(), buffer)
    result = Image.open(io.BytesIO(buffer.getvalue()))
    result.load()
    return result


@pytest.mark.parametrize("alpha", [False, True])
def test_large_colour_png_goes_through_the_parallel_writer(alpha: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A colour PNG of ≥ 4 MiB is written by pngwrite (small ones by Pillow), pixel-exact, its alpha, ICC
    profile and EXIF kept as the Pillow path keeps them."""
    calls: list[str] = []
    real = pngwrite.write_png
    monkeypatch.setattr(pngwrite, "write_png", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (1100, 1300, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[MAKE] = "ACME"
    pixels = np.dstack([rgb, rng.integers(0, 256, rgb.shape[:2], dtype=np.uint8)]) if alpha else rgb
    data = _pillow_png(Image.fromarray(pixels), icc_profile=SRGB, exif=exif.tobytes())
    result = _through_encode(data)
    assert calls == ["RGBA" if alpha else "RGB"]
    assert result.mode == ("RGBA" if alpha else "RGB")
    assert np.array_equal(np.asarray(result), pixels)
    assert result.info["icc_profile"] == SRGB and result.getexif()[MAKE] == "ACME"
    _through_encode(_pillow_png(Image.fromarray(rgb[:300, :400])))
    assert len(calls) == 1
