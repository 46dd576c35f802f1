"""remove_text quality, routing and speed on real photos with synthetic overlays (clean photo = truth).

Photos are scikit-image's bundled ones, centre-cropped to 3:2 and resized to 768×512. Each gets four
overlaid versions — an orange mono date stamp (slightly blurred, like a camera's), a white caption with a
black stroke, a 50 %-alpha white watermark, a small label (dark, or light where every corner is dark) —
and stays in the set clean, next to three synthetic meadows (grass blades, daisies, seed heads), where the
raw detector fires.

Two sets. *tuning*: the photos, fonts and texts the detector and mask were developed on. *held-out*:
photos, fonts (DejaVu Serif/Condensed/Mono Oblique, Pillow's own Aileron) and texts never looked at
while tuning.

Measured, per overlaid photo with `when = "always"`: full-image PSNR of the output against the clean
photo; the share of overlay pixels restored (overlay pixel: the overlay moved its mean channel value by
≥ 30/255; restored: the output is within 30/255 of the clean photo there); the time of detection +
inpainting. Routing with `when = "auto"` (threshold 0.6): the share of clean photos left untouched (pixel
identical) and of overlaid photos treated.

Run: /tmp/venv/bin/python bench/remove_text.py [--engine patch|telea] [--set tuning|held-out|both]
     [--threads N] [--out DIR]   (DIR receives input | output | mask images)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import skimage.io
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from retouchd.steps.base import StepContext
from retouchd.steps.remove_text import RemoveTextOptions, RemoveTextStep
from retouchd.typing import Frame, Metrics

WIDTH, HEIGHT = 768, 512
FONTS = Path("/usr/share/fonts/truetype/dejavu")
KINDS = ("date", "caption", "watermark", "label")
RESTORED = 30.0
THRESHOLD = 0.6


@dataclass(frozen=True)
class Style:
    """Fonts and texts of one set; a font name of "" is Pillow's bundled default (Aileron)."""

    date_font: str
    caption_fonts: tuple[str, ...]
    watermark_fonts: tuple[str, ...]
    label_fonts: tuple[str, ...]
    captions: tuple[str, ...]
    watermarks: tuple[str, ...]
    labels: tuple[str, ...]
    date_format: Callable[[np.random.Generator], str]


TUNING = Style(
    "DejaVuSansMono-Bold.ttf",
    ("DejaVuSans-Bold.ttf",),
    ("DejaVuSerif-Bold.ttf",),
    ("DejaVuSans.ttf",),
    ("Summer holidays 2023", "Happy Birthday Anna!", "Lake Como, Italy"),
    ("© PhotoStock", "© Studio Lumen"),
    ("IMG_{n:04d}.JPG", "DSC{n:05d}.jpg"),
    lambda r: f"'{r.integers(0, 30):02d} {r.integers(1, 13)} {r.integers(1, 29):02d}",
)
HELD_OUT = Style(
    "DejaVuSansMono-BoldOblique.ttf",
    ("DejaVuSerif-Bold.ttf", "DejaVuSansCondensed-Bold.ttf", ""),
    ("DejaVuSans-Bold.ttf", "DejaVuSansCondensed.ttf"),
    ("DejaVuSansMono.ttf", "DejaVuSerif.ttf", ""),
    ("Family reunion · July", "SALE -30% TODAY", "Best friends forever"),
    ("SAMPLE", "© Jane Doe Photography"),
    ("P{n:04d}.png", "scan_{n:03d}.tif"),
    lambda r: f"{r.integers(1, 29):02d}/{r.integers(1, 13):02d}/20{r.integers(0, 30):02d}",
)


def fit(image: np.ndarray) -> np.ndarray:
    """Centre-crop to 3:2 and resize to 768×512 RGB."""
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    image = np.ascontiguousarray(image[..., :3])
    h, w = image.shape[:2]
    if w / h > 1.5:
        x = (w - int(h * 1.5)) // 2
        image = image[:, x : x + int(h * 1.5)]
    else:
        y = (h - int(w / 1.5)) // 2
        image = image[y : y + int(w / 1.5)]
    return np.asarray(Image.fromarray(image).resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS), np.uint8)


