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


SCANS_RULE = """
[[rule]]
name = "scans"
inbox = "scans"
match = ["*.tif", "*.tiff"]
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]
output = { format = "png" }
"""


def test_folders_match_recursion_and_quiet_pipes(tmp_path: Path) -> None:
    """A folder gives its files the rule matches (subfolders with --recursive, relative paths kept so that two
    `a.tif` do not collide); a named file the rule does not match is refused unless --any-name; piped, stderr
    holds one line per problem file and no log lines unless --log-format asks for them."""
    rules = tmp_path / "rules.toml"
    rules.write_text(SCANS_RULE)
    src = tmp_path / "src"
    save_image(src / "a.tif", 16, 12, fmt="TIFF")
    save_image(src / "sub" / "a.tif", 20, 10, fmt="TIFF")
    save_image(src / "photo.jpg", 16, 12, fmt="JPEG")
    save_image(src / "a.mask.png", 16, 12)
    out = tmp_path / "out"
    base = ("--rule", "scans", "--out", str(out), "--rules", str(rules), "--root", str(tmp_path / "root"))

    flat = cli("process", str(src), *base)
    assert flat.returncode == 0, flat.stderr
    assert flat.stderr == "" and len(flat.stdout.strip().splitlines()) == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.png"]

    deep = cli("process", str(src), "--recursive", *base)
    assert deep.returncode == 0, deep.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.png", "sub/a.png"]
    with Image.open(out / "sub" / "a.png") as im:
        assert im.size == (40, 20)

    refused = cli("process", str(src / "photo.jpg"), *base)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"SKIPPED {src / 'photo.jpg'}: rule 'scans' does not match it "
                                      "(*.tif, *.tiff); --any-name runs it anyway")
    forced = cli("process", str(src / "photo.jpg"), "--any-name", *base)
    assert forced.returncode == 0 and (out / "photo.png").exists()

    logged = cli("process", str(src / "a.tif"), "--log-format", "json", "--log-level", "debug", *base)
    assert logged.returncode == 0 and '"event": "step done"' in logged.stderr


def test_two_inputs_of_one_name_do_not_overwrite(tmp_path: Path) -> None:
    """`process x/a.png y/a.png` writes a.png and a (2).png: the first result is not lost."""
    first = save_image(tmp_path / "x" / "a.png", 10, 10)
    second = save_image(tmp_path / "y" / "a.png", 12, 12, seed=1)
    out = tmp_path / "out"
    result = cli("process", str(first), str(second), "--rule", "upscale", "--out", str(out),
                 "--root", str(tmp_path / "root"))
    assert result.returncode == 0, result.stderr
    with Image.open(out / "a.png") as a, Image.open(out / "a (2).png") as b:
        assert (a.size, b.size) == ((20, 20), (24, 24))
