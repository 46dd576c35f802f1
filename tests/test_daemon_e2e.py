"""End-to-end: the real `retouchd run` process on a temporary root, files dropped in as users do."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

from PIL import Image

from conftest import db_rows, files_under, save_image, sha256, wait_for


def _archived(root: Path, n: int) -> bool:
    rows = db_rows(root)
    return len(rows) >= n and all(r["state"] == "archived" for r in rows)


def test_drop_copy_slow_write_and_part_rename(root: Path, tmp_path: Path, daemon) -> None:
    """Copied, slowly written and renamed-in files are each processed once; SIGTERM exits 0."""
    src = tmp_path / "src"
    originals = {name: save_image(src / name, 80, 60, seed=i) for i, name in enumerate(["a.png", "slow.png", "x.png"])}
    proc = daemon()
    inbox = root / "inbox" / "upscale"

    shutil.copy(originals["a.png"], inbox / "a.png")

    # A scanner writing slowly with pauses shorter than the settle time: never taken half-written.
    data = originals["slow.png"].read_bytes()
    seen_early: list[list[dict]] = []

    def slow_write() -> None:
        with open(inbox / "slow.png", "wb") as fh:
            for i in range(0, len(data), max(1, len(data) // 8)):
                fh.write(data[i:i + max(1, len(data) // 8)])
                fh.flush()
                time.sleep(0.2)
                seen_early.append([r for r in db_rows(root) if r["rel_path"] == "slow.png"])

    writer = threading.Thread(target=slow_write)
    writer.start()
    # A browser-style download: written as .part (ignored), then renamed into place.
    part = inbox / "x.png.part"
    shutil.copy(originals["x.png"], part)
    time.sleep(1.0)
    assert not [r for r in db_rows(root) if r["rel_path"].endswith(".part")]
    os.rename(part, inbox / "x.png")
    writer.join()

    wait_for(lambda: _archived(root, 3), timeout=60)
    assert all(not rows for rows in seen_early), "slow.png was queued while still being written"
    rows = {r["rel_path"]: r for r in db_rows(root)}
    assert set(rows) == {"a.png", "slow.png", "x.png"}
    for name, original in originals.items():
        out = root / "outbox" / "upscale" / name
        with Image.open(out) as im:
            assert im.size == (160, 120)
        row = rows[name]
        assert row["output_sha256"] == sha256(out)
        archived = Path(row["archive_path"])
        assert archived.parent.parent == root / "archive" / "upscale"
        assert sha256(archived) == sha256(original) == row["sha256"]
        assert row["attempts"] == 1
    assert files_under(inbox) == []
    assert not [p for p in files_under(root / "outbox") if p.name.startswith(".")]
    assert proc.stop(signal.SIGTERM) == 0


def test_poll_mode_without_inotify(root: Path, tmp_path: Path, daemon) -> None:
    """With events off (watch.mode = poll, long rescan), polling alone finds new files."""
    proc = daemon(env={"RETOUCHD_WATCH__MODE": "poll", "RETOUCHD_WATCH__RESCAN_INTERVAL": "3600"})
    save_image(tmp_path / "p.png")
    shutil.copy(tmp_path / "p.png", root / "inbox" / "upscale" / "p.png")
    wait_for(lambda: _archived(root, 1), timeout=30)
    assert any(line.get("mode") == "poll" for line in proc.log_lines() if line.get("event") == "watching inbox")
    assert (root / "outbox" / "upscale" / "p.png").exists()
    assert proc.stop() == 0


def test_same_content_twice_and_name_collision(root: Path, tmp_path: Path, daemon) -> None:
    """The same bytes under a new name are archived as a duplicate, not processed again; a new file with a
    taken output name gets a ' (2)' suffix instead of overwriting."""
    proc = daemon()
    inbox = root / "inbox" / "upscale"
    save_image(tmp_path / "one.png", seed=1)
    shutil.copy(tmp_path / "one.png", inbox / "one.png")
    wait_for(lambda: _archived(root, 1))
    shutil.copy(tmp_path / "one.png", inbox / "copy-of-one.png")
    wait_for(lambda: not (inbox / "copy-of-one.png").exists())
    assert len(db_rows(root)) == 1
    save_image(inbox / "sub" / "one.png", seed=2)
    (root / "outbox" / "upscale" / "sub").mkdir(parents=True, exist_ok=True)
    save_image(root / "outbox" / "upscale" / "sub" / "one.png", seed=3)
    wait_for(lambda: _archived(root, 2))
    assert (root / "outbox" / "upscale" / "sub" / "one (2).png").exists()
    assert len(files_under(root / "outbox")) == 3
    assert proc.stop() == 0
