"""Image edges: retouchd's decode + encode against plain Pillow (open, load, save) on the same bytes.

    python bench/image_edges.py [--repeat 50]

The difference is the cost of orientation, colour/bit-depth handling, metadata and limit checks.
Prints a table, then one JSON object. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageCms

from retouchd.images import OutputSpec, decode, encode

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def photo(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).normal(0, 8, (height, width, 3))
    base = np.stack([x % 256, y % 256, (x * y) % 256], axis=-1) + noise
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def samples() -> dict[str, tuple[bytes, str]]:
    def save(im: Image.Image, fmt: str, **params: object) -> tuple[bytes, str]:
        buffer = io.BytesIO()
        im.save(buffer, fmt, **params)
        return buffer.getvalue(), fmt

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Acme"
    ramp = (np.arange(512 * 512, dtype=np.uint32).reshape(512, 512) % 65536).astype(np.uint16)
    rgba = photo(512, 512).convert("RGBA")
    return {
        "png 256x171": save(photo(256, 171), "PNG"),
        "jpeg 1024x683 exif+icc rot": save(photo(1024, 683), "JPEG", quality=92, exif=exif.tobytes(), icc_profile=SRGB),
        "jpeg 4000x3000": save(photo(4000, 3000), "JPEG", quality=92),
        "png16 gray 512x512": save(Image.fromarray(ramp), "PNG"),
        "png rgba 512x512": save(rgba, "PNG"),
        "webp 1024x683": save(photo(1024, 683), "WEBP", quality=90),
    }


def median_ms(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for name, (data, fmt) in samples().items():
        repeat = max(3, args.repeat // 10) if "4000" in name else args.repeat

        def ours(data: bytes = data) -> None:
            decoded = decode(data, max_pixels=100_000_000)
            encode(decoded.frame, decoded.info, OutputSpec(), io.BytesIO())

        def plain(data: bytes = data, fmt: str = fmt) -> None:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                im.save(io.BytesIO(), fmt, quality=92)

        ours_ms, plain_ms = median_ms(ours, repeat), median_ms(plain, repeat)
        rows.append({"image": name, "retouchd_ms": round(ours_ms, 2), "pillow_ms": round(plain_ms, 2),
                     "ratio": round(ours_ms / plain_ms, 2)})
    print(f"{'image':<28} {'retouchd ms':>12} {'pillow ms':>10} {'ratio':>6}")
    for row in rows:
        print(f"{row['image']:<28} {row['retouchd_ms']:>12} {row['pillow_ms']:>10} {row['ratio']:>6}")
    print(json.dumps({"bench": "image_edges", "repeat": args.repeat, "results": rows}))


if __name__ == "__main__":
    main()
