"""Where a settings file's paths point, and read-only commands that never create a root (issue 12, item 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retouchd.settings import load_settings

from conftest import FAST_ENV


def test_relative_paths_in_a_settings_file_resolve_against_its_folder(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`root = "photos"` in /etc/x/retouchd.toml means /etc/x/photos, wherever the command runs; a flag
    still resolves against the working directory."""
    conf_dir, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf_dir.mkdir()
    elsewhere.mkdir()
    config = conf_dir / "retouchd.toml"
    config.write_text('root = "photos"\nstate_dir = "var/state"\nrule_files = ["rules.toml"]\n'
                      'archive_dir = "/abs/archive"\n')
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("RETOUCHD_ROOT", raising=False)
    s = load_settings(config)
    assert s.root == conf_dir / "photos" and s.inbox == conf_dir / "photos" / "inbox"
    assert s.state == conf_dir / "var" / "state" and s.rule_files == [conf_dir / "rules.toml"]
    assert s.archive == Path("/abs/archive")
    assert load_settings(config, root=Path("here")).root.absolute() == elsewhere / "here"


@pytest.mark.parametrize("args", [["status", "--once"], ["history"], ["retry", "--failed"],
                                  ["report", "--output", "r.html"]])
def test_read_only_commands_never_create_a_root(tmp_path: Path, args: list[str]) -> None:
    """status, history, retry and report on a folder with no retouchd root say so and exit 2, creating
    nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETOUCHD_")}
    result = subprocess.run([sys.executable, "-m", "retouchd", *args], capture_output=True, text=True,
                            env={**env, **FAST_ENV}, cwd=tmp_path, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert f"no retouchd root at {tmp_path / 'retouch'}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