def tint(gray: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return (gray[..., None].astype(np.float32) / 255 * np.array(rgb, np.float32)).clip(0, 255).astype(np.uint8)


def _data_file(name: str) -> np.ndarray:
    return np.asarray(skimage.io.imread(Path(skimage.data.__file__).parent / name))


def _sk(name: str) -> np.ndarray:
    return np.asarray(getattr(skimage.data, name)())


def meadow(seed: int, flowers: str = "") -> np.ndarray:
    """Grass blades, optionally with daisies or seed heads: texture that looks like strokes."""
    rng = np.random.default_rng(seed)
    img = np.full((HEIGHT, WIDTH, 3), (25, 70, 40), np.float32)
    for _ in range(2500 if not flowers else 1300):
        x0, y0, length = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT + 60), rng.uniform(20, 90)
        lean, bend = rng.uniform(-0.5, 0.5), rng.uniform(-0.6, 0.6)
        t = np.linspace(0, 1, 12)
        points = np.stack([x0 + np.sin(lean + bend * t) * length * t, y0 - np.cos(lean + bend * t) * length * t], 1)
        colour = tuple(float(c) for c in np.array([40, 150, 70]) * rng.uniform(0.5, 1.3) + rng.normal(0, 15, 3))
        cv2.polylines(img, [points.astype(np.int32)], False, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    if flowers == "daisies":
        for _ in range(60):
            cx, cy, radius = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(10, 35)
            petal = (250, 250, 250) if rng.random() < 0.6 else (230, 120, 200)
            count, phase = int(rng.integers(10, 18)), rng.uniform(0, np.pi)
            for k in range(count):
                angle = phase + 2 * np.pi * k / count
                centre = (int(cx + np.cos(angle) * radius * 0.6), int(cy + np.sin(angle) * radius * 0.6))
                axes = (int(radius * 0.55), max(2, int(radius * 0.14)))
                cv2.ellipse(img, centre, axes, np.degrees(angle), 0, 360, petal, -1, cv2.LINE_AA)
            cv2.circle(img, (int(cx), int(cy)), max(3, int(radius * 0.25)), (240, 200, 40), -1, cv2.LINE_AA)
    elif flowers == "seeds":
        for _ in range(300):
            x, y, length = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(8, 20)
            for _ in range(int(rng.integers(4, 9))):
                angle = rng.uniform(-np.pi, 0)
                end = (int(x + np.cos(angle) * length), int(y + np.sin(angle) * length))
                cv2.line(img, (int(x), int(y)), end, (230, 220, 200), 1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), 0.7).clip(0, 255).astype(np.uint8)


def photos(which: str) -> dict[str, np.ndarray]:
    if which == "tuning":
        return {
            "astronaut": fit(_sk("astronaut")),
            "coffee": fit(_sk("coffee")),
            "rocket": fit(_sk("rocket")),
            "chelsea": fit(_sk("chelsea")),
            "motorcycle": fit(_data_file("motorcycle_left.png")),
            "camera": fit(_sk("camera")),
            "coins": fit(_sk("coins")),
            "hubble": fit(_sk("hubble_deep_field")),
            "ihc": fit(_sk("immunohistochemistry")),
            "grass": fit(tint(_sk("grass"), (150, 230, 90))),
            "gravel": fit(tint(_sk("gravel"), (250, 235, 210))),
            "brick": fit(tint(_sk("brick"), (255, 190, 160))),
            "moon": fit(_sk("moon")),
            "meadow-daisies": meadow(1, "daisies"),
            "meadow-seeds": meadow(2, "seeds"),
            "meadow": meadow(3),
        }
    retina = _sk("retina")
    return {
        "retina": fit(retina),
        "retina-zoom": fit(retina[300:900, 250:1150]),
        "motorcycle-right": fit(_data_file("motorcycle_right.png")),
        "clock": fit(_data_file("clock_motion.png")),
        "cell": fit(_data_file("cell.png")),
        "astronaut-flag": fit(_sk("astronaut")[0:300, 0:450]),
        "coffee-beans": fit(_sk("coffee")[0:260, 0:390]),
        "hubble-corner": fit(_sk("hubble_deep_field")[500:872, 0:558]),
        "meadow-daisies": meadow(11, "daisies"),
        "meadow-seeds": meadow(12, "seeds"),
    }


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if not name:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(FONTS / name), size)


