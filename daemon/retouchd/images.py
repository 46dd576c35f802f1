"""Images at the edges: file bytes → Frame (decode) and Frame → file bytes (encode).

Every conversion of colour model, bit depth and orientation happens here and nowhere else.

What survives a round trip:
- orientation: EXIF orientation is applied on decode; EXIF goes out with orientation 1.
- colour: RGB and grayscale keep their ICC profile; CMYK becomes sRGB (through its ICC profile when it
  has one) and is written as RGB with an sRGB profile.
- bit depth: the pipeline works in 8 bits. A 16-bit grayscale source is rounded to 8 bits (v / 257) and
  written back as 16-bit PNG/TIFF (v * 257): the container stays 16-bit but only 256 levels survive.
  Pillow reads 16-bit colour as 8 bits per channel; such images come out as 8-bit.
- alpha rides in `Frame.alpha`; JPEG output flattens it on white.
- animated images (GIF, APNG, WebP, MPO, multi-page TIFF): only the first frame is decoded and written;
  `ImageInfo.frames` records how many there were.
- EXIF thumbnails and XMP are dropped: a thumbnail would still show the untouched image.
- `format = "same"` keeps JPEG, PNG, WebP and TIFF; HEIC/HEIF becomes JPEG; GIF, BMP, PPM and AVIF become PNG.
  TIFF is written uncompressed (Pillow's LZW/deflate writers cannot carry EXIF sub-IFDs); WebP at quality
  100 is written lossless.

Pillow's warnings (corrupt EXIF, its own bomb warning) are logged at debug level, never raised. The
filter that catches them is process-wide: with several threads decoding at once, one may reach the default
warning handler (printed once, harmless outside a test run that turns warnings into errors).
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, Literal, Protocol, TypeAlias, cast

import numpy as np
import structlog
from PIL import Image, UnidentifiedImageError

from retouchd import pngwrite
from retouchd.exceptions import DecodeError, LimitError, RetouchdError, StepError, TransientError
from retouchd.frames import icc_space, to_frame, to_pil
from retouchd.jpegquality import JpegTables, jpeg_params, numeric, read_tables
from retouchd.outputspec import OutputSpec
from retouchd.sniff import failure_reason, unidentified_reason
from retouchd.typing import Frame

log = structlog.get_logger(__name__)

Array: TypeAlias = np.ndarray[Any, Any]

# Formats with a known, bounded decoder; EPS (runs Ghostscript), PSD, JPEG 2000 and the rest are refused.
INPUT_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "TIFF", "GIF", "BMP", "PPM", "AVIF", "HEIF")
# `format = "same"` writes these as themselves; any other source format is written as lossless PNG.
_SAME = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "TIFF": "TIFF", "HEIF": "JPEG"}
# (HEIC/HEIF photos from phones become JPEG: what every viewer and shop system reads.)
_CHOSEN = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
EXTENSIONS = {"JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"), "PNG": (".png",), "WEBP": (".webp",),
              "TIFF": (".tif", ".tiff")}
# Largest side each encoder accepts (libjpeg's JPEG_MAX_DIMENSION, libwebp's WEBP_MAX_DIMENSION).
_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383, "PNG": 2**31 - 1, "TIFF": 2**32 - 1}
_JPEG_MAX_EXIF = 65_533  # one APP1 segment: 65535 bytes less its length field

_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# TIFF tags that describe the source file's pixel layout; copied into another file they would lie.
_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 330,
     338, 339, 340, 341, 513, 514, 530, 34675}
)
_OUT_OF_MEMORY = "out of memory while {}; it will be retried, lower workers.cpu_slots if it recurs"
_TEXT_BOMB = ("Decompressed data too large", "Too much memory used in text chunks")


class WritableFile(Protocol):
    """What encode writes to: any binary file object, buffered or raw (a short write is continued)."""

    def write(self, data: memoryview, /) -> int | None: ...


@dataclass(frozen=True)
class ImageInfo:
    """What encode needs to know about the source. Sizes are after orientation."""

    format: str
    """Pillow's name for the source format, e.g. "JPEG", "PNG", "MPO"."""
    mode: str
    """Pillow's mode of the source, e.g. "RGB", "CMYK", "I;16", "P"."""
    width: int
    height: int
    bits: Literal[8, 16]
    grayscale: bool
    has_alpha: bool
    icc_profile: bytes | None
    """The profile that describes the Frame's colours (sRGB for a converted CMYK source)."""
    exif: bytes | None
    """EXIF to write (b"Exif\\0\\0" + TIFF data): orientation 1, no layout tags, no thumbnail."""
    frames: int
    jpeg: JpegTables | None = None
    """A JPEG source's quantisation tables and subsampling, for `quality = "same"`."""


