"""Waiting for late masks and noticing masks without an image (retouchd.sidecarwait), on a fake clock."""

from __future__ import annotations

from pathlib import Path

from retouchd.sidecarwait import SidecarWaits, has_image, image_stem


def test_image_is_held_until_the_wait_is_over(tmp_path: Path) -> None:
    """hold() says wait while the time lasts, then lets the image go (once), and the snapshot counts down."""
    now = [100.0]
    waits = SidecarWaits(10.0, clock=lambda: now[0])
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    assert waits.hold("objects", image)
    now[0] += 4
    assert waits.hold("objects", image)
    assert waits.snapshot()["awaiting_sidecar"] == [{"rule": "objects", "path": str(image), "left": 6.0}]
    now[0] += 6
    assert not waits.hold("objects", image)
    assert waits.snapshot()["awaiting_sidecar"] == []
    assert waits.hold("objects", image), "a new arrival of the same name waits again"
    waits.release(image)
    assert waits.snapshot()["awaiting_sidecar"] == []


def test_mask_without_image_becomes_an_orphan_after_the_wait(tmp_path: Path) -> None:
    """A mask is an orphan only after the wait, and stops being one when its image arrives."""
    now = [0.0]
    waits = SidecarWaits(5.0, clock=lambda: now[0])
    mask = tmp_path / "Shot 1.MASK.png"
    mask.write_bytes(b"m")
    waits.saw_mask("objects", mask)
    assert waits.orphans() == []
    now[0] = 5.0
    assert waits.orphans() == [("objects", mask, 5.0)]
    (tmp_path / "Shot 1.tif").write_bytes(b"i")
    assert has_image(mask) and waits.orphans() == []


def test_image_stem_and_other_masks_are_not_images(tmp_path: Path) -> None:
    """`a_mask.png` names image `a`; another mask with the same stem is not its image."""
    assert image_stem("a_mask.png") == "a" and image_stem("b.c.mask.png") == "b.c"
    mask = tmp_path / "a.mask.png"
    mask.write_bytes(b"m")
    (tmp_path / "a_mask.png").write_bytes(b"m")
    assert not has_image(mask)


def test_history_lists_orphan_masks_of_running_daemons() -> None:
    """`history` ends with the masks that running daemons report without an image; a stopped daemon's
    report is not believed."""
    from retouchd.commands.history import orphan_lines

    running = {"running": True, "orphan_masks": [{"rule": "objects", "path": "/in/objects/a.mask.png", "age": 40}]}
    stopped = {"running": False, "orphan_masks": [{"rule": "objects", "path": "/in/objects/old.mask.png"}]}
    lines = orphan_lines([running, stopped])
    assert lines[1].startswith("1 mask(s) without an image")
    assert lines[2:] == ["  /in/objects/a.mask.png  (rule objects)"]
    assert orphan_lines([stopped]) == []
