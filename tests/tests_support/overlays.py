"""Real photos (scikit-image's bundled ones) with synthetic text overlays, for the remove_text tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
WIDTH, HEIGHT = 384, 256
VISIBLE = 30.0
"""An overlay pixel: the overlay moved its mean channel value by at least this much (of 255)."""


def photo(name: str, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A bundled photo, centre-cropped to the aspect of `width`×`height` and resized to it, RGB uint8."""
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    image = np.ascontiguousarray(image[..., :3])
    h, w = image.shape[:2]
    aspect = width / height
    if w / h > aspect:
        x = (w - int(h * aspect)) // 2
        image = image[:, x : x + int(h * aspect)]
    else:
        y = (h - int(w / aspect)) // 2
        image = image[y : y + int(w / aspect)]
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def font(size: int, face: str = "DejaVuSans-Bold.ttf") -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A DejaVu face when Debian's fonts are installed, else Pillow's bundled font at that size."""
    path = DEJAVU / face
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size)


def compose(clean: np.ndarray, draw_on: object, blur: float = 0.0) -> np.ndarray:
    """`clean` with an RGBA layer drawn by `draw_on(ImageDraw)` composited on top."""
    layer = Image.new("RGBA", (clean.shape[1], clean.shape[0]), (0, 0, 0, 0))
    draw_on(ImageDraw.Draw(layer))  # type: ignore[operator]
    if blur:
        layer = layer.filter(ImageFilter.GaussianBlur(blur))
    out = Image.alpha_composite(Image.fromarray(clean).convert("RGBA"), layer)
    return np.asarray(out.convert("RGB"))


def caption(clean: np.ndarray, text: str = "Summer holidays", y: int = 14, size: int = 26) -> np.ndarray:
    """White text with a black stroke, centred horizontally."""
    face = font(size)

    def draw(d: ImageDraw.ImageDraw) -> None:
        left, _, right, _ = d.textbbox((0, 0), text, font=face, stroke_width=2)
        d.text(((clean.shape[1] - (right - left)) // 2, y), text, font=face, fill=(255, 255, 255, 255),
               stroke_width=2, stroke_fill=(0, 0, 0, 255))

    return compose(clean, draw)


def date_stamp(clean: np.ndarray, text: str = "'21 7 14", size: int = 18) -> np.ndarray:
    """Orange monospaced digits near the bottom-right corner, slightly blurred like a camera's."""
    face = font(size, "DejaVuSansMono-Bold.ttf")

    def draw(d: ImageDraw.ImageDraw) -> None:
        left, top, right, bottom = d.textbbox((0, 0), text, font=face)
        x, y = clean.shape[1] - (right - left) - 20, clean.shape[0] - (bottom - top) - 18
        d.text((x - left, y - top), text, font=face, fill=(255, 140, 20, 255))

    return compose(clean, draw, blur=0.6)


def watermark(clean: np.ndarray, text: str = "PhotoStock", size: int = 44, alpha: int = 128) -> np.ndarray:
    """Semi-transparent white serif lettering across the middle."""
    face = font(size, "DejaVuSerif-Bold.ttf")

    def draw(d: ImageDraw.ImageDraw) -> None:
        left, top, right, bottom = d.textbbox((0, 0), text, font=face)
        x = (clean.shape[1] - (right - left)) // 2 - left
        y = (clean.shape[0] - (bottom - top)) // 2 - top
        d.text((x, y), text, font=face, fill=(255, 255, 255, alpha))

    return compose(clean, draw)


def label(clean: np.ndarray, text: str = "IMG_0423.JPG", xy: tuple[int, int] = (10, 8), size: int = 11,
          ink: int = 25) -> np.ndarray:
    """A small grey-black file-name label."""
    face = font(size, "DejaVuSans.ttf")
    return compose(clean, lambda d: d.text(xy, text, font=face, fill=(ink, ink, ink, 255)))


def overlay_pixels(overlaid: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Pixels the overlay visibly changed."""
    return np.asarray(np.abs(overlaid.astype(np.int16) - clean.astype(np.int16)).mean(axis=2) >= VISIBLE)


def daisies(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """Grass with white and pink daisies: petals the raw text detector takes for letters."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), (30, 80, 35), np.float32)
    for _ in range(600):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height + 30)
        length, lean = rng.uniform(10, 45), rng.uniform(-0.5, 0.5)
        end = (int(x0 + np.sin(lean) * length), int(y0 - np.cos(lean) * length))
        green = tuple(float(c) for c in np.array([50, 150, 60]) * rng.uniform(0.5, 1.3))
        cv2.line(img, (int(x0), int(y0)), end, green, int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(30):
        cx, cy, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(6, 18)
        petal = (250, 250, 250) if rng.random() < 0.6 else (230, 130, 210)
        count, phase = int(rng.integers(10, 16)), rng.uniform(0, np.pi)
        for k in range(count):
            angle = phase + 2 * np.pi * k / count
            centre = (int(cx + np.cos(angle) * radius * 0.6), int(cy + np.sin(angle) * radius * 0.6))
            axes = (int(radius * 0.55), max(1, int(radius * 0.14)))
            cv2.ellipse(img, centre, axes, np.degrees(angle), 0, 360, petal, -1, cv2.LINE_AA)
        cv2.circle(img, (int(cx), int(cy)), max(2, int(radius * 0.25)), (240, 200, 40), -1, cv2.LINE_AA)
    return img.clip(0, 255).astype(np.uint8)