@dataclass(frozen=True)
class Decoded:
    frame: Frame
    info: ImageInfo


def decode(data: bytes, *, max_pixels: int, max_dimension: int = 65535) -> Decoded:
    """Decode the first frame of an image file, upright, as RGB uint8 plus optional alpha.

    The size in the header is checked against the limits before any pixel is decoded.
    Raises LimitError (too large), DecodeError (not a readable image) or TransientError (out of memory).
    """
    if not data:
        raise DecodeError("empty file (0 bytes): there is no image in it; copy the file again")
    _raise_pillow_backstop(max_pixels)
    seen: dict[str, str] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decoded = _decode(data, max_pixels, max_dimension, seen)
        except RetouchdError:
            raise
        except Image.DecompressionBombError as exc:
            raise LimitError(_bomb_message(str(exc), max_pixels)) from None
        except UnidentifiedImageError:
            raise DecodeError(unidentified_reason(data)) from None
        except MemoryError:
            raise TransientError(_OUT_OF_MEMORY.format("decoding")) from None
        except Exception as exc:  # a third-party parser fed untrusted bytes: any failure means a bad file
            if isinstance(exc, ValueError) and str(exc).startswith(_TEXT_BOMB):
                raise LimitError(
                    "PNG text chunks decompress to more than Pillow's safety limit (a decompression bomb); "
                    "the file is refused, strip its metadata to process it"
                ) from None
            raise DecodeError(failure_reason(data, exc, seen.get("format"))) from None
    for warning in caught:
        log.debug("image decode warning", warning=str(warning.message))
    return decoded


def output_format(info: ImageInfo, spec: OutputSpec) -> str:
    """The Pillow format name that encode will write for this source and spec."""
    if spec.format == "same":
        return _SAME.get(info.format, "PNG")
    return _CHOSEN[spec.format]


def output_name(source_name: str, info: ImageInfo, spec: OutputSpec) -> str:
    """The result's file name: stem + suffix + an extension that matches the format written.

    The source's extension is kept when it already names that format (`a.JPEG` stays `a.JPEG`).
    A leading folder in `source_name` is kept.
    """
    path = PurePosixPath(source_name)
    extensions = EXTENSIONS[output_format(info, spec)]
    extension = path.suffix if path.suffix.lower() in extensions else extensions[0]
    return str(path.with_name(path.stem + spec.suffix + extension))


