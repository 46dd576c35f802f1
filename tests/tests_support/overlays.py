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


# --- The overlay styles people actually have (issue #14): each maker returns (overlaid, footprint), the
# footprint being every pixel the overlay layer touches (alpha > 0), shadows and boxes included.

NOTO = Path("/usr/share/fonts/truetype/noto")
NOTO_CJK = Path("/usr/share/fonts/opentype/noto")
LIBERATION = Path("/usr/share/fonts/truetype/liberation")
FONT_FILES = (NOTO / "NotoSans-Bold.ttf", NOTO / "NotoSans-Regular.ttf", NOTO / "NotoSerif-Bold.ttf",
              NOTO_CJK / "NotoSansCJK-Bold.ttc", LIBERATION / "LiberationSans-Bold.ttf")
"""Debian's fonts-noto-core, fonts-noto-cjk and fonts-liberation, which .ci/run installs."""

STYLES = ("band", "price", "tiled", "outline", "cjk", "shadow", "foliage", "cyrillic", "date")
Layer = tuple[np.ndarray, np.ndarray]


def missing_fonts() -> list[str]:
    return [str(path) for path in FONT_FILES if not path.is_file()]


def face(path: Path, size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=index)


def _layered(clean: np.ndarray, layer: Image.Image) -> Layer:
    out = Image.alpha_composite(Image.fromarray(clean).convert("RGBA"), layer)
    return np.asarray(out.convert("RGB")), np.asarray(layer)[..., 3] > 0


def _blank(clean: np.ndarray) -> Image.Image:
    return Image.new("RGBA", (clean.shape[1], clean.shape[0]), (0, 0, 0, 0))


