"""Decode and encode at the edges: orientation, colour models, bit depth, alpha, metadata, limits, bad files."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from pydantic import ValidationError

from retouchd.exceptions import DecodeError, LimitError, RetouchdError
from retouchd.images import ImageInfo, OutputSpec, decode, encode, output_format, output_name
from retouchd.typing import Frame

MAX = 4_000_000
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
ORIENTATION, MAKE, EXIF_IFD, DATE_ORIGINAL = 0x0112, 0x010F, 0x8769, 0x9003


def save(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def reencode(decoded: Any, **spec: Any) -> tuple[str, Image.Image]:
    buffer = io.BytesIO()
    written = encode(decoded.frame, decoded.info, OutputSpec(**spec), buffer)
    result = Image.open(io.BytesIO(buffer.getvalue()))
    result.load()
    return written, result


def halves() -> Image.Image:
    """40x20: left half red, right half blue."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    return Image.fromarray(arr)


def camera_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "Acme"
    exif.get_ifd(EXIF_IFD)[DATE_ORIGINAL] = "2024:01:02 03:04:05"
    return exif


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, extra: bytes = b"") -> bytes:
    """A tiny PNG whose header declares width x height RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def cmyk_profile_mapping_to(lab: tuple[int, int, int]) -> bytes:
    """A minimal ICC v2 CMYK printer profile whose A2B0 lut sends every colour to one Lab value."""
    identity = bytes(range(256))
    lut = (b"mft1" + bytes(4) + bytes([4, 3, 2, 0])
           + b"".join(struct.pack(">i", 65536 if r == c else 0) for r in range(3) for c in range(3))
           + identity * 4 + bytes(lab) * 16 + identity * 3)
    white = b"XYZ " + bytes(4) + struct.pack(">iii", 63190, 65536, 54061)
    text = b"test cmyk\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8) + bytes(3) + bytes(67)
    tags = [(b"A2B0", lut), (b"wtpt", white), (b"desc", desc)]
    table_size = 4 + 12 * len(tags)
    offset, entries, blobs = 128 + table_size, b"", b""
    for sig, blob in tags:
        padded = blob + bytes(-len(blob) % 4)
        entries += sig + struct.pack(">II", offset, len(blob))
        blobs += padded
        offset += len(padded)
    header = bytearray(128)
    struct.pack_into(">I", header, 0, offset)
    header[8:24] = struct.pack(">I", 0x02100000) + b"prtrCMYKLab "
    header[36:40] = b"acsp"
    header[68:80] = struct.pack(">iii", 63190, 65536, 54061)
    return bytes(header) + struct.pack(">I", len(tags)) + entries + blobs


def test_exif_rotated_jpeg_comes_out_upright_with_orientation_one() -> None:
    """Orientation 6 (rotate 90 clockwise) turns a 40x20 red|blue image into 20x40 red over blue."""
    decoded = decode(save(halves(), "JPEG", quality=95, exif=camera_exif(6).tobytes()), max_pixels=MAX)
    rgb = decoded.frame.rgb
    assert rgb.shape == (40, 20, 3)
    assert (decoded.info.width, decoded.info.height) == (20, 40)
    assert rgb[:18].mean(axis=(0, 1)) == pytest.approx([254, 0, 0], abs=3)
    assert rgb[22:].mean(axis=(0, 1)) == pytest.approx([0, 0, 254], abs=3)
    info_exif = Image.Exif()
    info_exif.load(decoded.info.exif or b"")
    assert info_exif[ORIENTATION] == 1
    _, result = reencode(decoded)
    assert result.size == (20, 40)
    assert result.getexif()[ORIENTATION] == 1


def test_cmyk_jpeg_without_profile_is_converted_to_rgb() -> None:
    """CMYK (0, 255, 255, 0) decodes to red and is written as RGB without a profile."""
    data = save(Image.new("CMYK", (16, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    decoded = decode(data, max_pixels=MAX)
    assert decoded.info.mode == "CMYK"
    assert decoded.frame.rgb.mean(axis=(0, 1)) == pytest.approx([255, 0, 0], abs=3)
    assert decoded.info.icc_profile is None
    written, result = reencode(decoded)
    assert (written, result.mode) == ("JPEG", "RGB")


def test_cmyk_jpeg_with_profile_is_converted_through_it() -> None:
    """A CMYK profile that maps everything to green wins over the naive conversion (white here)."""
    profile = cmyk_profile_mapping_to((224, 42, 211))  # Lab(88, -86, 83): sRGB green
    data = save(Image.new("CMYK", (16, 8), (0, 0, 0, 0)), "JPEG", icc_profile=profile)
    decoded = decode(data, max_pixels=MAX)
    red, green, blue = decoded.frame.rgb.mean(axis=(0, 1))
    assert green > 200 and red < 100 and blue < 100
    assert decoded.info.icc_profile is not None and decoded.info.icc_profile[16:20] == b"RGB "
    _, result = reencode(decoded, format="png")
    assert result.info["icc_profile"] == decoded.info.icc_profile


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grayscale_round_trips_as_16bit(fmt: str) -> None:
    """A 16-bit ramp decodes to round(v/257) and is written back as 16-bit, within half a step of 257."""
    ramp = (np.arange(64 * 32, dtype=np.uint32).reshape(32, 64) * 32).astype(np.uint16)
    decoded = decode(save(Image.fromarray(ramp), fmt), max_pixels=MAX)
    assert (decoded.info.bits, decoded.info.grayscale) == (16, True)
    assert np.array_equal(decoded.frame.rgb[..., 1], np.round(ramp / 257).astype(np.uint8))
    written, result = reencode(decoded)
    assert (written, result.mode) == (fmt, "I;16")
    back = np.asarray(result).astype(np.int64)
    assert np.abs(back - ramp).max() <= 128
    assert np.array_equal(back % 257, np.zeros_like(back))


@pytest.mark.parametrize(("fmt", "spec_format"), [("PNG", "same"), ("JPEG", "same"), ("PNG", "tiff")])
def test_grayscale_stays_grayscale(fmt: str, spec_format: str) -> None:
    """An L image decodes to equal RGB channels and is written back as L."""
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1))
    decoded = decode(save(Image.fromarray(gray, "L"), fmt, quality=95), max_pixels=MAX)
    rgb = decoded.frame.rgb
    assert decoded.info.grayscale and decoded.info.bits == 8
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    _, result = reencode(decoded, format=spec_format)
    assert result.mode == "L"
    assert np.abs(np.asarray(result).astype(int) - gray).max() <= 4


def test_rgba_alpha_is_kept() -> None:
    """An RGBA PNG keeps its exact alpha through decode and a PNG and WebP re-encode."""
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 1] = 200
    arr[..., 3] = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    decoded = decode(save(Image.fromarray(arr, "RGBA"), "PNG"), max_pixels=MAX)
    assert decoded.info.has_alpha and decoded.frame.alpha is not None
    assert np.array_equal(decoded.frame.alpha, arr[..., 3])
    _, png = reencode(decoded)
    assert png.mode == "RGBA" and np.array_equal(np.asarray(png), arr)
    _, webp = reencode(decoded, format="webp", quality=100)
    assert webp.mode == "RGBA" and np.array_equal(np.asarray(webp)[..., 3], arr[..., 3])


def test_la_alpha_is_kept_as_la() -> None:
    """An LA PNG decodes to gray plus alpha and is written back as LA."""
    la = Image.merge("LA", [Image.new("L", (6, 4), 90), Image.new("L", (6, 4), 30)])
    decoded = decode(save(la, "PNG"), max_pixels=MAX)
    assert decoded.info.grayscale and decoded.frame.alpha is not None
    assert int(decoded.frame.alpha[0, 0]) == 30 and decoded.frame.rgb[0, 0].tolist() == [90, 90, 90]
    _, result = reencode(decoded)
    assert result.mode == "LA" and result.getpixel((0, 0)) == (90, 30)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_alpha(fmt: str) -> None:
    """A palette image with a transparent index decodes with alpha 0 exactly there."""
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    decoded = decode(save(pal, fmt, transparency=0), max_pixels=MAX)
    alpha = decoded.frame.alpha
    assert alpha is not None and int(alpha[0, 0]) == 0 and int(alpha.sum()) == 15 * 255
    assert decoded.frame.rgb[1, 1].tolist() == [0, 255, 0]
    written, result = reencode(decoded)
    assert (written, result.mode) == ("PNG", "RGBA")


def test_jpeg_output_flattens_alpha_on_white() -> None:
    """Transparent black becomes white and half-transparent black mid-gray in a JPEG."""
    alpha = np.array([[0, 128]], np.uint8).repeat(8, axis=0).repeat(8, axis=1)
    frame = Frame(np.zeros((8, 16, 3), np.uint8), alpha)
    info = decode(save(Image.new("RGBA", (16, 8)), "PNG"), max_pixels=MAX).info
    buffer = io.BytesIO()
    assert encode(frame, info, OutputSpec(format="jpeg", quality=100), buffer) == "JPEG"
    out = np.asarray(Image.open(buffer).convert("RGB")).astype(int)
    assert out[:, :6].mean() == pytest.approx(255, abs=2)
    assert out[:, 10:].mean() == pytest.approx(127, abs=3)


def test_one_by_one_pixel() -> None:
    """A 1x1 image decodes and encodes to the same single pixel."""
    decoded = decode(save(Image.new("RGB", (1, 1), (12, 34, 56)), "PNG"), max_pixels=1)
    assert decoded.frame.rgb.tolist() == [[[12, 34, 56]]]
    _, result = reencode(decoded)
    assert result.size == (1, 1) and result.getpixel((0, 0)) == (12, 34, 56)


def test_jpeg_named_png_is_written_as_jpeg_with_jpg_name() -> None:
    """`same` follows the content: a JPEG called .png comes out as photo_clean.jpg, written as JPEG."""
    decoded = decode(save(halves(), "JPEG"), max_pixels=MAX)
    spec = OutputSpec(suffix="_clean")
    assert output_name("photo.png", decoded.info, spec) == "photo_clean.jpg"
    assert output_name("photo.JPEG", decoded.info, OutputSpec()) == "photo.JPEG"
    assert output_name("sub/a.b.png", decoded.info, OutputSpec(format="png")) == "sub/a.b.png"
    written, result = reencode(decoded, suffix="_clean")
    assert written == result.format == "JPEG"


@pytest.mark.parametrize(
    ("source", "expected", "name"),
    [("GIF", "PNG", "x.png"), ("BMP", "PNG", "x.png"), ("WEBP", "WEBP", "x.webp"), ("TIFF", "TIFF", "x.tif"),
     ("MPO", "JPEG", "x.jpg")],
)
def test_same_format_maps_unwritable_sources_to_png(source: str, expected: str, name: str) -> None:
    """`same` keeps JPEG (MPO camera files too), PNG, WebP and TIFF and writes other formats as PNG."""
    image = Image.new("RGB", (4, 4))
    data = save(image, source, save_all=True, append_images=[image]) if source == "MPO" else save(image, source)
    info = decode(data, max_pixels=MAX).info
    assert info.format == source
    assert output_format(info, OutputSpec()) == expected
    assert output_name("x.gif", info, OutputSpec()) == name


def test_bilevel_image_becomes_8bit_gray() -> None:
    """A 1-bit image decodes to black and white and is written back as 8-bit L."""
    bilevel = Image.fromarray(np.eye(6, dtype=bool))
    decoded = decode(save(bilevel, "PNG"), max_pixels=MAX)
    assert decoded.info.mode == "1" and decoded.info.grayscale
    assert np.array_equal(decoded.frame.rgb[..., 0], np.eye(6, dtype=np.uint8) * 255)
    _, result = reencode(decoded)
    assert result.mode == "L"


@pytest.mark.parametrize("source", ["JPEG", "PNG"])
@pytest.mark.parametrize("target", ["jpeg", "png", "webp", "tiff"])
def test_icc_and_exif_are_preserved(source: str, target: str) -> None:
    """The ICC profile and EXIF (IFD0 and the Exif sub-IFD) survive into every output format."""
    data = save(halves(), source, icc_profile=SRGB, exif=camera_exif().tobytes())
    _, result = reencode(decode(data, max_pixels=MAX), format=target)
    exif = result.getexif()
    assert result.info["icc_profile"] == SRGB
    assert exif[MAKE] == "Acme"
    assert exif.get_ifd(EXIF_IFD)[DATE_ORIGINAL] == "2024:01:02 03:04:05"


def test_exif_too_large_for_jpeg_is_left_out_of_jpeg_only() -> None:
    """EXIF over one JPEG APP1 segment (64 KiB) is dropped from a JPEG result and kept in a PNG one."""
    exif = camera_exif()
    exif.get_ifd(EXIF_IFD)[0x9286] = b"ASCII\0\0\0" + b"x" * 70_000  # UserComment
    decoded = decode(save(halves(), "PNG", exif=exif.tobytes()), max_pixels=MAX)
    assert decoded.info.exif is not None and len(decoded.info.exif) > 70_000
    _, jpeg = reencode(decoded, format="jpeg")
    assert "exif" not in jpeg.info
    _, png = reencode(decoded, format="png")
    assert png.getexif()[MAKE] == "Acme"


def test_corrupt_exif_costs_the_exif_not_the_image() -> None:
    """A JPEG with broken EXIF decodes, and Pillow's warning does not escape as a warning."""
    data = save(halves(), "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x0f\x01")
    decoded = decode(data, max_pixels=MAX)
    assert decoded.frame.rgb.shape == (20, 40, 3)


