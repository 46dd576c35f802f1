"""`retouchd report`: before/after pairs from a real run, filters, failures with reasons, previews of odd
images, and the page opened in a real (headless Chromium) browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from retouchd.commands.report import Entry, NoPreview, thumbnail
from retouchd.commands.report.page import render_page
from retouchd.store import Job

from conftest import cli, save_image

RULES = """
[[rule]]
name = "upscale"
inbox = "upscale"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]

[[rule]]
name = "shop"
inbox = "shop"
steps = [{ op = "upscale", scale = 1.5, model = "lanczos" }]
output = { format = "jpeg", quality = 90 }
"""
PAIRS = 4
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def done_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A root after `run --once`: four images done under two rules, one file failed."""
    base = tmp_path_factory.mktemp("report")
    root, rules = base / "retouch", base / "rules.toml"
    rules.write_text(RULES)
    save_image(root / "inbox" / "upscale" / "land.png", 400, 300, seed=1)
    save_image(root / "inbox" / "upscale" / "tall.jpg", 240, 320, seed=2, fmt="JPEG")
    save_image(root / "inbox" / "upscale" / "alpha <b>&.png", 200, 150, seed=3, mode="RGBA")
    (root / "inbox" / "upscale" / "bad.png").write_bytes(b"this is not an image")
    save_image(root / "inbox" / "shop" / "item.png", 320, 240, seed=4)
    result = cli("run", "--once", "--root", str(root), "--rules", str(rules), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"})
    assert result.returncode == 0, result.stderr
    return root, rules


def _report(root: Path, rules: Path, out: Path, *extra: str) -> str:
    result = cli("report", "--since", "1d", "-o", str(out), "--root", str(root), "--rules", str(rules), *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_report_has_pairs_steps_and_failures(done_root: tuple[Path, Path], tmp_path: Path) -> None:
    """Each finished job is a card; pairs are aligned JPEG previews of archive and output; failures carry reasons."""
    root, rules = done_root
    out = tmp_path / "report.html"
    said = _report(root, rules, out)
    assert "5 job(s) (4 done, 0 review, 1 failed), 8 preview(s)" in said
    page = out.read_text()
    cards = re.findall(r'<article class=job data-rule="([^"]+)" data-outcome="(\w+)" data-name="([^"]*)"', page)
    assert sorted(cards) == sorted([("upscale", "done", "land.png"), ("upscale", "done", "tall.jpg"),
                                    ("upscale", "done", "alpha &lt;b&gt;&amp;.png"), ("upscale", "failed", "bad.png"),
                                    ("shop", "done", "item.png")])
    assert "<b>&" not in page.replace("<b>upscale", "").replace("<b>shop", ""), "file names are escaped"
    pairs = re.findall(r'<img class=after src="([^"]+)" alt="after: ([^"]+)"><img class=before src="([^"]+)"', page)
    assert len(pairs) == PAIRS
    for after_uri, name, before_uri in pairs:
        before, after = _decode(before_uri), _decode(after_uri)
        assert before.format == after.format == "JPEG" and before.size == after.size
        assert max(before.size) == 360 and np.asarray(before).std() > 20, "previews fill the box, aligned"
        landscape = name != "tall.jpg"
        assert (before.width > before.height) == landscape
    assert "400×300 → 800×600" in page and "320×240 → 480×360" in page and "240×320 → 480×640" in page
    assert "failed in decode: not an image" in page
    assert re.search(r"<td>bad\.png</td><td>decode</td><td>1</td><td>not an image", page)
    assert "model=lanczos" in page and "scale=1.5" in page
    assert "http://" not in page and "https://" not in page, "the page loads nothing from the network"


def test_report_filters_and_external_images(done_root: tuple[Path, Path], tmp_path: Path) -> None:
    """--rule and --outcome pick jobs; --external-images writes previews beside the page, linked relatively."""
    root, rules = done_root
    shop = tmp_path / "shop.html"
    assert "1 job(s) (1 done, 0 review, 0 failed)" in _report(root, rules, shop, "--rule", "shop")
    assert shop.read_text().count("<article class=job") == 1
    failed = tmp_path / "failed.html"
    assert "1 job(s) (0 done, 0 review, 1 failed), 0 preview(s)" in _report(root, rules, failed, "--outcome",
                                                                            "failed")
    # --limit counts the jobs shown after the filters: one newest job cannot be both the shop job and the
    # failure, so a limit applied before the filters would leave one of these pages empty.
    limited = tmp_path / "limited.html"
    assert "1 job(s) (0 done, 0 review, 1 failed)" in _report(root, rules, limited, "--outcome", "failed",
                                                               "--limit", "1")
    assert "1 job(s) (1 done, 0 review, 0 failed)" in _report(root, rules, limited, "--rule", "shop", "--limit", "1")
    beside = tmp_path / "sub dir" / "ext.html"
    _report(root, rules, beside, "--external-images", "--thumb-size", "200")
    files = sorted(p.name for p in (beside.parent / "ext_files").iterdir())
    assert len(files) == 2 * PAIRS and all(name.endswith(("-before.jpg", "-after.jpg")) for name in files)
    page = beside.read_text()
    assert "data:image" not in page and 'src="ext_files/' in page
    with Image.open(beside.parent / "ext_files" / files[0]) as im:
        assert max(im.size) == 200
    bad = cli("report", "--since", "soon", "-o", str(tmp_path / "x.html"), "--root", str(root))
    assert bad.returncode == 2 and "30m, 12h, 1d" in bad.stderr


def _chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--window-size=1400,2400", *args, url],
        capture_output=True, text=True, timeout=120, check=False)


def _photo_regions(png: Path) -> list[tuple[int, int]]:
    """Sizes of the colourful regions in a screenshot: the previews (the page itself is grey)."""
    image = cv2.imread(str(png))
    assert image is not None, f"no screenshot at {png}"
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    mask = ((hsv[..., 1] > 60) & (hsv[..., 2] > 40)).astype(np.uint8)
    # Close the slider's 2-px divider so that a before/after pair counts once.
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    _n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(mask)
    return [(int(w), int(h)) for _x, _y, w, h, area in stats[1:] if area > 20_000]


@needs_chromium
def test_report_in_headless_chromium(done_root: tuple[Path, Path], tmp_path: Path) -> None:
    """Chromium loads every preview (embedded or beside the page), draws one slider per pair, and the
    #outcome filter in the address hides them all but the failure."""
    root, rules = done_root
    out = tmp_path / "report.html"
    _report(root, rules, out)
    dom = _chromium(out.as_uri(), tmp_path / "profile-1", "--dump-dom").stdout
    assert 'data-images-loaded="8"' in dom and 'data-images-broken="0"' in dom, dom[:500]

    shot = tmp_path / "all.png"
    _chromium(out.as_uri(), tmp_path / "profile-2", f"--screenshot={shot}")
    grey = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert grey.shape == (2400, 1400) and grey.std() > 20, "the screenshot is not blank"
    regions = _photo_regions(shot)
    assert len(regions) == PAIRS, regions
    assert all(w >= 300 for w, _h in regions), "each pair spans its card's width"

    filtered = tmp_path / "failed.png"
    _chromium(out.as_uri() + "#outcome=failed", tmp_path / "profile-3", f"--screenshot={filtered}")
    assert _photo_regions(filtered) == []
    dom = _chromium(out.as_uri() + "#outcome=failed", tmp_path / "profile-4", "--dump-dom").stdout
    assert '<span id="shown">1</span>' in dom

    beside = tmp_path / "ext" / "report.html"
    _report(root, rules, beside, "--external-images")
    dom = _chromium(beside.as_uri(), tmp_path / "profile-5", "--dump-dom").stdout
    assert 'data-images-loaded="8"' in dom and 'data-images-broken="0"' in dom
    shutil.rmtree(beside.parent / "report_files")
    dom = _chromium(beside.as_uri(), tmp_path / "profile-6", "--dump-dom").stdout
    assert 'data-images-broken="8"' in dom and "preview(s) failed to load" in dom


def test_card_shows_overlay_score_tile_and_device() -> None:
    """Model steps show their overlay score, tile size × count and device; other metrics go in the details."""
    job = Job(id=7, rule="catalog", rel_path="shots/a.jpg", state="archived", attempts=2, device="cuda:0",
              host="gpu1", finished_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), steps=[
                  {"op": "remove_text", "seconds": 0.84, "metrics": {"overlay_score": 0.8312, "review": True,
                                                                     "text_area": 0.031}},
                  {"op": "upscale", "seconds": 2.5, "metrics": {"tile": 256, "tiles": 6, "device": "cuda:0",
                                                                "model": "photo", "width": 800, "height": 600}}])
    entry = Entry(job, "review", before="data:image/jpeg;base64,AA", after="data:image/jpeg;base64,AA",
                  before_size=(400, 300), after_size=(800, 600))
    page = render_page([entry], {"generated": datetime.now(UTC), "since": "1d", "root": "/r", "pending": 2,
                                 "limit": 500})
    assert "<td>0.83</td>" in page and "256 px × 6" in page and "<td>cuda:0</td>" in page
    assert "text_area=0.031" in page and "model=photo" in page and "width=800" not in page
    assert "attempt 2" in page and "cuda:0@gpu1" in page and "total 3.34 s" in page
    assert 'data-outcome="review"' in page and "2 job(s) still queued or running" in page


