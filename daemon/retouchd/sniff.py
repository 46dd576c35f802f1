"""Reasons for files that are not readable images, told from their first bytes.

Only used to word a DecodeError; the decision that a file is unreadable is Pillow's.
"""

from __future__ import annotations

# Signatures of things people drop into an inbox by mistake, for a useful "not an image" reason.
_NOT_IMAGES = (
    (b"%PDF", "a PDF document; export its pages as images first"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document); unpack it first"),
    (b"\x1f\x8b", "a gzip archive; unpack it first"),
    (b"Rar!", "a RAR archive; unpack it first"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; unpack it first"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
    (b"8BPS", "a Photoshop document; export it as PNG, JPEG or TIFF first"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image, which is not supported; convert it to PNG or TIFF"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream, which is not supported; convert it to PNG or TIFF"),
)
_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1")
_FTYP_BRANDS = {
    b"isom": "an MP4 video",
    b"mp42": "an MP4 video",
    b"qt  ": "a QuickTime video",
}


def _image_kind(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF"
    if data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "PPM"
    return next((name for magic, name in _IMAGE_MAGIC if data.startswith(magic)), None)


def _looks_truncated(data: bytes, kind: str) -> bool:
    """Whether an image file of `kind` lacks its end marker (JPEG EOI, PNG IEND, GIF trailer, RIFF size)."""
    tail = data[-4096:]
    if kind == "JPEG":
        return b"\xff\xd9" not in tail
    if kind == "PNG":
        return b"IEND" not in tail
    if kind == "GIF":
        return not data.rstrip(b"\x00").endswith(b";")
    if kind == "WEBP":
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    return False


def unidentified_reason(data: bytes) -> str:
    """Why Pillow could not identify `data`, in words a user can act on."""
    kind = _image_kind(data)
    if kind is not None:
        if _looks_truncated(data, kind) or len(data) < 64:
            return f"truncated {kind}: the file ends early (was it still being copied?); copy it again"
        unsupported = " (or this Pillow build cannot read AVIF)" if kind == "AVIF" else ""
        return f"corrupt {kind}: its header cannot be read{unsupported}; re-export the image"
    what = next((reason for magic, reason in _NOT_IMAGES if data.startswith(magic)), None)
    if what is None and data[4:8] == b"ftyp":
        what = _FTYP_BRANDS.get(data[8:12], "an ISO media file (video or HEIF), not a supported image")
    head = data[:512].lstrip().lower()
    if what is None and (head.startswith((b"<svg", b"<?xml")) and b"<svg" in head):
        what = "an SVG drawing; rasterise it to PNG first"
    elif what is None and head.startswith((b"<!doctype html", b"<html")):
        what = "an HTML page (often an error page saved instead of the image); download the image again"
    elif what is None and _is_text(data[:4096]):
        what = "a text file"
    if what is None:
        return (
            f"not an image: unrecognised content (starts with {data[:8].hex(' ')}); "
            "supported are JPEG, PNG, WebP, TIFF, GIF, BMP, PPM, AVIF and HEIC/HEIF"
        )
    return f"not an image (looks like {what})"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\r\n\t\f" for c in text)


def failure_reason(data: bytes, exc: BaseException, kind: str | None = None) -> str:
    """A reason for a file Pillow identified (as `kind`, when known) but could not decode."""
    kind = kind or _image_kind(data) or "image"
    message = (str(exc) or type(exc).__name__)[:200]
    if "truncated" in message.lower() or isinstance(exc, EOFError) or _looks_truncated(data, kind):
        return f"truncated {kind}: the file ends early (was it still being copied?); copy it again"
    return f"corrupt {kind}: {message}; re-export the image"
