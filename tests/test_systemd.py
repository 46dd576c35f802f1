"""The systemd files: unit directives, `systemd-analyze verify`, sysusers/tmpfiles snippets, example config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from retouchd.settings import LimitSettings, LogSettings, Settings, WatchSettings, WorkerSettings, load_settings

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "retouchd.service"
EXAMPLE = SYSTEMD / "retouchd.toml"
EXEC_START = "/usr/local/bin/retouchd run --config /etc/retouchd/retouchd.toml"
FOLDERS = ("inbox", "outbox", "archive", "failed", "review", "state", "state/work")
# Settings that are not configuration: systemd's own variables and test-only fault injection.
NOT_CONFIG = {"notify_socket", "watchdog_usec", "fault_point"}
SECTIONS: dict[str, type[BaseModel]] = {
    "watch": WatchSettings, "workers": WorkerSettings, "limits": LimitSettings, "log": LogSettings,
}


def directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section → key → values of a unit file (a key may repeat)."""
    return directives_of(path.read_text())


def directives_of(text: str) -> dict[str, dict[str, list[str]]]:
    result: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            result.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        result[section].setdefault(key, []).append(value)
    return result


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install -y systemd)")
    return path


def test_unit_directives() -> None:
    """The unit runs the daemon as Type=notify with a watchdog, a dedicated user and a strict sandbox."""
    service = directives(UNIT)["Service"]
    one = {key: values[-1] for key, values in service.items()}
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "60", "Restart": "on-failure",
        "User": "retouchd", "Group": "retouchd", "ExecStart": EXEC_START, "ExecReload": "/bin/kill -HUP $MAINPID",
        "KillSignal": "SIGTERM", "KillMode": "mixed", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/retouchd", "ProtectHome": "read-only",
    }
    assert {key: one.get(key) for key in expected} == expected
    # Each of these would break torch/CUDA: JIT pages, or hidden /dev/nvidia* and /proc/driver/nvidia.
    for breaks_gpu in ("MemoryDenyWriteExecute", "PrivateDevices", "ProtectClock", "DevicePolicy", "ProcSubset"):
        assert breaks_gpu not in service
    assert directives(UNIT)["Install"]["WantedBy"] == ["multi-user.target"]


