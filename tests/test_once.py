"""`retouchd run --once` on a mixed inbox: every good file done, every bad one failed with a reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import cli, db_rows, files_under, png_bomb, save_image, sha256


def _exif_rotated_jpeg(path: Path) -> None:
    image = Image.fromarray(np.zeros((30, 50, 3), np.uint8) + 128)  # 50 wide, 30 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: upright it is 30 wide, 50 high
    image.save(path, "JPEG", exif=exif.tobytes())


def test_once_mixed_inbox(root: Path) -> None:
    """Valid, nested, unicode, rotated, CMYK, 16-bit, alpha, 1×1 and misnamed files are processed; zero-byte,
    truncated, garbage, PDF and a PNG bomb go to failed/ with a reason; temp and system names stay put."""
    inbox = root / "inbox" / "upscale"
    good = {
        "plain.png": save_image(inbox / "plain.png"),
        "deep/er/nested.jpg": save_image(inbox / "deep/er/nested.jpg", fmt="JPEG"),
        "café ☕ 写真.png": save_image(inbox / "café ☕ 写真.png", seed=3),
        "cmyk.jpg": save_image(inbox / "cmyk.jpg", fmt="JPEG", mode="CMYK", seed=4),
        "alpha.png": save_image(inbox / "alpha.png", mode="RGBA", seed=5),
        "tiny.png": save_image(inbox / "tiny.png", 1, 1),
        "misnamed.png": save_image(inbox / "misnamed.png", fmt="JPEG", seed=6),
        "scan.tif": save_image(inbox / "scan.tif", seed=7),
    }
    _exif_rotated_jpeg(inbox / "rotated.jpg")
    good["rotated.jpg"] = inbox / "rotated.jpg"
    Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).save(inbox / "deep16.png")
    good["deep16.png"] = inbox / "deep16.png"
    hashes = {name: sha256(path) for name, path in good.items()}

    jpeg = (root / "x.jpg")
    save_image(jpeg, 200, 150, fmt="JPEG")
    bad = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2],
        "garbage.png": bytes(range(256)) * 8,
        "doc.png": b"%PDF-1.7\n" + b"0" * 100,
        "bomb.png": png_bomb(),
    }
    for name, data in bad.items():
        (inbox / name).write_bytes(data)
    untouched = ["dl.jpg.part", "x.tmp", "~$draft.png", ".hidden.png", "Thumbs.db", "f.crdownload",
                 "@eaDir/thumb.jpg", "#recycle/old.png", ".~lock.a.png#"]
    for name in untouched:
        save_image(inbox / name, fmt="PNG")

    result = cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"})
    assert result.returncode == 0, result.stderr

    rows = {r["rel_path"]: r for r in db_rows(root)}
    for name in good:
        assert rows[name]["state"] == "archived", (name, rows[name]["error"])
        assert sha256(Path(rows[name]["archive_path"])) == hashes[name]
    out = root / "outbox" / "upscale"
    with Image.open(out / "rotated.jpg") as im:
        assert im.size == (60, 100)  # upright (30×50) then ×2
    with Image.open(out / "deep16.png") as im:
        assert im.mode.startswith("I") and im.size == (80, 60)
    with Image.open(out / "alpha.png") as im:
        assert im.mode == "RGBA"
    with Image.open(out / "misnamed.jpg") as im:
        assert im.format == "JPEG"
    with Image.open(out / "tiny.png") as im:
        assert im.size == (2, 2)
    assert (out / "deep/er/nested.jpg").exists() and (out / "café ☕ 写真.png").exists()

    failed = root / "failed" / "upscale"
    for name, data in bad.items():
        assert rows[name]["state"] == "failed"
        assert (failed / name).read_bytes() == data
        report = json.loads((failed / f"{name}.error.json").read_text())
        assert report["reason"] and report["attempts"] == 1 and report["job_id"] == rows[name]["id"]
    assert "empty" in rows["empty.jpg"]["error"]
    assert "PDF" in rows["doc.png"]["error"]
    assert "pixels" in rows["bomb.png"]["error"]
    assert "truncated" in rows["truncated.jpg"]["error"].lower()

    left = {p.relative_to(inbox).as_posix() for p in files_under(inbox)}
    assert left == set(untouched)
    assert len(rows) == len(good) + len(bad)


def test_hostile_names(root: Path) -> None:
    """Names with invalid UTF-8 bytes, newlines and backslashes are processed like any other, and a file
    that is a symlink (to outside the inbox) is never read: the link itself goes to failed/ with the reason."""
    inbox = root / "inbox" / "upscale"
    names = [os.fsdecode(b"bad\xffbyte.png"), "new\nline.png", "back\\slash.png", "x" * 200 + ".png"]
    for i, name in enumerate(names):
        save_image(inbox / name, seed=i)
    secret = root / "secret.png"
    save_image(secret, seed=9)
    (inbox / "link.png").symlink_to(secret)
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 0
    for name in names:
        assert (root / "outbox" / "upscale" / name).exists(), repr(name)
    rows = db_rows(root)
    assert sorted(r["state"] for r in rows) == ["archived"] * len(names) + ["failed"]
    [link] = [r for r in rows if r["state"] == "failed"]
    assert link["rel_path"] == "link.png" and "symbolic link" in link["error"]
    assert (root / "failed" / "upscale" / "link.png").is_symlink() and secret.exists()


def test_failed_content_dropped_again_is_retried(root: Path) -> None:
    """Dropping the bytes of a failed file again retries that job (attempts start over) instead of being
    swallowed as a duplicate; both copies end in failed/ when the content is still bad."""
    inbox = root / "inbox" / "upscale"
    inbox.mkdir(parents=True)
    (inbox / "bad.png").write_bytes(b"not an image at all")
    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    (inbox / "bad.png").write_bytes(b"not an image at all")
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    (row,) = db_rows(root)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert sorted(p.name for p in (root / "failed" / "upscale").iterdir()) == [
        "bad (2).png", "bad (2).png.error.json", "bad.png", "bad.png.error.json"]
