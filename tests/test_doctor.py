"""`retouchd doctor`: a healthy root passes (every configured step run on a 32×32 image); folders, mounts,
the database and models that are not usable fail with a fix, and the exit code says so."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from retouchd.commands import doctor as doctor_module
from retouchd.commands.doctor import Report, check_daemon, check_database, check_mounts
from retouchd.commands.doctor.access import User, can_write, default_user, lookup_user
from retouchd.mounts import Mount
from retouchd.rules import load_rules
from retouchd.settings import load_settings

from conftest import cli

RULES = """
[[rule]]
name = "upscale"
inbox = "upscale"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]

[[rule]]
name = "catalog"
inbox = "catalog"
steps = [
  { op = "remove_objects", mask = "sidecar" },
  { op = "upscale", scale = 2, model = "fast" },
]
"""


def _checks(result_stdout: str) -> dict[tuple[str, str], dict]:
    data = json.loads(result_stdout)
    return {(c["section"], c["label"]): c for c in data["checks"]}


def test_healthy_root_passes_and_runs_every_model(root: Path, tmp_path: Path) -> None:
    """A fresh root: folders to be created, inboxes watched by events, no database yet, each distinct step
    (lanczos, sidecar inpainting, the `fast` network) run once; exit 0. After a run the schema is current."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    result = cli("doctor", "--root", str(root), "--rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "checking as" in out and out.rstrip().endswith("all good")
    assert "FAIL" not in out and "WARN" not in out
    assert f"{root}/outbox/catalog (missing; created at start)" in out
    assert "events (inotify), rescan every 300 s (local disk)" in out
    assert "not created yet; the daemon creates it at start" in out
    assert "upscale(scale=2.0, model=lanczos)" in out and "32×32 → 64×64" in out
    assert "remove_objects(mask=sidecar)" in out and "32×32 → 32×32" in out
    assert "upscale(scale=2.0, model=fast)" in out and "(rule catalog)" in out

    assert cli("run", "--once", "--root", str(root), "--rules", str(rules)).returncode == 0
    checks = _checks(cli("doctor", "--json", "--no-models", "--root", str(root), "--rules", str(rules)).stdout)
    assert checks[("database", "schema")]["level"] == "ok" and "(newest), 0 job(s)" in checks[
        ("database", "schema")]["detail"]
    assert checks[("folders", "catalog: outbox")]["detail"].startswith(f"{root}/outbox/catalog writable, ")
    assert not any(section == "models" for section, _ in checks)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make folders that another user cannot write")
def test_problems_fail_with_fixes(root: Path, tmp_path: Path) -> None:
    """For a service user without rights, a folder that is a file and missing user weights, doctor exits 1 and
    says how to fix each."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    rules = tmp_path / "rules.toml"
    rules.write_text(f"""