def truncated(fmt: str) -> bytes:
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = save(noisy, fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (truncated("JPEG"), "truncated JPEG"),
        (truncated("PNG"), "truncated PNG"),
        (truncated("WEBP"), "truncated WEBP"),
        (b"\x89PNG\r\n\x1a\n\0\0", "truncated PNG"),
        (bytes(range(256)) * 4, "not an image: unrecognised content"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "looks like a PDF"),
        (b"PK\x03\x04\x14\x00\x00\x00" + bytes(64), "looks like a ZIP"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "looks like an HTML page"),
        (b"hello, this is a note\n", "looks like a text file"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(64), "corrupt HEIF"),
    ],
    ids=["empty", "jpeg-half", "png-half", "webp-half", "png-signature", "garbage", "pdf", "zip", "html",
         "text", "heic"],
)
def test_bad_files_raise_decode_error_with_reason(data: bytes, reason: str) -> None:
    """Each unreadable file raises DecodeError whose message names what it is."""
    with pytest.raises(DecodeError, match=reason):
        decode(data, max_pixels=MAX)


@pytest.mark.parametrize(
    ("data", "max_pixels", "max_dimension", "reason"),
    [
        (png_declaring(100_000, 100_000), 100_000_000, 65_535, "declares 10,000,000,000 pixels"),
        (png_declaring(3_000, 3_000), MAX, 65_535, "over limits.max_input_pixels"),
        (png_declaring(70_000, 1), MAX, 65_535, "over limits.max_dimension"),
        (png_declaring(4, 4, png_chunk(b"zTXt", b"k\0\0" + zlib.compress(bytes(20 << 20)))), MAX, 65_535,
         "text chunks"),
    ],
    ids=["pillow-backstop", "pixels", "dimension", "ztxt"],
)
def test_bombs_raise_limit_error_quickly(data: bytes, max_pixels: int, max_dimension: int, reason: str) -> None:
    """Oversized headers and text-chunk bombs raise LimitError before any pixel buffer is allocated."""
    started = time.perf_counter()
    with pytest.raises(LimitError, match=reason):
        decode(data, max_pixels=max_pixels, max_dimension=max_dimension)
    assert time.perf_counter() - started < 1.0


