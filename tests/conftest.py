"""Shared fixtures: images made in code, and a real `retouchd run` process on a temporary root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

_ISOLATED = Path(tempfile.mkdtemp(prefix="retouchd-tests-"))
(_ISOLATED / "empty.toml").write_text("")

FAST_ENV = {
    # An empty settings file: a machine's /etc/retouchd/retouchd.toml must not leak into the tests.
    "RETOUCHD_CONFIG": str(_ISOLATED / "empty.toml"),
    "RETOUCHD_WATCH__SETTLE_TIME": "0.4",
    "RETOUCHD_WATCH__POLL_INTERVAL": "0.3",
    "RETOUCHD_WATCH__QUIET_TIME": "2",  # a file that does not decode is failed once still this long
    "RETOUCHD_WORKERS__RETRY_BACKOFF": "0",
    "RETOUCHD_WORKERS__DRAIN_TIMEOUT": "20",
    "RETOUCHD_LOG__FORMAT": "json",
}


def photo(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth-ish RGB test image (gradients plus noise), deterministic per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(1, width - 1), y * 255 / max(1, height - 1), (x + y) % 256], axis=-1)
    noise = rng.normal(0, 12, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def save_image(path: Path, width: int = 64, height: int = 48, seed: int = 0, fmt: str | None = None,
               mode: str = "RGB", **params: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(photo(width, height, seed)).convert(mode)
    image.save(path, format=fmt, **params)
    return path


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares an enormous image."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def db_rows(root: Path) -> list[dict[str, Any]]:
    db = root / "state" / "retouchd.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM jobs ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (read from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def assert_processed_once(root: Path, hashes: dict[str, str]) -> list[dict[str, Any]]:
    """Every file of `hashes` (rel path → sha256) ended archived once: one output each, the originals in
    archive/ byte for byte, nothing in failed/ or the inbox, no temp output left; returns the job rows."""
    rows = db_rows(root)
    assert sorted(r["rel_path"] for r in rows) == sorted(hashes)
    assert {r["state"] for r in rows} == {"archived"}, rows
    assert sorted(p.name for p in files_under(root / "outbox")) == sorted(hashes), "an output doubled or lost"
    assert sorted(sha256(p) for p in files_under(root / "archive")) == sorted(hashes.values())
    assert files_under(root / "failed") == [] and files_under(root / "inbox") == []
    assert list((root / "state" / "work").glob("*")) == [], "a temp output was left behind"
    return rows


def job_fields(**over: Any) -> dict[str, Any]:
    """The columns of one queued job for `Store.enqueue`, with `over` replacing any of them."""
    base = {"rule": "r", "content_key": "k", "sha256": "k", "source_path": "/in/a.png", "rel_path": "a.png",
            "sidecar_path": None, "size": 10, "mtime": 1.0, "max_attempts": 3}
    return {**base, **over}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def base_env() -> dict[str, str]:
    """This process's environment without RETOUCHD_* settings a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RETOUCHD_") or k.startswith("RETOUCHD_TEST_")}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**base_env(), **FAST_ENV, **(env or {})}
    return subprocess.run([sys.executable, "-m", "retouchd", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=False)


class DaemonProcess:
    """`retouchd run` as a real child process."""

    def __init__(self, root: Path, args: list[str], env: dict[str, str]) -> None:
        self.root = root
        self.log = root.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log_fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "retouchd", "run", "--root", str(root), *args],
            env={**base_env(), **FAST_ENV, **env}, stdout=self._log_fh, stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: self.started() or self.proc.poll() is not None, timeout=60)
        except AssertionError:  # never leave a daemon running behind a failed test
            self.proc.kill()
            self.proc.wait(10)
            self._log_fh.close()
            raise AssertionError(f"daemon did not start within 60 s: {self.log.read_text()[-3000:]}") from None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited at start: {self.log.read_text()}")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def started(self) -> bool:
        return any(line.get("event") == "retouchd started" for line in self.log_lines())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log_fh.close()
        return code


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "retouch"
    path.mkdir()
    return path


@pytest.fixture
def daemon(root: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        proc = DaemonProcess(root, list(args), env or {})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)
        if not proc._log_fh.closed:
            proc._log_fh.close()


def kill_hard(proc: DaemonProcess) -> None:
    os.kill(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait(10)
    proc._log_fh.close()
