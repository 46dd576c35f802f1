"""Sidecar masks through the real daemon: used by remove_objects, never processed as images, archived
with their image, and a missing one is a clear permanent failure."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from retouchd.statusfile import read_statuses

from conftest import DaemonProcess, cli, db_rows, files_under, sha256, wait_for

RULES = """[[rule]]
name = "objects"
inbox = "objects"
steps = [{ op = "remove_objects", mask = "sidecar", dilate = 2, engine = "telea" }]
"""


def _scene(path: Path, blue: int = 90) -> np.ndarray:
    y, x = np.mgrid[0:60, 0:80]
    rgb = np.stack([x * 3, y * 4, np.full_like(x, blue)], axis=-1).astype(np.uint8)
    dirty = rgb.copy()
    dirty[20:35, 30:50] = (255, 0, 255)  # the object to remove
    Image.fromarray(dirty).save(path)
    return rgb


def test_sidecar_mask_removes_object_and_is_archived_with_image(root: Path, tmp_path: Path) -> None:
    """`x.mask.png` beside `x.png` drives the fill; the mask gets no job and is archived beside its image."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    inbox = root / "inbox" / "objects"
    inbox.mkdir(parents=True)
    clean = _scene(inbox / "shot.png")
    mask = np.zeros((60, 80), np.uint8)
    mask[20:35, 30:50] = 255
    Image.fromarray(mask).save(inbox / "shot.mask.png")
    _scene(inbox / "nomask.png", blue=40)
    mask_hash = sha256(inbox / "shot.mask.png")
    result = cli("run", "--once", "--root", str(root), "--rules", str(rules),
                 env={"RETOUCHD_WATCH__SETTLE_TIME": "0", "RETOUCHD_WATCH__SIDECAR_WAIT": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["rel_path"]: r for r in db_rows(root)}
    assert set(rows) == {"shot.png", "nomask.png"}, "the sidecar must not become a job"
    assert rows["shot.png"]["state"] == "archived"
    out = np.asarray(Image.open(root / "outbox" / "objects" / "shot.png").convert("RGB")).astype(int)
    hole = out[20:35, 30:50]
    assert np.abs(hole - np.array([255, 0, 255])).sum(axis=-1).min() > 150, "magenta object still visible"
    assert np.abs(hole - clean[20:35, 30:50]).mean() < 40
    archived = {p.name: p for p in files_under(root / "archive")}
    assert sha256(archived["shot.mask.png"]) == mask_hash
    assert rows["nomask.png"]["state"] == "failed" and "mask" in rows["nomask.png"]["error"]
    report = json.loads((root / "failed" / "objects" / "nomask.png.error.json").read_text())
    assert report["step"] == "remove_objects" and report["attempts"] == 1
    assert files_under(inbox) == []


def test_same_photo_with_another_mask_is_new_work(root: Path, tmp_path: Path) -> None:
    """The same image bytes with a different sidecar mask are processed again, not treated as a duplicate."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    inbox = root / "inbox" / "objects"
    inbox.mkdir(parents=True)
    for name, box in (("a", (20, 35, 30, 50)), ("b", (5, 15, 5, 20))):
        _scene(inbox / f"{name}.png")
        mask = np.zeros((60, 80), np.uint8)
        mask[box[0]:box[1], box[2]:box[3]] = 255
        Image.fromarray(mask).save(inbox / f"{name}.mask.png")
    result = cli("run", "--once", "--root", str(root), "--rules", str(rules), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = db_rows(root)
    assert sorted(r["rel_path"] for r in rows) == ["a.png", "b.png"] and {r["state"] for r in rows} == {"archived"}
    assert rows[0]["sha256"] == rows[1]["sha256"] and rows[0]["content_key"] != rows[1]["content_key"]


def test_late_mask_is_waited_for_and_an_orphan_mask_is_reported(
    root: Path, tmp_path: Path, daemon: Callable[..., DaemonProcess]
) -> None:
    """A mask written 3 s after its image is still used (the status file says the image waits for it); a mask
    without an image is listed as an orphan once watch.sidecar_wait has passed."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    inbox = root / "inbox" / "objects"
    inbox.mkdir(parents=True)
    proc = daemon("--rules", str(rules), env={"RETOUCHD_WATCH__SETTLE_TIME": "0.2",
                                               "RETOUCHD_WATCH__SIDECAR_WAIT": "8", "RETOUCHD_LOG__FORMAT": "json"})
    _scene(inbox / "late.png")
    mask = np.zeros((60, 80), np.uint8)
    mask[20:35, 30:50] = 255
    Image.fromarray(mask).save(inbox / "lonely.mask.png")

    def status() -> dict[str, Any]:
        found = read_statuses(root / "state")
        return found[0] if found else {}

    waiting = wait_for(lambda: status().get("awaiting_sidecar"), timeout=30)
    assert waiting[0]["rule"] == "objects" and waiting[0]["path"].endswith("late.png")
    assert 0 < waiting[0]["left"] <= 8
    time.sleep(3)
    Image.fromarray(mask).save(inbox / "late.mask.png")
    wait_for(lambda: any(r["state"] == "archived" for r in db_rows(root)), timeout=60)
    row = db_rows(root)[0]
    assert row["rel_path"] == "late.png" and row["error"] is None
    out = np.asarray(Image.open(root / "outbox" / "objects" / "late.png").convert("RGB")).astype(int)
    assert np.abs(out[20:35, 30:50] - np.array([255, 0, 255])).sum(axis=-1).min() > 150, "mask not used"
    orphans = wait_for(lambda: status().get("orphan_masks"), timeout=30)
    assert [o["path"] for o in orphans] == [str(inbox / "lonely.mask.png")]
    assert not status().get("awaiting_sidecar")
    assert proc.stop() == 0
    assert any(line.get("event", "").startswith("sidecar mask without an image") for line in proc.log_lines())


def test_a_retried_failure_takes_its_sidecar_back_and_drops_its_reason(tmp_path: Path) -> None:
    """Sending a failed file back to its inbox moves its sidecar mask back beside it (same name, nothing
    overwritten) and removes its `.error.json`; an unrelated file in failed/ stays."""
    from retouchd.archive import error_json_path, return_companions

    inbox, failed = tmp_path / "inbox", tmp_path / "failed"
    inbox.mkdir()
    failed.mkdir()
    image = failed / "cat.png"
    image.write_bytes(b"img")
    (failed / "cat.mask.png").write_bytes(b"mask")
    error_json_path(image).write_text("{}")
    (failed / "other.mask.png").write_bytes(b"not ours")
    (inbox / "cat.mask.png").write_bytes(b"a newer mask")  # already back: the returned one gets a new name
    return_companions(image, str(inbox / "cat.mask.png"))
    assert sorted(p.name for p in failed.iterdir()) == ["cat.png", "other.mask.png"]
    assert sorted(p.read_bytes() for p in inbox.iterdir()) == [b"a newer mask", b"mask"]
