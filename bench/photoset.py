"""Real photos for the quality benchmarks, from Debian's wallpaper packages (not scikit-image's).

`apt-get download` fetches the packages from the package index, `dpkg -x` unpacks them, and each photo is
reduced to 768×512 crops (PNG). The photos are split by source into a **tune** set and a **holdout** set:
tune on the first, report on the second; crops of one photo never fall on both sides. A third set, **fresh**
(15 photos of two other packages, added in session 6 after the holdout set had been used to choose between
designs), is measured on only when a piece of work is finished. Only photographs are listed (the packages'
abstract art and illustrations are left out).

A fourth set, **tune-extra** (session 8, issue 17), holds other crops of the **tune** sources only: per source,
the busiest 768×512 window (median local contrast) at 1152 or 1728 px wide, away from the two tune crops —
foliage, moss and bark, where the `patch` fill darkened on held-out photos but hardly on the tune crops. It is
for tuning beside tune; it shares sources with tune and none with holdout or fresh.

A fifth set, **tune-b** (session 9, issue 17), is for tuning too but from another package, lxqt-themes: every
photograph among its wallpapers (11; the drawn ones — origami, triangles, waves, logos — left out), two crops
each by the tune rule (22 crops). It shares no package with the other sets, so a change that helps tune only
because of those two packages' look shows up here as it would on fresh.

Run: python bench/photoset.py [--dir DIR]   (default ~/.cache/retouchd/bench-photos; prints the counts)
Other benchmarks call `photos("tune" | "holdout" | "fresh" | "tune-extra" | "tune-b" | "all")` ("all" = tune + holdout).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
# (package-relative glob, set). Holdout: a third of the photos, chosen once by hand for a mix of subjects.
SOURCES: dict[str, str] = {
    "backgrounds/mate/nature/Aqua.jpg": "tune",
    "backgrounds/mate/nature/Blinds.jpg": "tune",
    "backgrounds/mate/nature/Dune.jpg": "holdout",
    "backgrounds/mate/nature/FreshFlower.jpg": "tune",
    "backgrounds/mate/nature/Garden.jpg": "holdout",
    "backgrounds/mate/nature/GreenMeadow.jpg": "tune",
    "backgrounds/mate/nature/LadyBird.jpg": "tune",
    "backgrounds/mate/nature/RainDrops.jpg": "holdout",
    "backgrounds/mate/nature/Storm.jpg": "tune",
    "backgrounds/mate/nature/TwoWings.jpg": "tune",
    "backgrounds/mate/nature/Wood.jpg": "holdout",
    "backgrounds/mate/nature/YellowFlower.jpg": "tune",
    "wallpapers/BytheWater": "tune",
    "wallpapers/ColdRipple": "holdout",
    "wallpapers/ColorfulCups": "tune",
    "wallpapers/DarkestHour": "tune",
    "wallpapers/EveningGlow": "holdout",
    "wallpapers/FallenLeaf": "tune",
    "wallpapers/Grey": "holdout",
    "wallpapers/Kite": "tune",
    "wallpapers/OneStandsOut": "holdout",
    "wallpapers/Path": "holdout",
    "wallpapers/Volna": "tune",
    "wallpapers/summer_1am": "tune",
    "backgrounds/Bridge_by_Sander_Klootwijk.jpg": "fresh",
    "backgrounds/Dragonfly_by_Bolly.jpg": "fresh",
    "backgrounds/Infinite-Sea_by_Aury88.jpg": "fresh",
    "backgrounds/Kleiber_by_Lukas_Baubkus.jpg": "fresh",
    "backgrounds/Picture_0B_by_freespace.jpg": "fresh",
    "backgrounds/Picture_1A_by_freespace.jpg": "fresh",
    "backgrounds/Wine_by_Jakkub_Mede.jpg": "fresh",
    "backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg": "fresh",
    "backgrounds/analogpattern_by_Peter_Nerlich.jpg": "fresh",
    "backgrounds/free_by_Peter_Nerlich.jpg": "fresh",
    "backgrounds/friends_by_Aitzol_Berasategi.jpg": "fresh",
    "backgrounds/life_by_Aitzol_Berasategi.jpg": "fresh",
    "backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg": "fresh",
    "backgrounds/seeding_by_Clements_Engelhardt.jpg": "fresh",
    "backgrounds/sunset_by_Aitzol_Berasategi.jpg": "fresh",
}
SUBSETS = ("tune", "holdout", "fresh", "tune-extra", "tune-b")
TUNE_B = "tune-b"
TUNE_B_PACKAGE = "lxqt-themes"
TUNE_B_SOURCES = tuple(
    f"lxqt/wallpapers/{name}"
    for name in (
        "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
        "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg",
    )
)
EXTRA = "tune-extra"
EXTRA_WIDTHS = (1152, 1728)
"""Widths the tune sources are scaled to (at most their own) before the busiest window is chosen (1152: the tune
crops' scale)."""
EXTRA_STEP = 64
CROP = (768, 512)
DEFAULT_DIR = Path.home() / ".cache" / "retouchd" / "bench-photos"


def _largest(folder: Path) -> Path:
    images = folder / "contents" / "images"
    return max(images.iterdir(), key=lambda p: int(p.name.split("x")[0]))


def _crops(image: Image.Image) -> list[Image.Image]:
    """Two 768×512 crops (left and right) of the photo scaled to 1152 px wide: real detail, not a thumbnail."""
    width = 1152
    height = round(image.height * width / image.width)
    if height < CROP[1]:
        height = CROP[1]
        width = round(image.width * height / image.height)
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    top = (height - CROP[1]) // 2
    return [image.crop((x, top, x + CROP[0], top + CROP[1])) for x in (0, width - CROP[0])]


def _busyness(image: Image.Image) -> np.ndarray:
    """Local contrast: the standard deviation of luma in 9×9 windows (H×W float)."""
    luma = np.asarray(image.convert("L"), np.float32)
    mean = cv2.blur(luma, (9, 9))
    return np.sqrt(np.maximum(cv2.blur(luma * luma, (9, 9)) - mean * mean, 0))


def _busiest_crop(image: Image.Image) -> Image.Image:
    """The window whose median local contrast is highest, at one of EXTRA_WIDTHS, not over a tune crop."""
    best: tuple[float, Image.Image] | None = None
    for width in sorted({min(w, image.width) for w in EXTRA_WIDTHS}):  # never enlarged
        height = round(image.height * width / image.width)
        if height < CROP[1]:
            continue
        scaled = image.resize((width, height), Image.Resampling.LANCZOS)
        contrast = _busyness(scaled)
        tune_top = (height - CROP[1]) // 2
        for y in range(0, height - CROP[1] + 1, EXTRA_STEP):
            for x in range(0, width - CROP[0] + 1, EXTRA_STEP):
                if width == EXTRA_WIDTHS[0] and abs(y - tune_top) < CROP[1] // 2:
                    continue  # mostly over one of the tune crops (they are 1152 px wide, centred vertically)
                score = float(np.median(contrast[y : y + CROP[1] : 4, x : x + CROP[0] : 4]))
                if best is None or score > best[0]:
                    best = (score, scaled.crop((x, y, x + CROP[0], y + CROP[1])))
    assert best is not None
    return best[1]


def _unpack(packages: tuple[str, ...], tmp: str) -> Path:
    subprocess.run(["apt-get", "download", *packages], cwd=tmp, check=True, capture_output=True)
    for deb in Path(tmp).glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True)
    return Path(tmp) / "x" / "usr" / "share"


