"""Clean photos of repeating surfaces — wall tiles, a brick wall, a facade's windows: the scene's own texture,
no overlay. A tiled-watermark detector must leave them alone."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw

KINDS = ("tiles", "bricks", "windows")


def _surface(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The flat surface, RGB uint8, each element with its own colour."""
    image = Image.new("RGB", (width, height))
    d = ImageDraw.Draw(image)
    if kind == "tiles":
        size, grout = int(rng.integers(40, 70)), int(rng.integers(3, 6))
        base = rng.uniform(170, 235, 3)
        d.rectangle((0, 0, width, height), fill=tuple(int(c) for c in base * 0.62))
        for y in range(0, height, size):
            for x in range(0, width, size):
                tone = np.clip(base + rng.normal(0, 6), 0, 255)
                d.rectangle((x + grout, y + grout, x + size - 1, y + size - 1), fill=tuple(int(c) for c in tone))
    elif kind == "bricks":
        bw = int(rng.integers(50, 80))
        bh, mortar = bw // 3, 3
        d.rectangle((0, 0, width, height), fill=(190, 185, 175))
        for row, y in enumerate(range(0, height, bh)):
            for x in range(-(bw // 2) * (row % 2), width, bw):
                tone = np.clip(np.array([150, 70, 50]) + rng.normal(0, 14, 3), 0, 255)
                d.rectangle((x + mortar, y + mortar, x + bw - 1, y + bh - 1), fill=tuple(int(c) for c in tone))
    else:
        step_x, step_y = int(rng.integers(80, 120)), int(rng.integers(90, 130))
        wall = rng.uniform(150, 220, 3)
        d.rectangle((0, 0, width, height), fill=tuple(int(c) for c in wall))
        for y in range(10, height, step_y):
            for x in range(10, width, step_x):
                glass = tuple(int(c) for c in np.clip(rng.normal(60, 25, 3), 0, 255))
                d.rectangle((x, y, x + step_x // 2, y + step_y // 2), fill=glass, outline=(240, 240, 235), width=4)
    rough = np.asarray(image, np.float32) + rng.normal(0, 6, (height, width, 3))
    return np.asarray(np.clip(rough, 0, 255), np.uint8)


def periodic_scene(clean: np.ndarray, rng: np.random.Generator, kind: str | None = None,
                   keystone: float | None = None) -> np.ndarray:
    """A repeating surface filling the frame, photographed: turned slightly away from the camera (`keystone`,
    the far edge this much shorter; 0 is perfectly square-on), lit like `clean`, blurred and noisy."""
    h, w = clean.shape[:2]
    kind = kind or KINDS[int(rng.integers(0, len(KINDS)))]
    keystone = float(rng.uniform(0.02, 0.06)) if keystone is None else keystone
    pad = int(0.2 * max(h, w))
    flat = _surface(kind, w + 2 * pad, h + 2 * pad, rng)
    inset = keystone * w / 2
    src = np.array([[pad, pad], [pad + w, pad], [pad + w, pad + h], [pad, pad + h]], np.float32)
    dst = np.array([[inset, 0], [w - inset, 0], [w, h], [0, h]], np.float32)
    angle = np.radians(rng.uniform(-2, 2)) if keystone else 0.0
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    dst = (dst - [w / 2, h / 2]) @ turn.T + [w / 2, h / 2]
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    photo = cv2.warpPerspective(flat.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
    light = cv2.GaussianBlur(clean.astype(np.float32).mean(axis=2), (0, 0), 40)
    lit = photo * (0.6 + 0.6 * light / 255.0)[..., None]
    out = cv2.GaussianBlur(lit, (0, 0), 0.7) + rng.normal(0, 2.0, lit.shape)
    return np.asarray(np.clip(out, 0, 255), np.uint8)