def animation(fmt: str) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (10, 6), c) for c in colours]
    return save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_images_give_their_first_frame(fmt: str) -> None:
    """A 3-frame animation decodes to its first (red) frame and records 3 frames."""
    decoded = decode(animation(fmt), max_pixels=MAX)
    assert decoded.info.frames == 3
    assert decoded.frame.rgb.mean(axis=(0, 1)) == pytest.approx([255, 0, 0], abs=1)
    written, result = reencode(decoded)
    assert getattr(result, "n_frames", 1) == 1 and written in ("PNG", "WEBP")


def test_output_spec_validation() -> None:
    """Aliases are accepted; a suffix with a slash and unknown keys are rejected."""
    assert OutputSpec.model_validate({"format": "JPG"}).format == "jpeg"
    assert OutputSpec.model_validate({"format": "tif"}).format == "tiff"
    with pytest.raises(ValidationError, match="suffix"):
        OutputSpec(suffix="../x")
    with pytest.raises(ValidationError, match="colour"):
        OutputSpec.model_validate({"colour": "red"})
    with pytest.raises(ValidationError):
        OutputSpec(quality=0)


def test_webp_too_large_for_the_format_raises_limit_error() -> None:
    """libwebp stops at 16383 px a side; encode says so instead of failing obscurely."""
    info = ImageInfo(format="PNG", mode="RGB", width=16_384, height=1, bits=8, grayscale=False, has_alpha=False,
                     icc_profile=None, exif=None, frames=1)
    with pytest.raises(LimitError, match="16383"):
        encode(Frame(np.zeros((1, 16_384, 3), np.uint8)), info, OutputSpec(format="webp"), io.BytesIO())