def _luminance(rgb: np.ndarray) -> float:
    return float((rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())


def overlay(clean: np.ndarray, kind: str, style: Style, rng: np.random.Generator) -> np.ndarray:
    """The photo with one synthetic overlay of `kind` composited on it."""
    base = Image.fromarray(clean).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if kind == "date":
        font = _font(style.date_font, int(rng.integers(18, 30)))
        text = style.date_format(rng)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = WIDTH - (right - left) - int(rng.integers(16, 50))
        y = HEIGHT - (bottom - top) - int(rng.integers(16, 40))
        draw.text((x - left, y - top), text, font=font, fill=(255, int(rng.integers(110, 160)), 20, 255))
        layer = layer.filter(ImageFilter.GaussianBlur(0.6))
    elif kind == "caption":
        font = _font(str(rng.choice(style.caption_fonts)), int(rng.integers(28, 46)))
        text, stroke = str(rng.choice(style.captions)), int(rng.integers(2, 4))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
        x = (WIDTH - (right - left)) // 2
        y = int(rng.choice([int(rng.integers(14, 40)), HEIGHT - (bottom - top) - int(rng.integers(20, 50))]))
        draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255, 255), stroke_width=stroke,
                  stroke_fill=(0, 0, 0, 255))
    elif kind == "watermark":
        font = _font(str(rng.choice(style.watermark_fonts)), int(rng.integers(48, 80)))
        text = str(rng.choice(style.watermarks))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = (WIDTH - (right - left)) // 2 + int(rng.integers(-40, 41))
        y = (HEIGHT - (bottom - top)) // 2 + int(rng.integers(-60, 61))
        draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255, int(rng.integers(115, 141))))
    else:
        font = _font(str(rng.choice(style.label_fonts)), int(rng.integers(11, 16)))
        text = str(rng.choice(style.labels)).format(n=int(rng.integers(0, 9999)))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left, bottom - top
        corners = [(12, 10), (WIDTH - w - 12, 10), (12, HEIGHT - h - 10), (WIDTH - w - 12, HEIGHT - h - 10)]
        brightness = [_luminance(clean[y : y + h, x : x + w]) for x, y in corners]
        x, y = corners[int(np.argmax(brightness))]
        # A label is put where it can be read: dark on the brightest corner, light where all are dark.
        ink = int(rng.integers(10, 50)) if max(brightness) >= 110 else int(rng.integers(215, 250))
        draw.text((x - left, y - top), text, font=font, fill=(ink, ink, ink, 255))
    return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@dataclass
class Row:
    photo: str
    kind: str
    score: float
    treated_auto: bool
    psnr_in: float
    psnr_out: float
    restored: float
    overlay_share: float
    seconds: float
    cpu_seconds: float


def _score(metrics: Metrics) -> float:
    value = metrics["overlay_score"]
    return float(value) if isinstance(value, int | float) else 0.0