def _source_image(share: Path, rel: str) -> tuple[str, Path]:
    source = share / rel
    path = _largest(source) if source.is_dir() else source
    return (Path(rel).stem.split("_by_")[0] if source.is_file() else Path(rel).name), path


def _build_once(directory: Path, subset: str, packages: tuple[str, ...], cut: Callable[[Path, Path], None]) -> Path:
    """Make `subset`'s folder once: `cut(share, folder)` writes its crops from the unpacked packages' share."""
    done = directory / f".complete-{subset}"
    if done.exists():
        return directory
    (directory / subset).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cut(_unpack(packages, tmp), directory / subset)
    done.write_text("ok\n")
    return directory


def build_extra(directory: Path = DEFAULT_DIR) -> Path:
    """The tune-extra set: one busy crop per tune source (the two packages that hold them)."""

    def cut(share: Path, folder: Path) -> None:
        for rel, subset in SOURCES.items():
            if subset != "tune":
                continue
            name, path = _source_image(share, rel)
            with Image.open(path) as im:
                _busiest_crop(im.convert("RGB")).save(folder / f"{name}-x.png")

    return _build_once(directory, EXTRA, PACKAGES[:2], cut)


def build_tune_b(directory: Path = DEFAULT_DIR) -> Path:
    """The tune-b set: two crops of each photo in TUNE_B_SOURCES, cut like tune's."""

    def cut(share: Path, folder: Path) -> None:
        for rel in TUNE_B_SOURCES:
            with Image.open(share / rel) as im:
                for i, crop in enumerate(_crops(im.convert("RGB"))):
                    crop.save(folder / f"{Path(rel).stem}-{i}.png")

    return _build_once(directory, TUNE_B, (TUNE_B_PACKAGE,), cut)


def build(directory: Path = DEFAULT_DIR) -> Path:
    """Fetch, unpack and crop the photos once; later calls reuse the folder."""
    done = directory / ".complete-fresh"  # renamed when the sources grew: older folders are rebuilt
    if done.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        share = _unpack(PACKAGES, tmp)
        for rel, subset in SOURCES.items():
            name, path = _source_image(share, rel)
            (directory / subset).mkdir(exist_ok=True)
            with Image.open(path) as im:
                for i, crop in enumerate(_crops(im.convert("RGB"))):
                    crop.save(directory / subset / f"{name}-{i}.png")
    done.write_text("ok\n")
    return directory


def photos(subset: str = "holdout", directory: Path = DEFAULT_DIR) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 H×W×3) for every crop of `subset` ("tune", "holdout", "fresh", "tune-extra", "tune-b" or
    "all" = tune + holdout), sorted by name."""
    builders = {EXTRA: build_extra, TUNE_B: build_tune_b}
    root = builders.get(subset, build)(directory)
    folders = ["tune", "holdout"] if subset == "all" else [subset]
    out = []
    for folder in folders:
        for path in sorted((root / folder).glob("*.png")):
            with Image.open(path) as im:
                out.append((path.stem, np.asarray(im.convert("RGB"))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    root = build_tune_b(build_extra(build(args.dir)))
    for subset in SUBSETS:
        print(f"{subset}: {len(list((root / subset).glob('*.png')))} crops in {root / subset}")


if __name__ == "__main__":
    main()
