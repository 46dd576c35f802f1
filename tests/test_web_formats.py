"""Phone formats: HEIC/HEIF (pillow-heif) and AVIF are matched by default; `format = "same"` makes HEIC a JPEG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouchd.commands.process import process_files
from retouchd.images import OutputSpec, decode, output_format, output_name
from retouchd.rules import DEFAULT_MATCH, Rule, load_rules
from retouchd.settings import load_settings

from conftest import photo

pillow_heif = pytest.importorskip("pillow_heif")


def encoded(fmt: str, width: int = 64, height: int = 48) -> bytes:
    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.fromarray(photo(width, height)).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "same_as", "extension"), [("HEIF", "JPEG", ".jpg"), ("AVIF", "PNG", ".png")])
def test_heic_and_avif_decode_with_real_pixels(fmt: str, same_as: str, extension: str) -> None:
    """The decoded pixels match the photo (lossy, so within a tolerance); "same" picks a format viewers read."""
    data = encoded(fmt)
    decoded = decode(data, max_pixels=10**7)
    pixels = decoded.frame.rgb
    assert pixels.shape == (48, 64, 3)
    assert float(np.abs(pixels.astype(int) - photo(64, 48).astype(int)).mean()) < 12
    assert decoded.info.format == fmt
    assert output_format(decoded.info, OutputSpec()) == same_as
    assert output_name("IMG_0001.HEIC" if fmt == "HEIF" else "a.avif", decoded.info, OutputSpec()).endswith(extension)


def test_default_match_takes_phone_formats(tmp_path: Path) -> None:
    """The default match and the shipped default rule take .heic, .heif and .avif (any case)."""
    rule = Rule(name="r", inbox="r", steps=[{"op": "upscale", "scale": 2}])  # type: ignore[list-item]
    assert rule.match == DEFAULT_MATCH
    shipped = load_rules(None).rules[0]
    for name in ("IMG_0001.HEIC", "a.heif", "b.avif"):
        assert rule.matches(name) and shipped.matches(name)


def test_process_turns_a_heic_into_a_jpeg(tmp_path: Path) -> None:
    """`retouchd process` on a HEIC with format "same": a JPEG twice the size comes out."""
    source = tmp_path / "IMG_0001.HEIC"
    source.write_bytes(encoded("HEIF"))
    rule = Rule(name="r", inbox="r", steps=[{"op": "upscale", "scale": 2, "model": "lanczos"}])  # type: ignore[list-item]
    settings = load_settings(env=False, root=tmp_path / "root")
    assert process_files(settings, rule, [source], tmp_path / "out") == 0
    outputs = list((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == ["IMG_0001.jpg"]
    with Image.open(outputs[0]) as im:
        assert (im.format, im.size) == ("JPEG", (128, 96))
