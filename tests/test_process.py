"""`retouchd process` in the foreground: progress bars on a terminal, plain lines in a pipe."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from conftest import cli, save_image
from tests_support.terminal import run_in_pty, strip_ansi

TILED_RULE = """
[[rule]]
name = "tiled"
inbox = "tiled"
steps = [{ op = "upscale", scale = 2, model = "fast", tile = 32 }]
"""


def test_progress_bars_on_a_terminal_and_plain_lines_in_a_pipe(tmp_path: Path) -> None:
    """On a terminal the overall bar counts files and the current file's bar counts tiles (2×2 of 32 px);
    result lines print above the bars. Piped, each file is one plain line without escape sequences."""
    rules = tmp_path / "rules.toml"
    rules.write_text(TILED_RULE)
    image = save_image(tmp_path / "in" / "photo.png", 64, 64)
    out = tmp_path / "out"
    args = ("process", str(image), str(tmp_path / "in" / "missing.png"), "--rule", "tiled", "--out", str(out),
            "--rules", str(rules), "--root", str(tmp_path / "root"))
    code, raw = run_in_pty(*args)
    assert code == 1, raw
    text = strip_ansi(raw)
    assert re.search(r"photo\.png · upscale [━╺╸ ]+ [1-4]/4 ", text), text[-2000:]
    assert "files" in text and "2/2" in text and "━" in text
    assert f"{image} → {out / 'photo.png'}" in text and "FAILED" in text and "missing.png: not a file" in text
    with Image.open(out / "photo.png") as im:
        assert im.size == (128, 128)

    piped = cli(*args)
    assert piped.returncode == 1
    [line] = piped.stdout.strip().splitlines()
    assert line.startswith(f"{image} → {out / 'photo.png'} (") and line.endswith(" s)")
    assert "\x1b[" not in piped.stdout and "━" not in piped.stderr
    assert f"FAILED {tmp_path / 'in' / 'missing.png'}: not a file" in piped.stderr