def test_thumbnails_of_odd_images(tmp_path: Path) -> None:
    """Previews are upright, 8-bit and opaque whatever the source; unreadable or oversized files say why."""
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (80, 40), (200, 30, 30)).save(rotated, "JPEG", exif=exif.tobytes())
    thumb = thumbnail(rotated, 64, 10**8)
    assert (thumb.width, thumb.height, thumb.source_size) == (32, 64, (40, 80))

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(deep)
    grey = np.asarray(Image.open(io.BytesIO(thumbnail(deep, 64, 10**8).data)))
    assert abs(float(grey.mean()) - 40000 / 65535 * 255) < 3

    clear = tmp_path / "clear.png"
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(clear)
    board = np.asarray(Image.open(io.BytesIO(thumbnail(clear, 32, 10**8).data)))
    assert board.min() > 200, "transparency shows as a light checkerboard, not black"

    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(NoPreview, match="not a readable image"):
        thumbnail(tmp_path / "junk.png", 64, 10**8)
    with pytest.raises(NoPreview, match=r"over limits\.max_input_pixels"):
        thumbnail(deep, 64, 100)
    with pytest.raises(NoPreview, match="no longer exists"):
        thumbnail(tmp_path / "gone.png", 64, 10**8)


def test_truncated_upload_gets_a_partial_preview_and_its_size(tmp_path: Path) -> None:
    """A JPEG cut short still shows the part that decodes, and its size from the header; a file that does not
    decode at all still shows the size its header declares."""
    from retouchd.commands.report import header_size

    full = io.BytesIO()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)  # noise: the file is large, cut mid-scan
    pixels[:, :80] = 0  # and a black left half, which survives the downscale
    Image.fromarray(pixels).save(full, "JPEG", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    thumb = thumbnail(cut, 64, 10**8)
    assert thumb.partial and thumb.source_size == (160, 120) and (thumb.width, thumb.height) == (64, 48)
    top = np.asarray(Image.open(io.BytesIO(thumb.data)))[:8]
    assert top.std() > 30, "the decoded top of the image is there, not a grey box"
    header_only = tmp_path / "header.jpg"
    header_only.write_bytes(full.getvalue()[:700])  # the markers before the scan: SOF (the size), tables
    assert header_size(header_only) == (160, 120)


def test_slider_starts_at_the_change_and_the_pair_opens_full_size(tmp_path: Path) -> None:
    """The slider starts over the changed region (here the right quarter), the card links the full-size
    files, and the page offers a difference view."""
    from retouchd.commands.report import ImageSink, build_entry

    base = np.full((60, 80, 3), 120, np.uint8)
    changed = base.copy()
    changed[:, 60:70] = 250
    original, output = tmp_path / "archive" / "a.png", tmp_path / "outbox" / "a.png"
    for path, pixels in ((original, base), (output, changed)):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    job = Job(id=3, rule="r", rel_path="a.png", state="archived", attempts=1, archive_path=str(original),
              output_path=str(output), steps=[], finished_at=datetime(2026, 1, 2, tzinfo=UTC))
    page_path = tmp_path / "report.html"
    entry = build_entry(job, "done", ImageSink(None, page_path), 80, 10**8)
    assert 75 < entry.start < 90, entry.start
    assert (entry.before_full, entry.after_full) == ("archive/a.png", "outbox/a.png")
    page = render_page([entry], {"generated": datetime.now(UTC), "since": "1d", "root": "/r", "pending": 0,
                                 "limit": 500})
    assert f"--pos:{entry.start:g}%" in page and f"value={entry.start:g} " in page
    assert 'data-before="archive/a.png" data-after="outbox/a.png"' in page
    assert "<option value=diff>difference</option>" in page and "<div id=zoom hidden>" in page