def encode(frame: Frame, info: ImageInfo, spec: OutputSpec, fp: WritableFile) -> str:
    """Write `frame` to `fp` in the spec's format, with the source's ICC profile and EXIF; return the format.

    JPEG, PNG and WebP stream straight into `fp` (no in-memory copy of the whole file), so `fp` only needs
    `write`; TIFF, whose writer seeks, is built in memory first. Errors from `fp` propagate as OSError; an
    image the format cannot hold raises LimitError, an encoder failure StepError.
    """
    fmt = output_format(info, spec)
    if max(frame.width, frame.height) > _MAX_SIDE[fmt]:
        raise LimitError(
            f"{fmt} cannot store a {frame.width}x{frame.height} image (at most {_MAX_SIDE[fmt]} px a side); "
            "set the rule's output format to png or tiff",
            step="encode",
        )
    if fmt == "PNG" and not info.grayscale and frame.rgb.nbytes >= pngwrite.WORTH_BYTES:
        _encode_png(frame, info, spec, fp)
        return fmt
    image = to_pil(frame, info.grayscale, info.bits, fmt)
    params = _save_params(image.mode, info, spec, fmt, image.size)
    buffer = io.BytesIO() if fmt == "TIFF" else None
    sink = _Sink(fp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # Pillow only calls write() on the sink (typed as a whole IO for Pillow's annotations).
            image.save(buffer if buffer is not None else cast("IO[bytes]", sink), format=fmt, **params)
        except MemoryError:
            raise TransientError(_OUT_OF_MEMORY.format("encoding")) from None
        except Exception as exc:  # encoder failures are Pillow/libjpeg/libwebp errors of many types
            if sink.error is not None:  # the file failed, not the encoder: the caller sees the OSError
                raise sink.error from None
            raise StepError(f"cannot write {fmt} ({exc}); try another output format", step="encode") from None
    for warning in caught:
        log.debug("image encode warning", warning=str(warning.message))
    if buffer is not None:
        _write_all(fp, buffer.getbuffer())
    return fmt


def _encode_png(frame: Frame, info: ImageInfo, spec: OutputSpec, fp: WritableFile) -> None:
    """Colour PNG on several cores (pngwrite), from the frame's own array: no Pillow copy of the image."""
    mode = "RGB" if frame.alpha is None else "RGBA"
    params = _save_params(mode, info, spec, "PNG", (frame.width, frame.height))
    try:
        pixels = frame.rgb if frame.alpha is None else np.dstack([frame.rgb, frame.alpha])
        pngwrite.write_png(lambda data: _write_all(fp, memoryview(data)), pixels, mode,
                           level=spec.png_compression, icc_profile=params.get("icc_profile"),
                           exif=params.get("exif"))
    except MemoryError:
        raise TransientError(_OUT_OF_MEMORY.format("encoding")) from None


class _Sink:
    """What Pillow writes to: every write goes through `_write_all`; the file's own error is kept, so
    that it is not mistaken for an encoder failure. No `fileno`: Pillow must not bypass it."""

    def __init__(self, fp: WritableFile) -> None:
        self.fp = fp
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data)
        try:
            _write_all(self.fp, view)
        except OSError as exc:
            self.error = exc
            raise
        return view.nbytes


@functools.cache
def _input_formats() -> tuple[str, ...]:
    import pillow_heif

    pillow_heif.register_heif_opener()  # HEIC/HEIF, as Pillow's "HEIF" format
    Image.init()
    return tuple(f for f in INPUT_FORMATS if f in Image.OPEN)


_PREINIT = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))
"""Formats of Pillow's first plugins (`Image.preinit`), by their signature. No other input format's plugin
accepts these first bytes, so Pillow, given every input format, would open such a file with this plugin
alone: opening it so spares a worker the import of every other plugin and of pillow_heif (~35 ms of CPU)."""


def _open(data: bytes) -> Image.Image:
    for magic, fmt in _PREINIT:
        if data.startswith(magic):
            try:
                return Image.open(io.BytesIO(data), formats=(fmt,))
            except UnidentifiedImageError:
                break  # not readable as what it starts like: as every format would see it (same error)
    return Image.open(io.BytesIO(data), formats=_input_formats())


def _raise_pillow_backstop(max_pixels: int) -> None:
    # Our limit is checked first; Pillow's own check (error at 2x its limit, inside open and some seeks)
    # must not refuse images our limit allows, so its limit is raised to ours. It only ever grows.
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _bomb_message(pillow_message: str, max_pixels: int) -> str:
    match = re.search(r"\((\d+) pixels\)", pillow_message)
    declared = f"{int(match.group(1)):,} pixels" if match else "more pixels than allowed"
    return (
        f"image declares {declared}, over limits.max_input_pixels {max_pixels:,} "
        "(a decompression bomb or an absurdly large image); raise the limit only if the image is genuine"
    )


