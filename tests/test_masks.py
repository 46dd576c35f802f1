"""Sidecar masks, regions and dilation (retouchd.masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouchd import masks
from retouchd.exceptions import InputError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("photo.mask.png", True),
        ("photo_mask.png", True),
        ("PHOTO.MASK.PNG", True),
        ("a.b.mask.png", True),
        ("photo.png", False),
        ("photo.mask.jpg", False),
        ("mask.png", False),
        (".mask.png", False),
        ("photomask.png", False),
    ],
)
def test_is_sidecar(name: str, expected: bool) -> None:
    """Only `<stem>.mask.png` and `<stem>_mask.png` names (any case) are sidecars."""
    assert masks.is_sidecar(name) is expected


def test_find_sidecar_prefers_dot_mask(tmp_path: Path) -> None:
    """Both spellings are found beside the image; `.mask.png` wins when both exist."""
    image = tmp_path / "shot.v2.jpg"
    image.write_bytes(b"x")
    assert masks.find_sidecar(image) is None
    (tmp_path / "shot.v2_mask.png").write_bytes(b"m")
    assert masks.find_sidecar(image) == tmp_path / "shot.v2_mask.png"
    (tmp_path / "shot.v2.mask.png").write_bytes(b"m")
    assert masks.find_sidecar(image) == tmp_path / "shot.v2.mask.png"


def test_find_sidecar_ignores_symlinks(tmp_path: Path) -> None:
    """A sidecar name that is a symbolic link (possibly leading outside the inbox) is not used."""
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"m")
    image = tmp_path / "inbox" / "a.jpg"
    image.parent.mkdir()
    image.write_bytes(b"x")
    (tmp_path / "inbox" / "a.mask.png").symlink_to(outside)
    assert masks.find_sidecar(image) is None


def test_find_sidecar_ignores_directories(tmp_path: Path) -> None:
    """A folder that happens to have a sidecar's name is not a sidecar."""
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    (tmp_path / "a.mask.png").mkdir()
    assert masks.find_sidecar(image) is None


def test_load_sidecar_resizes_nearest(tmp_path: Path) -> None:
    """A mask at twice the image size maps back to exactly the same pixels."""
    small = np.zeros((10, 16), dtype=bool)
    small[2:5, 3:9] = True
    big = np.kron(small, np.ones((2, 2), dtype=bool))
    path = tmp_path / "a.mask.png"
    Image.fromarray(big.astype(np.uint8) * 255).save(path)
    loaded = masks.load_sidecar(path, 16, 10)
    assert loaded.shape == (10, 16)
    assert np.array_equal(loaded, small)


def test_load_sidecar_rgb_threshold_and_alpha(tmp_path: Path) -> None:
    """Grey ≥ 128 counts as white; transparent pixels count as black whatever their colour."""
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[0, :, 3] = 255
    rgba[1, :, :3] = 127
    rgba[1, :, 3] = 255
    path = tmp_path / "a.mask.png"
    Image.fromarray(rgba, "RGBA").save(path)
    loaded = masks.load_sidecar(path, 4, 4)
    assert loaded.sum() == 4
    assert loaded[0].all()


def test_load_sidecar_all_black_is_empty(tmp_path: Path) -> None:
    """An all-black sidecar means there is nothing to remove."""
    path = tmp_path / "a_mask.png"
    Image.new("L", (30, 20), 0).save(path)
    assert not masks.load_sidecar(path, 60, 40).any()


def test_load_sidecar_corrupt_is_permanent(tmp_path: Path) -> None:
    """A sidecar that is not an image fails permanently, naming the file."""
    path = tmp_path / "a.mask.png"
    path.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match=r"a\.mask\.png") as info:
        masks.load_sidecar(path, 4, 4)
    assert info.value.permanent


def test_region_box_pixels_and_percent() -> None:
    """Percentages are of the width for x and w, of the height for y and h; boxes clip to the image."""
    assert masks.region_box((10, 5, 20, 8), 100, 50) == (10, 5, 30, 13)
    assert masks.region_box(("10%", "20%", "50%", "10%"), 200, 100) == (20, 20, 120, 30)
    assert masks.region_box((90, 40, 50, 50), 100, 50) == (90, 40, 100, 50)
    assert masks.region_box((150, 10, 5, 5), 100, 50) == (100, 10, 100, 15)


def test_regions_mask_union() -> None:
    """Overlapping regions form their union."""
    mask = masks.regions_mask([(0, 0, 10, 10), (5, 5, 10, 10)], 40, 30)
    assert int(mask.sum()) == 100 + 100 - 25


@pytest.mark.parametrize("bad", [(-1, 0, 5, 5), ("abc", 0, 5, 5), ("101%", 0, 5, 5), (0, 0, 5), (True, 0, 1, 1)])
def test_validate_region_rejects(bad: tuple[object, ...]) -> None:
    """Negative, non-numeric, over-100 % and wrongly sized regions are refused with a reason."""
    with pytest.raises(ValueError, match=r"length|region|100%"):
        masks.validate_region(bad)  # type: ignore[arg-type]


def test_dilate_is_a_disc() -> None:
    """One pixel grown by 3 px covers the 29 lattice points within distance 3."""
    mask = np.zeros((21, 21), dtype=bool)
    mask[10, 10] = True
    grown = masks.dilate(mask, 3)
    assert int(grown.sum()) == 29
    assert masks.dilate(mask, 0) is mask


def test_components_counts_parts() -> None:
    """Diagonal neighbours join a part (8-connectivity); an empty mask has none."""
    mask = np.zeros((10, 10), dtype=bool)
    mask[1, 1] = mask[2, 2] = True
    mask[7:9, 7:9] = True
    assert masks.components(mask) == 2
    assert masks.components(np.zeros((3, 3), dtype=bool)) == 0


def test_box_around_is_the_bounding_box_grown_and_clipped() -> None:
    mask = np.zeros((20, 30), bool)
    mask[5, 7] = mask[9, 12] = True
    assert masks.box_around(mask, 2) == (slice(3, 12), slice(5, 15))
    # Clipped at the image's edges, never negative (a negative start would slice from the other end).
    assert masks.box_around(mask, 8) == (slice(0, 18), slice(0, 21))
    mask[19, 29] = True
    assert masks.box_around(mask, 4) == (slice(1, 20), slice(3, 30))
    assert masks.box_around(np.zeros((4, 4), bool), 3) is None


def test_box_around_takes_a_torch_mask_alike() -> None:
    torch = pytest.importorskip("torch")
    mask = np.zeros((16, 16), bool)
    mask[2:4, 10] = True
    assert masks.box_around(torch.from_numpy(mask), 1) == masks.box_around(mask, 1) == (slice(1, 5), slice(9, 12))
    assert masks.box_around(torch.zeros(3, 3, dtype=torch.bool), 1) is None
