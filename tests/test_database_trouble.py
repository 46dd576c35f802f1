"""A damaged, deleted or unreachable database (issue 11, item 10): clear words, no flood, no lost history."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import cli, files_under, save_image, sha256, wait_for


def test_damaged_sqlite_at_startup_exits_3_with_what_to_do(root: Path) -> None:
    """A corrupt state/retouchd.db: exit 3 with one line that says to restore it from a backup; doctor says
    the same."""
    (root / "state").mkdir()
    (root / "state" / "retouchd.db").write_bytes(os.urandom(8192))
    result = cli("run", "--once", "--root", str(root))
    assert result.returncode == 3, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("retouchd:")]
    assert len(lines) == 1 and "damaged" in lines[0] and "restore state/retouchd.db from a backup" in lines[0]
    assert "Traceback" not in result.stderr
    doctor = cli("doctor", "--no-models", "--root", str(root))
    assert doctor.returncode == 1 and "restore state/retouchd.db from a backup" in doctor.stdout


def test_database_file_deleted_while_running(root: Path, daemon) -> None:
    """The SQLite file deleted under a running daemon: it stops with exit 3 and an error that says so, and
    leaves the inbox file where it is."""
    proc = daemon()
    for suffix in ("", "-wal", "-shm"):
        (root / "state" / f"retouchd.db{suffix}").unlink(missing_ok=True)
    kept = sha256(save_image(root / "inbox" / "upscale" / "kept.png"))
    code = proc.proc.wait(60)
    assert code == 3
    assert any("database file was deleted" in (line.get("event") or "") for line in proc.log_lines())
    assert [sha256(p) for p in files_under(root / "inbox")] == [kept]
    assert files_under(root / "outbox") == [] and files_under(root / "archive") == []
    assert wait_for(lambda: not list((root / "state").glob("daemon-*.json")), timeout=10)


def test_database_trouble_is_said_once_a_minute(root: Path) -> None:
    """A database that keeps failing every tick is logged once (then again a minute later), and kept for
    `status` until a tick succeeds."""
    from structlog.testing import capture_logs

    from retouchd.daemon import Daemon
    from retouchd.rules import load_rules
    from retouchd.settings import load_settings

    d = Daemon(load_settings(root=root, env=False), load_rules())
    with capture_logs() as logs:
        for _ in range(50):
            d._database_trouble(RuntimeError("database is locked\nmore detail"))
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "database unavailable; retrying (said again in a minute if it persists)"]
    assert d.db_trouble == "database is locked"