def _run(step: RemoveTextStep, image: np.ndarray, ctx: StepContext) -> tuple[np.ndarray, Metrics, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = step.run(Frame(image), ctx)
    return result.frame.rgb, dict(result.metrics), time.perf_counter() - wall, time.process_time() - cpu


def evaluate(which: str, engine: str, ctx: StepContext, out: Path | None) -> Iterator[Row]:
    style = TUNING if which == "tuning" else HELD_OUT
    always = RemoveTextStep(RemoveTextOptions(when="always", engine=engine))
    auto = RemoveTextStep(RemoveTextOptions(when="auto", threshold=THRESHOLD, engine=engine))
    rng = np.random.default_rng(2024 if which == "tuning" else 77)
    for name, clean in photos(which).items():
        result, metrics, _, _ = _run(auto, clean, ctx)
        untouched = bool(np.array_equal(result, clean))
        yield Row(name, "clean", _score(metrics), not untouched, 99.0, psnr(result, clean),
                  1.0, 0.0, 0.0, 0.0)
        if name.startswith("meadow"):
            continue
        for kind in KINDS:
            image = overlay(clean, kind, style, rng)
            changed = np.abs(image.astype(np.int16) - clean.astype(np.int16)).mean(axis=2) >= RESTORED
            result, metrics, seconds, cpu = _run(always, image, ctx)
            error = np.abs(result.astype(np.int16) - clean.astype(np.int16)).mean(axis=2)
            restored = float((error[changed] < RESTORED).mean()) if changed.any() else 1.0
            score = _score(metrics)
            yield Row(name, kind, score, score >= THRESHOLD, psnr(image, clean), psnr(result, clean), restored,
                      float(changed.mean()), seconds, cpu)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                strip = np.concatenate([image, result], axis=1)
                cv2.imwrite(str(out / f"{which}_{name}_{kind}.png"), strip[..., ::-1])


def summarise(rows: list[Row]) -> dict[str, float]:
    clean = [r for r in rows if r.kind == "clean"]
    overlaid = [r for r in rows if r.kind != "clean"]
    return {
        "images_overlaid": len(overlaid),
        "images_clean": len(clean),
        "psnr_in_db": round(float(np.mean([r.psnr_in for r in overlaid])), 2),
        "psnr_out_db": round(float(np.mean([r.psnr_out for r in overlaid])), 2),
        "psnr_out_min_db": round(float(np.min([r.psnr_out for r in overlaid])), 2),
        "overlay_restored": round(float(np.mean([r.restored for r in overlaid])), 3),
        "clean_untouched_auto": round(float(np.mean([not r.treated_auto for r in clean])), 3),
        "overlaid_treated_auto": round(float(np.mean([r.treated_auto for r in overlaid])), 3),
        "seconds_mean": round(float(np.mean([r.seconds for r in overlaid])), 3),
        "seconds_max": round(float(np.max([r.seconds for r in overlaid])), 3),
        "cpu_seconds_mean": round(float(np.mean([r.cpu_seconds for r in overlaid])), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="patch", choices=("patch", "telea"))
    parser.add_argument("--set", dest="which", default="both", choices=("tuning", "held-out", "both"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    ctx = StepContext(rule="bench", source=Path("bench.png"), cpu_threads=args.threads)
    sets = ("tuning", "held-out") if args.which == "both" else (args.which,)
    report: dict[str, object] = {"engine": args.engine, "threads": args.threads, "cpus": os.cpu_count()}
    for which in sets:
        rows = list(evaluate(which, args.engine, ctx, args.out))
        print(f"\n[{which}] engine={args.engine}")
        print(f"{'photo':18s} {'kind':9s} {'score':>5s} {'auto':>5s} {'PSNR in':>7s} {'out':>6s} "
              f"{'restored':>8s} {'overlay%':>8s} {'s':>5s}")
        for r in rows:
            print(f"{r.photo:18s} {r.kind:9s} {r.score:5.2f} {'treat' if r.treated_auto else '-':>5s} "
                  f"{r.psnr_in:7.2f} {r.psnr_out:6.2f} {r.restored:8.3f} {100 * r.overlay_share:8.2f} "
                  f"{r.seconds:5.2f}")
        summary = summarise(rows)
        by_kind = {
            kind: {
                "psnr_out_db": round(float(np.mean([r.psnr_out for r in rows if r.kind == kind])), 2),
                "overlay_restored": round(float(np.mean([r.restored for r in rows if r.kind == kind])), 3),
                "treated_auto": round(float(np.mean([r.treated_auto for r in rows if r.kind == kind])), 3),
            }
            for kind in KINDS
        }
        print("summary", json.dumps(summary))
        report[which] = {**summary, "by_kind": by_kind}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
