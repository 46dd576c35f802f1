"""Honest words for setup problems: an unwritable outbox fails a job with "outbox not writable" (not a
traceback), and doctor only suggests a fix that changes something (retouchd.commitfail, commands.doctor)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from retouchd.commands.doctor import _access_fix
from retouchd.commands.doctor.access import Access, default_user
from retouchd.commitfail import commit_error
from retouchd.fsops import publish
from retouchd.rules import RuleFolders

from conftest import cli, db_rows, save_image


def _folders(tmp_path: Path) -> RuleFolders:
    names = ("inbox", "outbox", "archive", "failed", "review")
    return RuleFolders(**{n: tmp_path / n for n in names})


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """An outbox with the immutable flag: not even root may create a file in it."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    if subprocess.run(["chattr", "+i", str(outbox)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and ext4/xfs)")
    yield outbox
    subprocess.run(["chattr", "-i", str(outbox)], check=True)


def test_publish_into_an_immutable_outbox_says_outbox_not_writable(tmp_path: Path, immutable: Path) -> None:
    """The real error of a publish into a folder that refuses writes becomes a one-line reason."""
    tmp = tmp_path / "work.tmp"
    tmp.write_bytes(b"result")
    with pytest.raises(OSError) as caught:
        publish(tmp, immutable / "a.jpg")
    reason = commit_error(caught.value, _folders(tmp_path))
    assert reason is not None
    assert reason.startswith(f"outbox not writable: {immutable}") and "retried" in reason


def test_other_errors_keep_their_traceback(tmp_path: Path) -> None:
    """Errors that are not about a rule folder's permissions are not reworded."""
    folders = _folders(tmp_path)
    assert commit_error(ValueError("bug"), folders) is None
    assert commit_error(OSError(errno.ENOSPC, "No space left", str(tmp_path / "outbox" / "a")), folders) is None
    elsewhere = PermissionError(errno.EACCES, "Permission denied", "/etc/x")
    assert commit_error(elsewhere, folders) is None
    archive = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "archive" / "d" / "a.jpg"))
    assert (commit_error(archive, folders) or "").startswith("archive not writable")


def test_doctor_does_not_suggest_chown_to_the_owner_it_already_has(immutable: Path) -> None:
    """An immutable folder already owned by the user gets a hint at the real cause, not a no-op chown."""
    user, _ = default_user()
    assert immutable.stat().st_uid == user.uid
    fix = _access_fix(Access(False, "is not writable"), user, immutable, missing=False)
    assert "chown" not in fix and f"chattr -i {immutable}" in fix


def test_doctor_suggests_chmod_when_the_owner_lacks_write(tmp_path: Path) -> None:
    """A folder owned by the user but without u+w: chmod, not chown."""
    user, _ = default_user()
    if user.uid == 0:
        pytest.skip("root ignores mode bits")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        assert _access_fix(Access(False, "is not writable"), user, folder, missing=False) == f"chmod u+wx {folder}"
    finally:
        os.chmod(folder, 0o700)


def test_daemon_fails_a_job_with_outbox_not_writable(root: Path) -> None:
    """Through the real daemon: a result that cannot be renamed into an immutable outbox fails the job with
    "outbox not writable" and no traceback in the log."""
    outbox = root / "outbox" / "upscale"
    outbox.mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(outbox)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and ext4/xfs)")
    try:
        save_image(root / "inbox" / "upscale" / "a.png")
        result = cli("run", "--once", "--root", str(root), env={
            "RETOUCHD_WATCH__SETTLE_TIME": "0", "RETOUCHD_WORKERS__MAX_ATTEMPTS": "1", "RETOUCHD_LOG__FORMAT": "json"})
    finally:
        subprocess.run(["chattr", "-i", str(outbox)], check=True)
    assert result.returncode == 0, result.stderr[-2000:]
    [row] = db_rows(root)
    assert row["state"] == "failed" and row["error"].startswith(f"outbox not writable: {outbox}")
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