def test_stop_timeout_outlasts_the_drain_timeout() -> None:
    """TimeoutStopSec exceeds the default drain timeout, so draining jobs are not SIGKILLed."""
    stop = int(directives(UNIT)["Service"]["TimeoutStopSec"][-1])
    assert stop == 120
    assert stop > WorkerSettings.model_validate({}).drain_timeout == 90.0


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a single warning about it."""
    analyze = tool("systemd-analyze")
    stub = tmp_path / "bin" / "retouchd"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    # verify checks that ExecStart's binary exists; point it at a stub, keep everything else.
    unit = tmp_path / "retouchd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/retouchd", str(stub)))
    done = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    about_unit = [line for line in (done.stdout + done.stderr).splitlines() if "retouchd" in line]
    assert done.returncode == 0, done.stderr
    assert about_unit == []


def test_security_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security --offline` rates the sandbox at most 3.0 (OK) on its 0-10 scale."""
    analyze = tool("systemd-analyze")
    unit = tmp_path / "retouchd.service"
    shutil.copy(UNIT, unit)
    done = subprocess.run([analyze, "security", "--offline=yes", str(unit)], check=False, capture_output=True,
                          text=True, timeout=60)
    match = re.search(r"Overall exposure level for retouchd\.service: (\d+\.\d+)", done.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot rate units offline: {done.stderr.strip()[:200]}")
    assert float(match.group(1)) <= 3.0


def test_sysusers_creates_the_user(tmp_path: Path) -> None:
    """systemd-sysusers creates a nologin system user retouchd whose home is /var/lib/retouchd."""
    sysusers = tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    done = subprocess.run([sysusers, f"--root={tmp_path}", str(SYSTEMD / "retouchd.sysusers")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    users = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    _, _, uid, gid, _, home, shell = users["retouchd"]
    assert int(uid) < 1000 and home == "/var/lib/retouchd" and shell.endswith("nologin")
    groups = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert groups["retouchd"][2] == gid
    assert "retouchd" in groups["render"][3].split(",")


def tmpfiles_lines() -> dict[str, tuple[str, str, str, str]]:
    rows = [line.split() for line in (SYSTEMD / "retouchd.tmpfiles").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return {row[1]: (row[0], row[2], row[3], row[4]) for row in rows}


def test_tmpfiles_lists_every_folder_of_the_default_root() -> None:
    """tmpfiles.d creates the root and each folder settings derive from it, owned by retouchd."""
    settings = load_settings(EXAMPLE, env=False)
    derived = [settings.inbox, settings.outbox, settings.archive, settings.failed, settings.review,
               settings.state, settings.work]
    lines = tmpfiles_lines()
    assert sorted(lines) == sorted([str(settings.root)] + [str(path) for path in derived])
    assert {row[0] for row in lines.values()} == {"d"}
    assert {(row[2], row[3]) for row in lines.values()} == {("retouchd", "retouchd")}
    assert lines["/var/lib/retouchd/inbox"][1] == "2775"  # group-writable, setgid: drop-ins stay readable
    assert lines["/var/lib/retouchd/state"][1] == "0750"  # the database is not world-readable


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles --create chowns to retouchd, which needs root")
def test_tmpfiles_creates_the_folders(tmp_path: Path) -> None:
    """systemd-tmpfiles creates every folder with its mode and the retouchd owner under a scratch root."""
    (tmp_path / "etc").mkdir()
    subprocess.run([tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSTEMD / "retouchd.sysusers")],
                   check=True, capture_output=True, timeout=60)
    done = subprocess.run([tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create",
                           str(SYSTEMD / "retouchd.tmpfiles")], check=False, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    uid = next(int(line.split(":")[2]) for line in (tmp_path / "etc/passwd").read_text().splitlines()
               if line.startswith("retouchd:"))
    for path, (_, mode, _, _) in tmpfiles_lines().items():
        made = (tmp_path / path.lstrip("/")).stat()
        assert (oct(made.st_mode & 0o7777), made.st_uid) == (oct(int(mode, 8)), uid)


def test_example_config_loads_with_root_under_var_lib() -> None:
    """The example /etc/retouchd/retouchd.toml is valid and roots everything in /var/lib/retouchd."""
    settings = load_settings(EXAMPLE, env=False)
    assert settings.root == Path("/var/lib/retouchd")
    assert settings.db_url == "sqlite:////var/lib/retouchd/state/retouchd.db"


def commented_defaults() -> dict[str, dict[str, object]]:
    """`# key = value` lines of the example, parsed as TOML under their section."""
    text = re.sub(r"(?m)^# (\w+ = .+)$", r"\1", EXAMPLE.read_text())
    return tomllib.loads(text)


def test_example_config_shows_the_real_defaults() -> None:
    """Every default the example shows equals the code's default, and every setting is documented."""
    shown = commented_defaults()
    text = EXAMPLE.read_text()
    for name, field in Settings.model_fields.items():
        if name in NOT_CONFIG or name in SECTIONS or name == "root":
            continue
        documented = re.search(rf"(?m)^(#.*\b{name} = |\[{name}\]$)", text)
        assert documented, f"{name} is not documented in the example"
        if name in shown:
            assert shown[name] == field.get_default(call_default_factory=True), name
    for section, model in SECTIONS.items():
        defaults = model.model_validate({}).model_dump()
        assert set(shown[section]) == set(defaults), section
        assert shown[section] == defaults, section


def test_unit_printed_for_this_install_verifies(tmp_path: Path) -> None:
    """`doctor --systemd` prints the unit with ExecStart at this installation's retouchd (a venv's script),
    and `systemd-analyze verify` accepts it as it is, with no stub: the shipped path is not needed."""
    from conftest import cli

    analyze = tool("systemd-analyze")
    config = tmp_path / "retouchd.toml"
    config.write_text(f'root = "{tmp_path}"\n')
    printed = cli("doctor", "--systemd", "--config", str(config))
    assert printed.returncode == 0, printed.stderr
    exec_start = directives_of(printed.stdout)["Service"]["ExecStart"][-1]
    binary = exec_start.split()[0]
    assert binary != "/usr/local/bin/retouchd" and Path(binary).is_absolute() and os.access(binary, os.X_OK)
    assert exec_start.endswith(f" run --config {config}")  # the settings file this command was given
    unit = tmp_path / "retouchd.service"
    unit.write_text(printed.stdout)
    done = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line for line in (done.stdout + done.stderr).splitlines() if "retouchd" in line] == []
    shipped = {k: v for k, v in directives(UNIT)["Service"].items() if k != "ExecStart"}
    assert {k: v for k, v in directives_of(printed.stdout)["Service"].items() if k != "ExecStart"} == shipped


def test_one_install_story_for_sysusers_and_tmpfiles() -> None:
    """The unit's comment, the snippets' own headers and the README name the same /etc/ paths."""
    readme = (SYSTEMD.parent / "README.md").read_text()
    for name in ("sysusers", "tmpfiles"):
        named = set()
        for text in (UNIT.read_text(), (SYSTEMD / f"retouchd.{name}").read_text(), readme):
            named |= set(re.findall(rf"/[a-z/]*{name}\.d/retouchd\.conf", text))
        assert named == {f"/etc/{name}.d/retouchd.conf"}, named
