"""Settings precedence (flags > env > TOML > defaults) and one clear line for invalid values."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouchd.exceptions import ConfigError
from retouchd.settings import load_settings

from conftest import cli


def test_defaults_and_layout(tmp_path: Path) -> None:
    """Without a file or env, folders live under root and the DB is SQLite in state/."""
    s = load_settings(root=tmp_path, env=False)
    assert s.inbox == tmp_path / "inbox" and s.work == tmp_path / "state" / "work"
    assert s.db_url == f"sqlite:///{tmp_path / 'state' / 'retouchd.db'}"
    assert s.watch.mode == "auto" and s.workers.devices == "auto" and s.file_mode == 0o644


def test_precedence_flag_env_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag beats the environment, which beats the TOML file, which beats the default."""
    config = tmp_path / "r.toml"
    config.write_text('root = "/from/toml"\nfile_mode = "0600"\n[watch]\nmode = "events"\nsettle_time = 7\n'
                      '[workers]\ncpu_slots = 3\n')
    s = load_settings(config)
    assert (s.root, s.watch.mode, s.watch.settle_time, s.workers.cpu_slots, s.file_mode) == (
        Path("/from/toml"), "events", 7.0, 3, 0o600)
    monkeypatch.setenv("RETOUCHD_WATCH__MODE", "poll")
    monkeypatch.setenv("RETOUCHD_ROOT", "/from/env")
    s = load_settings(config)
    assert (s.root, s.watch.mode, s.watch.settle_time) == (Path("/from/env"), "poll", 7.0)
    s = load_settings(config, root=Path("/from/flag"))
    assert s.root == Path("/from/flag")


@pytest.mark.parametrize(("text", "key", "hint"), [
    ('[watch]\nmode = "sometimes"\n', "watch.mode", "'auto', 'events' or 'poll'"),
    ('[workers]\ndevices = "gpu"\n', "workers.devices", "cuda:0"),
    ('[watch]\nsetle_time = 3\n', "watch.setle_time", "unknown setting"),
    ('[limits]\nmax_input_pixels = -5\n', "limits.max_input_pixels", "it must be 1 ≤ max_input_pixels"),
    ('[watch]\nsettle_time = 4000\n', "watch.settle_time", "it must be 0 ≤ settle_time ≤ 3600"),
    ('file_mode = 644\n', "file_mode", 'write the mode as an octal string, file_mode = "0644"'),
    ('file_mode = 999\n', "file_mode", 'file_mode = "0644"'),
])
def test_invalid_setting_names_key(tmp_path: Path, text: str, key: str, hint: str) -> None:
    """Each invalid value stops start-up with one line that names the key and what is allowed."""
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, env=False)
    message = str(info.value)
    assert f"'{key}'" in message and hint in message and "\n" not in message


def test_cli_reports_bad_env_setting(tmp_path: Path) -> None:
    """The CLI exits 2 with one line starting `retouchd: ` that names the key and where it can come from:
    a flag only for keys that have one."""
    result = cli("status", "--root", str(tmp_path), env={"RETOUCHD_WATCH__MODE": "bogus"})
    assert result.returncode == 2
    assert result.stderr.startswith("retouchd: invalid setting 'watch.mode'")
    assert "(set by $RETOUCHD_WATCH__MODE)" in result.stderr and "flag" not in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("status", "--root", str(tmp_path), env={"RETOUCHD_LOG__LEVEL": "loud"})
    assert result.returncode == 2 and "the --log-level flag or $RETOUCHD_LOG__LEVEL" in result.stderr


def test_settings_and_rule_errors_share_one_prefix(tmp_path: Path) -> None:
    """A bad setting and a bad rule file are both reported as `retouchd: …` (not click's `Error: `)."""
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nname="a"\ninbox="a"\nsteps=[{op="upscale", scale=10}]\n')
    config = tmp_path / "retouchd.toml"
    config.write_text("file_mode = 644\n")
    for args in (["run", "--rules", str(rules)], ["status", "--config", str(config)],
                 ["rules", "check", str(rules)]):
        result = cli(*args, "--root", str(tmp_path))
        assert result.returncode == 2 and result.stderr.startswith("retouchd: "), result.stderr
        assert not result.stderr.startswith("Error")
    assert "'scale': 10 is out of range; it must be 1 < scale ≤ 8" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    """A --config path that does not exist is a clear error, not a silent default."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_fault_point_cannot_come_from_a_settings_file(tmp_path: Path) -> None:
    """The test-only fault injection is refused in a settings file (production config), allowed from a
    test's environment."""
    config = tmp_path / "retouchd.toml"
    config.write_text('fault_point = "before-publish"\n')
    with pytest.raises(ConfigError, match="'fault_point' is a test-only setting"):
        load_settings(config)
    config.write_text("")
    assert load_settings(config, fault_point="before-publish").fault_point == "before-publish"