def _check_size(width: int, height: int, max_pixels: int, max_dimension: int) -> None:
    if width <= 0 or height <= 0:
        raise DecodeError(f"the header declares an empty image ({width}x{height}); the file is corrupt")
    if max(width, height) > max_dimension:
        raise LimitError(
            f"image is {width}x{height}, a side over limits.max_dimension {max_dimension:,}; "
            "raise the limit or resize the image"
        )
    if width * height > max_pixels:
        raise LimitError(
            f"image is {width}x{height} = {width * height:,} pixels, over limits.max_input_pixels "
            f"{max_pixels:,}; raise the limit or downscale the image"
        )


def _decode(data: bytes, max_pixels: int, max_dimension: int, seen: dict[str, str]) -> Decoded:
    """Decode; `seen` learns the format as soon as Pillow names it, to word a later failure."""
    with _open(data) as im:
        source_format, source_mode = str(im.format), im.mode
        seen["format"] = source_format
        _check_size(im.width, im.height, max_pixels, max_dimension)
        frames = int(getattr(im, "n_frames", 1))
        if frames > 1:
            im.seek(0)
        im.load()
        # A later frame or tile may enlarge the canvas (GIF); check what was actually decoded.
        _check_size(im.width, im.height, max_pixels, max_dimension)
        orientation, exif = _read_exif(im)
        jpeg = read_tables(im)
        raw_icc = im.info.get("icc_profile")
        icc = bytes(raw_icc) if isinstance(raw_icc, bytes | bytearray) and raw_icc else None
        upright: Image.Image = im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im
        frame, grayscale, bits, icc = to_frame(upright, icc)
    info = ImageInfo(
        format=source_format, mode=source_mode, width=frame.width, height=frame.height, bits=bits,
        grayscale=grayscale, has_alpha=frame.alpha is not None, icc_profile=icc, exif=exif, frames=frames,
        jpeg=jpeg,
    )
    return Decoded(frame=frame, info=info)


def _read_exif(im: Image.Image) -> tuple[int, bytes | None]:
    """The EXIF orientation (1-8) and the EXIF to write out; corrupt EXIF costs the EXIF, not the image."""
    try:
        exif = im.getexif()
        orientation = exif.get(_ORIENTATION, 1)
        if not isinstance(orientation, int) or orientation not in range(1, 9):
            orientation = 1
    except Exception as exc:  # EXIF parsing raises many types on corrupt data
        log.debug("unreadable EXIF dropped", error=str(exc))
        return 1, None
    try:
        for tag in _LAYOUT_TAGS.intersection(exif):
            del exif[tag]
        if not len(exif):
            return orientation, None
        # Set even when absent: Pillow already turned a TIFF upright on load and dropped its tag.
        exif[_ORIENTATION] = 1
        return orientation, exif.tobytes()
    except Exception as exc:  # tags that cannot be written back (bad types, loops)
        log.debug("unwritable EXIF dropped", error=str(exc))
        return orientation, None


def _save_params(mode: str, info: ImageInfo, spec: OutputSpec, fmt: str, size: tuple[int, int]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    wanted_space = b"GRAY" if mode in ("L", "LA", "I;16") else b"RGB "
    if info.icc_profile is not None and icc_space(info.icc_profile) == wanted_space:
        params["icc_profile"] = info.icc_profile
    if info.exif is not None and not (fmt == "JPEG" and len(info.exif) > _JPEG_MAX_EXIF):
        params["exif"] = info.exif
    if fmt == "JPEG":
        enlarged = min(size[0] / max(info.width, 1), size[1] / max(info.height, 1))  # upscale: finer steps
        params.update(jpeg_params(spec.quality, info.jpeg, mode, enlarged))
    elif fmt == "WEBP":
        params["quality"] = numeric(spec.quality)
        params["lossless"] = spec.quality == 100
    elif fmt == "TIFF":
        params["compression"] = "raw"
    elif fmt == "PNG":
        params["compress_level"] = spec.png_compression
    return params


def _write_all(fp: WritableFile, data: memoryview) -> None:
    view = data.cast("B")
    while view:
        written = fp.write(view)
        if not written:
            raise OSError("the output file accepted no bytes; it must be a blocking, writable file")
        view = view[written:]

