"""Crash safety (SPEC §6.1, §6.4): killed at a commit point, restarted, every file ends once."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import cli, db_rows, files_under, save_image, sha256


def _drop(root: Path, n: int = 2) -> dict[str, str]:
    inbox = root / "inbox" / "upscale"
    return {f"f{i}.png": sha256(save_image(inbox / f"f{i}.png", seed=i)) for i in range(n)}


def _assert_all_done_once(root: Path, hashes: dict[str, str]) -> None:
    rows = db_rows(root)
    assert sorted(r["rel_path"] for r in rows) == sorted(hashes)
    for row in rows:
        assert row["state"] == "archived", row
        assert sha256(Path(row["archive_path"])) == hashes[row["rel_path"]]
        assert sha256(Path(row["output_path"])) == row["output_sha256"]
    outputs = files_under(root / "outbox")
    assert sorted(p.name for p in outputs) == sorted(hashes), "an output was written twice or is missing"
    assert len(files_under(root / "archive")) == len(hashes)
    assert files_under(root / "inbox") == []
    assert list((root / "state" / "work").glob("*")) == []


@pytest.mark.parametrize("point", ["before-publish", "after-publish", "after-finish", "before-archive",
                                   "after-archive-move"])
def test_killed_at_commit_point_then_restart(root: Path, point: str) -> None:
    """The daemon dies abruptly at a commit point; a restart finishes every job exactly once."""
    hashes = _drop(root)
    first = cli("run", "--once", "--root", str(root), env={"RETOUCHD_FAULT_POINT": point,
                                                            "RETOUCHD_WATCH__SETTLE_TIME": "0"})
    assert first.returncode == 87, first.stderr[-2000:]
    assert not [p for p in files_under(root / "outbox") if p.name.startswith(".")]
    second = cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"})
    assert second.returncode == 0, second.stderr[-2000:]
    _assert_all_done_once(root, hashes)
    assert all(r["attempts"] == 1 for r in db_rows(root)), "an interrupted job cost an attempt"


def test_stale_running_job_is_requeued(root: Path) -> None:
    """A job left `running` by a dead host (expired lease) is taken again after restart."""
    hashes = _drop(root, 1)
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_FAULT_POINT": "before-publish",
                                                          "RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 87
    conn = sqlite3.connect(root / "state" / "retouchd.db")
    expired = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None).isoformat(sep=" ")
    conn.execute("UPDATE jobs SET lease_owner = 'otherhost:1:dead:0', lease_expires = ?", (expired,))
    conn.commit()
    conn.close()
    assert db_rows(root)[0]["state"] == "running"
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 0
    _assert_all_done_once(root, hashes)


def test_worker_death_costs_one_attempt_then_fails(root: Path) -> None:
    """A worker that dies mid-step costs one attempt per try; after max_attempts the file goes to failed/
    with "worker died" and the daemon itself keeps running to the end."""
    _drop(root, 1)
    result = cli("run", "--once", "--root", str(root), env={
        "RETOUCHD_FAULT_POINT": "after-step-upscale", "RETOUCHD_WORKERS__MAX_ATTEMPTS": "2",
        "RETOUCHD_WATCH__SETTLE_TIME": "0",
    })
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = db_rows(root)
    assert row["state"] == "failed" and row["attempts"] == 2
    assert "worker died" in row["error"]
    assert (root / "failed" / "upscale" / "f0.png").exists()
    assert (root / "failed" / "upscale" / "f0.png.error.json").exists()


def test_retry_sends_failed_file_back(root: Path) -> None:
    """`retouchd retry --failed` moves the file back to its inbox and the next run processes it."""
    _drop(root, 1)
    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env={**env, "RETOUCHD_FAULT_POINT": "after-step-upscale",
                                                          "RETOUCHD_WORKERS__MAX_ATTEMPTS": "1"}).returncode == 0
    assert db_rows(root)[0]["state"] == "failed"
    retried = cli("retry", "--failed", "--root", str(root))
    assert retried.returncode == 0, retried.stderr
    assert (root / "inbox" / "upscale" / "f0.png").exists()
    assert not (root / "failed" / "upscale" / "f0.png.error.json").exists()
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    (row,) = db_rows(root)
    assert row["state"] == "archived" and row["attempts"] == 1


def test_disk_full_at_publish_never_loses_the_original(root: Path) -> None:
    """A commit that fails like a full disk costs an attempt, is retried, and after max_attempts the original
    goes to failed/ with the reason; no output or temp file is left behind."""
    hashes = _drop(root, 1)
    result = cli("run", "--once", "--root", str(root), env={
        "RETOUCHD_FAULT_POINT": "enospc-before-publish", "RETOUCHD_WORKERS__MAX_ATTEMPTS": "2",
        "RETOUCHD_WATCH__SETTLE_TIME": "0",
    })
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = db_rows(root)
    assert row["state"] == "failed" and row["attempts"] == 2 and "No space left" in row["error"]
    assert sha256(root / "failed" / "upscale" / "f0.png") == hashes["f0.png"]
    assert files_under(root / "outbox") == [] and list((root / "state" / "work").glob("*")) == []


def test_killed_between_link_and_unlink_archives_once(root: Path) -> None:
    """Killed after the original was linked into the archive and before it left the inbox: the restart
    finishes that move (same inode) instead of archiving a second copy under another name."""
    hashes = _drop(root, 1)
    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env={**env, "RETOUCHD_FAULT_POINT": "after-link"}
               ).returncode == 87
    assert len(files_under(root / "archive")) == 1 and len(files_under(root / "inbox")) == 1
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    _assert_all_done_once(root, hashes)
    (row,) = db_rows(root)
    assert [str(p) for p in files_under(root / "archive")] == [row["archive_path"]]


def test_killed_between_link_and_unlink_fails_once(root: Path) -> None:
    """The same crash while moving a bad file to failed/: one file there, with the real reason."""
    inbox = root / "inbox" / "upscale"
    inbox.mkdir(parents=True)
    (inbox / "bad.png").write_bytes(b"not an image at all")
    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env={**env, "RETOUCHD_FAULT_POINT": "after-link"}
               ).returncode == 87
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    (row,) = db_rows(root)
    assert row["state"] == "failed"
    assert sorted(p.name for p in files_under(root / "failed")) == ["bad.png", "bad.png.error.json"]
    assert files_under(root / "inbox") == []
    report = json.loads((root / "failed" / "upscale" / "bad.png.error.json").read_text())
    assert "interrupted" not in report["reason"] and report["reason"] == row["error"]


def test_retry_one_id_with_failed_flag(root: Path) -> None:
    """`retry 2 --failed` retries job 2, not the first failed job."""
    inbox = root / "inbox" / "upscale"
    inbox.mkdir(parents=True)
    (inbox / "a.png").write_bytes(b"junk a")
    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    (inbox / "b.png").write_bytes(b"junk b")
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    rows = {r["rel_path"]: r for r in db_rows(root)}
    assert [rows["a.png"]["state"], rows["b.png"]["state"]] == ["failed", "failed"]
    second = rows["b.png"]["id"]
    result = cli("retry", str(second), "--failed", "--root", str(root))
    assert result.returncode == 0, result.stderr
    rows = {r["rel_path"]: r for r in db_rows(root)}
    assert rows["b.png"]["state"] == "queued" and rows["a.png"]["state"] == "failed"
    assert (inbox / "b.png").exists() and not (inbox / "a.png").exists()


def test_retry_after_fixing_the_file_is_one_job(root: Path) -> None:
    """The user replaces the failed file with a good one and retries: the same job processes the new bytes;
    no second job, no false "file disappeared" failure."""
    inbox = root / "inbox" / "upscale"
    inbox.mkdir(parents=True)
    (inbox / "fix.png").write_bytes(b"broken")
    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    (row,) = db_rows(root)
    assert row["state"] == "failed"
    good = save_image(root / "failed" / "upscale" / "fix.png")
    good_hash = sha256(good)
    assert cli("retry", str(row["id"]), "--root", str(root)).returncode == 0
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    (row,) = db_rows(root)
    assert row["state"] == "archived" and row["sha256"] == good_hash and row["error"] is None
    assert sha256(Path(row["archive_path"])) == good_hash
    assert files_under(root / "failed") == [] and files_under(root / "inbox") == []