class _WriteOnly(io.RawIOBase):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(memoryview(data)[:1000])  # short writes, as a raw file may do
        self.chunks.append(chunk)
        return len(chunk)


@pytest.mark.parametrize("target", ["jpeg", "png", "webp", "tiff"])
def test_encode_needs_only_write(target: str) -> None:
    """Encoding to a write-only, short-writing file produces a complete, readable image."""
    decoded = decode(save(halves(), "PNG"), max_pixels=MAX)
    sink = _WriteOnly()
    written = encode(decoded.frame, decoded.info, OutputSpec.model_validate({"format": target}), sink)
    result = Image.open(io.BytesIO(b"".join(sink.chunks)))
    assert result.format == written and result.size == (40, 20)


def test_decoded_arrays_are_owned_and_writable() -> None:
    """Steps receive C-contiguous arrays they may modify."""
    decoded = decode(save(Image.new("RGBA", (5, 3), (1, 2, 3, 4)), "PNG"), max_pixels=MAX)
    assert decoded.frame.alpha is not None
    for array in (decoded.frame.rgb, decoded.frame.alpha):
        assert array.flags.writeable and array.flags.c_contiguous


def test_import_does_not_pull_torch() -> None:
    """Importing the image edges (and OutputSpec with it) leaves torch unimported."""
    code = "import sys, retouchd.images; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _seeds() -> list[bytes]:
    noisy = np.random.default_rng(7).integers(0, 255, (12, 16, 4), dtype=np.uint8)
    rgba = Image.fromarray(noisy, "RGBA")
    return [
        save(rgba, "PNG"),
        save(rgba.convert("RGB"), "JPEG", exif=camera_exif(6).tobytes(), icc_profile=SRGB),
        save(rgba, "WEBP"),
        save(rgba.convert("RGB"), "TIFF"),
        save(rgba.convert("P"), "GIF"),
        save(rgba.convert("RGB"), "BMP"),
        animation("GIF"),
    ]


SEEDS = _seeds()


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 4095)),
)
def test_fuzzed_images_decode_or_raise_retouchd_errors(seed: bytes, edits: list[tuple[int, int]],
                                                       cut: int | None) -> None:
    """Mutated real images either decode to a valid Frame or raise a RetouchdError, nothing else."""
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        del data[cut % len(data):]
    try:
        decoded = decode(bytes(data), max_pixels=MAX)
    except RetouchdError as exc:
        assert str(exc)
        return
    assert decoded.frame.rgb.dtype == np.uint8 and decoded.frame.rgb.shape[2] == 3