[[rule]]
name = "mine"
inbox = "mine"
outbox = "{blocker}"
steps = [{{ op = "upscale", scale = 2, model = "/nonexistent/weights.pth" }}]
""")
    (root / "state").mkdir(mode=0o755)
    os.chmod(root, 0o755)
    result = cli("doctor", "--json", "--user", "nobody", "--root", str(root), "--rules", str(rules))
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["user"] == "nobody" and data["ok"] is False
    checks = {(c["section"], c["label"]): c for c in data["checks"]}
    state = checks[("folders", "state")]
    assert state["level"] == "fail" and "nobody cannot enter" in state["detail"] and "chmod o+x" in state["fix"]
    outbox = checks[("folders", "mine: outbox")]
    assert outbox["level"] == "fail" and "is a file, not a folder" in outbox["detail"]
    model = checks[("models", "upscale(scale=2.0, model=/nonexistent/weights.pth)")]
    assert model["level"] == "fail" and "not usable" in model["detail"]
    text = cli("doctor", "--no-models", "--user", "nobody", "--root", str(root), "--rules", str(rules)).stdout
    assert "FAIL" in text and "fix: sudo chmod o+x" in text and "problem(s)" in text
    bad_user = cli("doctor", "--user", "no-such-user-here", "--root", str(root))
    assert bad_user.returncode == 2 and "no user named 'no-such-user-here'" in bad_user.stderr


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user can enter (pytest's own temporary folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="retouchd-access-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    for child in sorted(path.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()


def test_write_access_for_another_user(open_dir: Path) -> None:
    """Mode bits decide for another user: group and other bits, and search permission on every folder above."""
    nobody = lookup_user("nobody")
    shared, private, inner = open_dir / "shared", open_dir / "private", open_dir / "closed" / "inner"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    private.mkdir(mode=0o755)
    inner.mkdir(parents=True)
    os.chmod(inner, 0o777)
    os.chmod(inner.parent, 0o700)
    assert can_write(shared, nobody).ok
    closed = can_write(private, nobody)
    assert not closed.ok and "is not writable by nobody" in closed.why and "mode 0755" in closed.why
    blocked = can_write(inner, nobody)
    assert not blocked.ok and blocked.blocked_at == inner.parent


def _settings(root: Path, **extra: object):  # type: ignore[no-untyped-def]
    return load_settings(env=False, root=root, **extra)


def test_watch_mode_per_inbox_from_the_mount_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An inbox on NFS is polled under `auto`; forcing `events` there is a warning with a fix; an inbox with
    more folders than inotify may watch fails with the sysctl to raise the limit."""
    root = tmp_path / "r"
    rules = load_rules(None)
    inbox = (root / "inbox" / "upscale").absolute()
    nfs = [Mount(Path("/"), "ext4", "/dev/sda1"), Mount(inbox, "nfs4", "nas:/photos")]
    report = Report()
    check_mounts(report, _settings(root), rules, nfs)
    [auto] = report.checks
    assert auto.level == "ok" and "on nfs4 (nas:/photos): poll every 2 s (network mount)" in auto.detail
    report = Report()
    check_mounts(report, _settings(root, watch={"mode": "events"}), rules, nfs)
    [forced] = report.checks
    assert forced.level == "warn" and "(forced by watch.mode)" in forced.detail and "auto" in (forced.fix or "")

    for i in range(5):
        (inbox / f"d{i}").mkdir(parents=True)
    limit = tmp_path / "max_user_watches"
    limit.write_text("3\n")
    monkeypatch.setattr(doctor_module, "INOTIFY_WATCHES", limit)
    report = Report()
    check_mounts(report, _settings(root), rules, [Mount(Path("/"), "ext4", "/dev/sda1")])
    [full] = report.checks
    assert full.level == "fail" and "max_user_watches" in full.detail and "sysctl" in (full.fix or "")


def test_database_checks(tmp_path: Path) -> None:
    """SQLite on a network mount, a schema newer than the code, a foreign database and a file the service
    user cannot write each fail; the check never creates or changes a database."""
    user, _ = default_user()
    root = tmp_path / "r"
    settings = _settings(root)
    report = Report()
    check_database(report, settings, user, [Mount(Path("/"), "ext4", "/dev/sda1")])
    assert [c.level for c in report.checks] == ["ok"] and not (root / "state").exists()

    db = root / "state" / "retouchd.db"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('ffff')")
    report = Report()
    check_database(report, settings, user, [Mount(root, "cifs", "//nas/share")])
    levels = {c.label: (c.level, c.detail) for c in report.checks}
    assert levels["location"][0] == "fail" and "network mount (cifs)" in levels["location"][1]
    assert levels["schema"][0] == "fail" and "newer than this retouchd knows" in levels["schema"][1]
    os.chmod(db, 0o644)
    someone = User("someone", 4242, 4242, frozenset({4242}))
    report = Report()
    check_database(report, settings, someone, [])
    [file_check, _schema] = report.checks
    assert file_check.level == "fail" and "not writable by someone" in file_check.detail
    assert file_check.fix == f"sudo chown someone:4242 {db}*"

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    report = Report()
    check_database(report, _settings(root, database_url=f"sqlite:///{other}"), user, [])
    [foreign] = report.checks
    assert foreign.level == "fail" and "no retouchd schema version" in foreign.detail
    with sqlite3.connect(other) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["photos"]


def test_metrics_port_taken_by_another_program(tmp_path: Path) -> None:
    """With no daemon running, a metrics_port that another program holds fails; a free one passes."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        report = Report()
        check_daemon(report, _settings(tmp_path, metrics_port=port))
    checks = {c.label: c for c in report.checks}
    assert checks["status"].detail == "not running"
    assert checks["metrics"].level == "fail" and "Address already in use" in checks["metrics"].detail
    report = Report()
    check_daemon(report, _settings(tmp_path, metrics_port=port))
    assert {c.label: c.level for c in report.checks} == {"status": "ok", "metrics": "ok"}