def white_with_shadow(background: np.ndarray, text: str, at: tuple[int, int], size: int, offset: int, blur: float,
                      alpha: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """White Liberation Sans Bold `text` at `at` on `background`, over a black shadow of `alpha` moved `offset` px
    down-right and blurred by `blur`: (image, letter pixels, the shadow's alpha, the overlay's footprint)."""
    glyphs = face(LIBERATION / "LiberationSans-Bold.ttf", size)
    shadow, letters = _blank(background), _blank(background)
    ImageDraw.Draw(shadow).text((at[0] + offset, at[1] + offset), text, font=glyphs, fill=(0, 0, 0, alpha))
    shadow = shadow.filter(ImageFilter.GaussianBlur(blur))
    ImageDraw.Draw(letters).text(at, text, font=glyphs, fill=(255, 255, 255, 255))
    image, footprint = _layered(background, Image.alpha_composite(shadow, letters))
    return image, np.asarray(letters)[..., 3] > 0, np.asarray(shadow)[..., 3], footprint


def _pick(rng: np.random.Generator, items: tuple[str, ...]) -> str:
    return items[int(rng.integers(0, len(items)))]


def band(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """A white caption on a full-width dark translucent band (alpha 0.45–0.65) near the bottom."""
    h, w = clean.shape[:2]
    size = max(12, int(h * rng.uniform(0.045, 0.065)))
    text = _pick(rng, ("Sunset over the bay, 2019", "Breaking: markets rally", "Our trip to the mountains"))
    layer = _blank(clean)
    d = ImageDraw.Draw(layer)
    top = int(h * rng.uniform(0.74, 0.82))
    bottom = top + int(size * rng.uniform(1.7, 2.2))
    d.rectangle((0, top, w, bottom), fill=(0, 0, 0, int(rng.uniform(115, 165))))
    glyphs = face(NOTO / "NotoSans-Bold.ttf", size)
    left, t, _right, b = d.textbbox((0, 0), text, font=glyphs)
    text_layer = _blank(clean)
    ImageDraw.Draw(text_layer).text((int(w * 0.04) - left, (top + bottom - (b - t)) // 2 - t), text,
                                    font=glyphs, fill=(255, 255, 255, 255))
    return _layered(clean, Image.alpha_composite(layer, text_layer))


def price_tag(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """A price in a coloured, opaque rounded box."""
    h, w = clean.shape[:2]
    size = max(12, int(h * rng.uniform(0.05, 0.075)))
    text = _pick(rng, ("€ 24.90", "SALE -30%", "$ 199", "NEW 9,99 €"))
    fill, ink = [((220, 30, 40), (255, 255, 255)), ((250, 210, 30), (20, 20, 20)),
                 ((30, 110, 220), (255, 255, 255))][int(rng.integers(0, 3))]
    layer = _blank(clean)
    d = ImageDraw.Draw(layer)
    glyphs = face(NOTO / "NotoSans-Bold.ttf", size)
    left, t, right, b = d.textbbox((0, 0), text, font=glyphs)
    pad = int(size * 0.45)
    bw, bh = right - left + 2 * pad, b - t + 2 * pad
    x, y = int(rng.uniform(0.05, 0.95) * (w - bw)), int(rng.uniform(0.05, 0.95) * (h - bh))
    d.rounded_rectangle((x, y, x + bw, y + bh), radius=int(pad * 0.8), fill=(*fill, 255))
    d.text((x + pad - left, y + pad - t), text, font=glyphs, fill=(*ink, 255))
    return _layered(clean, layer)


def tiled_watermark(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """A stock-photo watermark: one text tiled over the whole image, rotated 25–35°, white at alpha 0.3–0.45."""
    h, w = clean.shape[:2]
    size = max(12, int(h * rng.uniform(0.05, 0.07)))
    text = _pick(rng, ("© PhotoStock", "SAMPLE", "stockimages", "PREVIEW"))
    glyphs = face(NOTO / "NotoSans-Bold.ttf", size)
    probe = ImageDraw.Draw(_blank(clean)).textbbox((0, 0), text, font=glyphs)
    tw, th = probe[2] - probe[0], probe[3] - probe[1]
    tile = Image.new("RGBA", (tw + 8, th + 8), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((4 - probe[0], 4 - probe[1]), text, font=glyphs,
                              fill=(255, 255, 255, int(rng.uniform(80, 115))))
    tile = tile.rotate(float(rng.uniform(25, 35)), expand=True, resample=Image.Resampling.BICUBIC)
    step_x, step_y = tile.width + int(size * 1.5), tile.height + int(size * 0.8)
    canvas = Image.new("RGBA", (w + 2 * step_x, h + 2 * step_y), (0, 0, 0, 0))
    ox, oy = int(rng.integers(0, step_x)), int(rng.integers(0, step_y))
    for row, y in enumerate(range(oy, h + step_y, step_y)):
        for x in range(ox + (step_x // 2) * (row % 2), w + step_x, step_x):
            canvas.alpha_composite(tile, (x, y))
    return _layered(clean, canvas.crop((step_x, step_y, step_x + w, step_y + h)))


def outlined(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """Logo lettering drawn as an outline only (the letters' insides show the photo)."""
    h, w = clean.shape[:2]
    size = max(16, int(h * rng.uniform(0.09, 0.13)))
    text = _pick(rng, ("LOGO", "BRAND", "Studio", "FOTO"))
    glyphs = face(NOTO / "NotoSans-Bold.ttf", size)
    layer = _blank(clean)
    d = ImageDraw.Draw(layer)
    stroke = max(1, size // 22)
    left, t, right, _b = d.textbbox((0, 0), text, font=glyphs, stroke_width=stroke)
    x, y = int(rng.uniform(0.05, 0.95) * (w - (right - left))), int(rng.uniform(0.05, 0.3) * h)
    colour = ((255, 255, 255), (20, 20, 20), (240, 200, 40))[int(rng.integers(0, 3))]
    # Drawing the fill transparent over the stroke punches the insides out: only the outline stays.
    d.text((x - left, y - t), text, font=glyphs, fill=(0, 0, 0, 0), stroke_width=stroke,
           stroke_fill=(*colour, 255))
    return _layered(clean, layer)


def _caption_at_bottom(clean: np.ndarray, rng: np.random.Generator, text: str, glyphs: ImageFont.FreeTypeFont,
                       ink: tuple[int, int, int], stroke: int = 0) -> Layer:
    h, w = clean.shape[:2]
    layer = _blank(clean)
    d = ImageDraw.Draw(layer)
    left, t, right, b = d.textbbox((0, 0), text, font=glyphs, stroke_width=stroke)
    x = int(rng.uniform(0.1, 0.9) * max(1, w - (right - left)))
    y = int(rng.choice([rng.uniform(0.04, 0.1), rng.uniform(0.8, 0.88)]) * h) if h > 0 else 0
    y = min(y, h - (b - t) - 4)
    d.text((x - left, y - t), text, font=glyphs, fill=(*ink, 255), stroke_width=stroke,
           stroke_fill=(0, 0, 0, 255))
    return _layered(clean, layer)


def cjk(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """A Chinese, Japanese or Korean caption, white with a thin dark stroke."""
    text, index = [("夏天的海边旅行", 2), ("東京の夜景を楽しむ", 0), ("서울의 봄 여행", 3)][int(rng.integers(0, 3))]
    glyphs = face(NOTO_CJK / "NotoSansCJK-Bold.ttc", max(12, int(clean.shape[0] * rng.uniform(0.05, 0.07))), index)
    return _caption_at_bottom(clean, rng, text, glyphs, (255, 255, 255), stroke=1)


def cyrillic(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """A Russian or Ukrainian caption, white with a dark stroke."""
    text = _pick(rng, ("Летний отдых на море", "Привет из Москвы", "Осінь у Карпатах"))
    glyphs = face(NOTO / "NotoSans-Bold.ttf", max(12, int(clean.shape[0] * rng.uniform(0.05, 0.07))))
    return _caption_at_bottom(clean, rng, text, glyphs, (255, 255, 255), stroke=2)


def shadowed(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """White text with a soft, offset black drop shadow."""
    h, w = clean.shape[:2]
    size = max(12, int(h * rng.uniform(0.06, 0.08)))
    text = _pick(rng, ("Happy Holidays", "Weekend Vibes", "Lake Como, Italy"))
    glyphs = face(LIBERATION / "LiberationSans-Bold.ttf", size)
    probe = ImageDraw.Draw(_blank(clean)).textbbox((0, 0), text, font=glyphs)
    x = int(rng.uniform(0.1, 0.9) * max(1, w - (probe[2] - probe[0]))) - probe[0]
    y = int(rng.uniform(0.05, 0.85) * (h - (probe[3] - probe[1]))) - probe[1]
    shadow, letters = _blank(clean), _blank(clean)
    offset = max(2, size // 14)
    ImageDraw.Draw(shadow).text((x + offset, y + offset), text, font=glyphs, fill=(0, 0, 0, 200))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1.5, size / 14)))
    ImageDraw.Draw(letters).text((x, y), text, font=glyphs, fill=(255, 255, 255, 255))
    return _layered(clean, Image.alpha_composite(shadow, letters))


def coloured(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """Saturated coloured text without stroke, placed over the greenest stretch of the photo."""
    h, w = clean.shape[:2]
    size = max(12, int(h * rng.uniform(0.06, 0.08)))
    text = _pick(rng, ("Spring garden", "Grüne Wiese", "Fresh & green"))
    ink = ((255, 80, 160), (255, 230, 0), (90, 200, 255), (255, 120, 0))[int(rng.integers(0, 4))]
    glyphs = face(NOTO / "NotoSerif-Bold.ttf", size)
    probe = ImageDraw.Draw(_blank(clean)).textbbox((0, 0), text, font=glyphs)
    tw, th = probe[2] - probe[0], probe[3] - probe[1]
    green = clean[..., 1].astype(np.float32) - clean[..., [0, 2]].astype(np.float32).mean(axis=2)
    best, spot = -1e9, (0, 0)
    for y in range(4, h - th - 4, max(1, h // 16)):
        for x in range(4, w - tw - 4, max(1, w // 16)):
            value = float(green[y : y + th, x : x + tw].mean())
            if value > best:
                best, spot = value, (x, y)
    layer = _blank(clean)
    ImageDraw.Draw(layer).text((spot[0] - probe[0], spot[1] - probe[1]), text, font=glyphs, fill=(*ink, 255))
    return _layered(clean, layer)


def date_style(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """A small orange camera date stamp in the bottom-right corner."""
    text = f"'{int(rng.integers(0, 30)):02d} {int(rng.integers(1, 13))} {int(rng.integers(1, 29)):02d}"
    size = max(10, int(clean.shape[0] * rng.uniform(0.035, 0.05)))
    glyphs = face(LIBERATION / "LiberationMono-Bold.ttf", size)
    layer = _blank(clean)
    d = ImageDraw.Draw(layer)
    left, top, right, bottom = d.textbbox((0, 0), text, font=glyphs)
    x = clean.shape[1] - (right - left) - int(rng.integers(12, 40))
    y = clean.shape[0] - (bottom - top) - int(rng.integers(12, 30))
    d.text((x - left, y - top), text, font=glyphs, fill=(255, int(rng.integers(110, 160)), 20, 255))
    return _layered(clean, layer.filter(ImageFilter.GaussianBlur(0.6)))


MARK_FONTS = (NOTO / "NotoSans-Bold.ttf", NOTO / "NotoSans-Regular.ttf", NOTO / "NotoSerif-Bold.ttf",
              LIBERATION / "LiberationSans-Bold.ttf", LIBERATION / "LiberationSerif-Bold.ttf")


def big_mark(clean: np.ndarray, rng: np.random.Generator) -> Layer:
    """A stock-preview mark: one or two large words (100–200 px tall) across the photo, white, black or grey at
    alpha 0.2–0.5, upright or turned up to ±35°, covering 4–12 % of the image; sometimes a thin outline."""
    h, w = clean.shape[:2]
    text = _pick(rng, ("SAMPLE", "PREVIEW", "PROOF", "DRAFT", "Sample", "Preview", "COPY", "STOCK PHOTO"))
    path = MARK_FONTS[int(rng.integers(0, len(MARK_FONTS)))]
    colour = ((255, 255, 255), (0, 0, 0), (128, 128, 128), (200, 200, 200))[int(rng.integers(0, 4))]
    alpha = round(255 * float(rng.uniform(0.2, 0.5)))
    angle = float(rng.uniform(-35, 35)) if rng.random() < 0.5 else 0.0
    outline = int(rng.integers(1, 3)) if rng.random() < 0.25 else 0
    share = rng.uniform(0.04, 0.12)
    size = int(rng.uniform(100, 200) * h / 512)
    for _ in range(12):  # the size whose letters cover about `share` of the image (letters, not their box)
        glyphs = face(path, size)
        tile = Image.new("L", (w * 2, h), 0)
        ImageDraw.Draw(tile).text((0, 0), text, font=glyphs, fill=255)
        covered = float((np.asarray(tile) > 127).mean()) * 2 * w * h / (w * h)
        box = tile.getbbox() or (0, 0, 1, 1)
        if abs(covered - share) < 0.01 or not 60 * h / 512 < size < 260 * h / 512:
            break
        if box[2] - box[0] > 0.95 * w and covered < share:
            break
        size = int(size * float(np.clip(np.sqrt(share / max(covered, 1e-3)), 0.8, 1.25)))
    rim = (255 - colour[0], 255 - colour[1], 255 - colour[2]) if colour[0] != 128 else (255, 255, 255)
    while True:  # smaller until the word, turned, fits the image
        glyphs = face(path, size)
        probe = ImageDraw.Draw(_blank(clean)).textbbox((0, 0), text, font=glyphs, stroke_width=outline)
        word = Image.new("RGBA", (probe[2] - probe[0] + 8, probe[3] - probe[1] + 8), (0, 0, 0, 0))
        ImageDraw.Draw(word).text((4 - probe[0], 4 - probe[1]), text, font=glyphs, fill=(*colour, alpha),
                                  stroke_width=outline, stroke_fill=(*rim, alpha))
        if angle:
            word = word.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
        if (word.width <= 0.95 * w and word.height <= 0.95 * h) or size < 40:
            break
        size = int(size * 0.92)
    layer = _blank(clean)
    x = int(rng.uniform(0.0, 1.0) * max(1, w - word.width))
    y = int(rng.uniform(0.0, 1.0) * max(1, h - word.height))
    layer.alpha_composite(word, (x, y))
    return _layered(clean, layer)


MAKERS = {"band": band, "price": price_tag, "tiled": tiled_watermark, "outline": outlined, "cjk": cjk,
          "shadow": shadowed, "foliage": coloured, "cyrillic": cyrillic, "date": date_style,
          "mark": big_mark}


def scene_sign(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Natural scene text, no overlay: a sign seen in perspective, lit, blurred and noisy like the photo."""
    import cv2

    h, w = clean.shape[:2]
    text = _pick(rng, ("NO PARKING", "BAKERY", "Main St", "EXIT", "OPEN 9-18", "CAFÉ"))
    plate, ink = [((235, 235, 230), (200, 20, 30)), ((20, 90, 40), (250, 250, 250)),
                  ((30, 60, 150), (255, 255, 255)), ((240, 200, 40), (20, 20, 20))][int(rng.integers(0, 4))]
    glyphs = face(NOTO / "NotoSans-Bold.ttf", 64)
    probe = ImageDraw.Draw(Image.new("RGB", (8, 8))).textbbox((0, 0), text, font=glyphs)
    sw, sh = probe[2] - probe[0] + 60, probe[3] - probe[1] + 50
    sign = Image.new("RGB", (sw, sh), plate)
    d = ImageDraw.Draw(sign)
    d.rectangle((6, 6, sw - 7, sh - 7), outline=ink, width=4)
    d.text((30 - probe[0], 25 - probe[1]), text, font=glyphs, fill=ink)
    target_w = w * rng.uniform(0.22, 0.4)
    target_h = target_w * sh / sw
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.7) * h
    # A sign turned away from the camera and tilted: its far side is shorter and the line is not level.
    turn, tilt = rng.uniform(0.55, 0.8), np.radians(rng.uniform(-12, 12))
    corners = np.array([[-1, -1], [1, -turn], [1, turn], [-1, 1]], np.float32) * [target_w / 2, target_h / 2]
    rotation = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]], np.float32)
    dst = (corners @ rotation.T + [cx, cy]).astype(np.float32)
    src = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(np.asarray(sign, np.float32), matrix, (w, h), flags=cv2.INTER_AREA)
    cover = cv2.warpPerspective(np.ones((sh, sw), np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR)
    lum = cv2.GaussianBlur(clean.astype(np.float32).mean(axis=2), (0, 0), 25)
    light = (0.45 + 0.75 * lum / 255.0)[..., None] * np.linspace(rng.uniform(0.8, 1.0), 1.0, w)[None, :, None]
    blur = rng.uniform(0.8, 1.6)
    lit = cv2.GaussianBlur(warped * light, (0, 0), blur)
    cover = cv2.GaussianBlur(cover, (0, 0), blur)[..., None]
    noise_level = float(np.std(clean.astype(np.float32) - cv2.GaussianBlur(clean.astype(np.float32), (0, 0), 1.0)))
    noisy = lit + rng.normal(0, max(1.5, noise_level), lit.shape)
    return np.asarray((clean * (1 - cover) + noisy * cover).clip(0, 255), np.uint8)


def screenshot(rng: np.random.Generator, width: int = 768, height: int = 512) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """A shop page: (without text, with text, text footprint). Title bar, gradient header, grey body lines,
    a button; the text is the overlay, the flat and gradient backgrounds are what must come back."""
    bg = Image.new("RGB", (width, height), (250, 250, 248))
    d = ImageDraw.Draw(bg)
    bar = (34, 40, 49) if rng.random() < 0.5 else (20, 60, 120)
    d.rectangle((0, 0, width, 44), fill=bar)
    top, bottom = np.array([230, 240, 255], np.float32), np.array([190, 210, 240], np.float32)
    for y in range(44, 130):
        t = (y - 44) / 86
        d.line((0, y, width, y), fill=tuple(int(c) for c in top * (1 - t) + bottom * t))
    button = (40, 150, 80) if rng.random() < 0.5 else (220, 90, 30)
    d.rounded_rectangle((40, 420, 240, 470), radius=10, fill=button)
    d.rectangle((300, 160, 720, 400), fill=(235, 235, 235))
    clean = np.asarray(bg)
    text = _blank(clean)
    t = ImageDraw.Draw(text)
    regular, bold = face(NOTO / "NotoSans-Regular.ttf", 16), face(NOTO / "NotoSans-Bold.ttf", 22)
    t.text((16, 10), _pick(rng, ("Shop — Outdoor gear", "My Store | Kitchen")), font=bold, fill=(255, 255, 255, 255))
    t.text((40, 70), _pick(rng, ("Trail Backpack 30 L", "Chef's Knife, 20 cm")), font=face(NOTO / "NotoSans-Bold.ttf",
           30), fill=(20, 30, 60, 255))
    price = f"Price: EUR {int(rng.integers(10, 99))}.{int(rng.integers(0, 99)):02d}  incl. VAT"
    for i, line in enumerate((price, f"SKU: {int(rng.integers(100000, 999999))}-B", "In stock, ships in 2 days",
                              "Free returns within 30 days")):
        t.text((40, 160 + 34 * i), line, font=regular, fill=(90, 90, 90, 255))
    t.text((70, 432), "Add to cart", font=face(NOTO / "NotoSans-Bold.ttf", 20), fill=(255, 255, 255, 255))
    t.text((320, 270), "Product photo", font=regular, fill=(150, 150, 150, 255))
    overlaid, footprint = _layered(clean, text)
    return clean, overlaid, footprint
