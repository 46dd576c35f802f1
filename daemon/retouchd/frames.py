"""Pillow images ↔ Frames: colour model and bit depth, both ways (what `images` decodes and encodes through).

CMYK becomes sRGB (through its ICC profile when it has one); 16-bit, 32-bit and float grayscale become 8 bits
(16-bit: round(v / 257)) and go back out as 16-bit PNG/TIFF (v * 257); alpha rides in `Frame.alpha`, and a
JPEG is flattened on white.
"""

from __future__ import annotations

import functools
import io
from typing import Any, Literal, TypeAlias

import numpy as np
import structlog
from PIL import Image, ImageCms

from retouchd.exceptions import DecodeError
from retouchd.typing import Frame

log = structlog.get_logger(__name__)

Array: TypeAlias = np.ndarray[Any, Any]

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_GRAY = ("1", "L", "LA", "La")


def icc_space(icc: bytes | None) -> bytes:
    """The colour space an ICC profile describes (b"RGB ", b"GRAY", b"CMYK"…), from its header."""
    return icc[16:20] if icc is not None and len(icc) >= 128 else b""


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    if icc_space(icc) == b"CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc or b""))
            converted = ImageCms.profileToProfile(im, source, _srgb_profile(), outputMode="RGB")
            if converted is not None:
                return converted, _srgb_profile().tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            log.debug("CMYK profile unusable, converting without it", error=str(exc))
    return im.convert("RGB"), None


def _writable(array: Any) -> Array:
    # Pillow exports read-only arrays; steps get arrays they own.
    out = np.asarray(array)
    return out if out.flags.writeable and out.flags.c_contiguous else np.array(out, order="C")


def to_frame(im: Image.Image, icc: bytes | None) -> tuple[Frame, bool, Literal[8, 16], bytes | None]:
    """Convert a decoded Pillow image to a Frame; also say grayscale, bit depth and the profile to keep."""
    mode = im.mode
    transparency = im.info.get("transparency")
    if mode == "CMYK":
        rgb_image, icc = _cmyk_to_rgb(im, icc)
        return Frame(_writable(rgb_image)), False, 8, icc
    if mode in _SIXTEEN_BIT or mode == "F":
        gray, alpha = _deep_gray(im, transparency)
        bits: Literal[8, 16] = 16 if mode in _SIXTEEN_BIT else 8
        return _gray_frame(gray, alpha), True, bits, icc if icc_space(icc) == b"GRAY" else None
    if mode in _GRAY:
        if mode in ("LA", "La") or transparency is not None:
            la = np.asarray(im.convert("LA"))
            gray, alpha = la[..., 0], _writable(la[..., 1])
        else:
            gray, alpha = np.asarray(im.convert("L")), None
        return _gray_frame(gray, alpha), True, 8, icc if icc_space(icc) == b"GRAY" else None
    keep_icc = icc if icc_space(icc) == b"RGB " else None
    if mode in ("RGBA", "RGBa", "PA") or transparency is not None:
        rgba = np.asarray(im.convert("RGBA"))
        return Frame(_writable(rgba[..., :3]), _writable(rgba[..., 3])), False, 8, keep_icc
    try:
        rgb_image = im if mode == "RGB" else im.convert("RGB")
    except ValueError:
        raise DecodeError(f"unsupported colour mode {mode}; convert the image to RGB first") from None
    return Frame(_writable(rgb_image)), False, 8, keep_icc


def _deep_gray(im: Image.Image, transparency: Any) -> tuple[Array, Array | None]:
    """16-bit, 32-bit integer or float grayscale to 8 bits (16-bit: round(v / 257))."""
    values = np.asarray(im)
    alpha = None
    if isinstance(transparency, int):
        alpha = np.where(values == transparency, 0, 255).astype(np.uint8)
    if im.mode == "F":
        floats = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        # Float images are usually 0-1; anything larger is taken as already 0-255.
        scale = 255.0 if floats.size and float(floats.max()) <= 1.0 else 1.0
        return np.clip(floats * scale + 0.5, 0, 255).astype(np.uint8), alpha
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8), alpha


def _gray_frame(gray: Array, alpha: Array | None) -> Frame:
    return Frame(np.repeat(gray[..., None], 3, axis=2), alpha)


def _flatten_on_white(frame: Frame) -> Array:
    if frame.alpha is None:
        return frame.rgb
    a = frame.alpha.astype(np.uint32)[..., None]
    blended = (frame.rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255
    return blended.astype(np.uint8)


def to_pil(frame: Frame, grayscale: bool, bits: Literal[8, 16], fmt: str) -> Image.Image:
    """The Pillow image to save: grayscale sources go back to L/LA/16-bit where the format allows."""
    alpha = frame.alpha
    rgb = frame.rgb
    if fmt == "JPEG" and alpha is not None:
        rgb, alpha = _flatten_on_white(frame), None
    if not grayscale or fmt == "WEBP":  # libwebp stores colour only
        if alpha is None:
            return Image.fromarray(rgb)
        return Image.fromarray(np.dstack([rgb, alpha]))
    gray = Image.fromarray(rgb).convert("L")  # exact for gray pixels; luma for any colour added
    if alpha is not None:
        return Image.merge("LA", [gray, Image.fromarray(alpha)])
    if bits == 16 and fmt in ("PNG", "TIFF"):
        return Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)  # uint16 gives I;16
    return gray
