"""Make the README's screenshots, docs/report.png and docs/status.png, from a real run on demo photos.

    python docs/screenshots.py          # needs headless Chromium (Debian: apt-get install -y chromium)

A temporary root gets two rules (sticker removal by sidecar mask, then ×2 with the `fast` network; and a
plain ×2 with small tiles), scikit-image's sample photos and one broken scan. `run --once` fills the report;
then a live daemon is caught half-way through a tiled job for the status view.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

DOCS = Path(__file__).resolve().parent
RULES = """
[[rule]]
name = "catalog"
inbox = "catalog"
steps = [
  { op = "remove_objects", mask = "sidecar", dilate = 3 },
  { op = "upscale", scale = 2, model = "fast" },
]

[[rule]]
name = "prints"
inbox = "prints"
steps = [{ op = "upscale", scale = 2, model = "fast", tile = 128 }]
output = { format = "jpeg", quality = 92 }
"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def retouchd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "retouchd", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "RETOUCHD_WATCH__SETTLE_TIME": "0.3", **(env or {})})


def with_sticker(photo: np.ndarray, box: tuple[int, int, int, int], label: str) -> tuple[Image.Image, Image.Image]:
    """The photo with a price sticker pasted on, and the sidecar mask that covers it."""
    image, mask = Image.fromarray(photo), Image.new("L", (photo.shape[1], photo.shape[0]), 0)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle(box, radius=10, fill=(220, 30, 40), outline=(255, 255, 255), width=3)
    draw.text((box[0] + 14, box[1] + 12), label, fill=(255, 255, 255), font_size=26)
    ImageDraw.Draw(mask).rounded_rectangle(box, radius=10, fill=255)
    return image, mask


def make_inbox(root: Path) -> None:
    catalog, prints = root / "inbox" / "catalog", root / "inbox" / "prints"
    catalog.mkdir(parents=True)
    prints.mkdir(parents=True)
    for name, photo, box, label in (("coffee.jpg", data.coffee(), (390, 40, 560, 100), "SALE -30%"),
                                    ("chelsea.jpg", data.chelsea(), (20, 220, 170, 280), "NEW!")):
        image, mask = with_sticker(photo, box, label)
        mask.save(catalog / (Path(name).stem + ".mask.png"))
        image.save(catalog / name, quality=92)
    Image.fromarray(data.astronaut()).save(prints / "astronaut.png")
    Image.fromarray(data.rocket()).save(prints / "rocket.jpg", quality=92)
    good = prints / "rocket.jpg"
    (prints / "scan-003.jpg").write_bytes(good.read_bytes()[:2000])


def chromium(url: str, out: Path, size: tuple[int, int], profile: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("headless Chromium is needed: apt-get install -y chromium")
    subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                    f"--screenshot={out}", url], capture_output=True, check=True, timeout=120)


def report_shot(root: Path, rules: Path, tmp: Path) -> None:
    page = tmp / "report.html"
    retouchd("report", "--since", "1d", "-o", str(page), "--root", str(root), "--rules", str(rules))
    chromium(page.as_uri(), DOCS / "report.png", (1280, 1150), tmp / "profile-report")
    shrink(DOCS / "report.png")


def shrink(png: Path) -> None:
    """256 dithered colours: a third of the bytes, and the photos still read well at this size."""
    with Image.open(png) as shot:
        small = shot.convert("RGB").quantize(256, dither=Image.Dither.FLOYDSTEINBERG)
    small.save(png, optimize=True)


def status_shot(root: Path, rules: Path, tmp: Path) -> None:
    from rich.console import Console

    from retouchd.commands.status.data import reader, status_data
    from retouchd.commands.status.view import render
    from retouchd.settings import load_settings
    from retouchd.store import open_store

    env = {**os.environ, "RETOUCHD_WATCH__SETTLE_TIME": "0.3", "RETOUCHD_LOG__FORMAT": "json"}
    log = open(tmp / "daemon.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen([sys.executable, "-m", "retouchd", "run", "--root", str(root), "--rules", str(rules)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(4)
        prints = root / "inbox" / "prints"
        Image.fromarray(data.hubble_deep_field()).save(prints / "hubble.png")
        time.sleep(1)
        for i, photo in enumerate((data.immunohistochemistry(), data.astronaut()[::-1])):
            Image.fromarray(photo).save(prints / f"queued-{i}.png")
        settings = load_settings(root=root, rule_files=[rules])
        open_store(settings.db_url)
        engine = reader(settings.db_url)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            snapshot = status_data(engine, settings.state)
            running = snapshot["running"]
            if running and running[0]["total"] and 0.45 < (running[0]["progress"] or 0) < 0.8:
                break
            time.sleep(0.5)
        else:
            sys.exit("the demo job never reached half-way; see " + str(tmp / "daemon.log"))
        console = Console(record=True, width=112, file=open(os.devnull, "w"), force_terminal=True)  # noqa: SIM115
        console.print(render(snapshot, "refreshes every 2 s · q or Ctrl-C to quit", str(root)))
        svg = console.export_svg(title="retouchd status")
        svg = re.sub(r"@font-face\s*{[^}]*}", "", svg)  # the page must not fetch fonts from the network
        (tmp / "status.svg").write_text(svg)
        width, height = (int(float(v)) for v in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
        chromium((tmp / "status.svg").as_uri(), DOCS / "status.png", (width, height), tmp / "profile-status")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        log.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="retouchd-shots-") as name:
        tmp = Path(name)
        root, rules = tmp / "demo", tmp / "demo.toml"
        rules.write_text(RULES)
        make_inbox(root)
        retouchd("run", "--once", "--root", str(root), "--rules", str(rules))
        report_shot(root, rules, tmp)
        status_shot(root, rules, tmp)
    print(f"wrote {DOCS / 'report.png'} and {DOCS / 'status.png'}")


if __name__ == "__main__":
    main()
