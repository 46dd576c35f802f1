"""Log records from the daemon and its worker processes never run together on one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import multiprocessing, sys, threading
from retouchd.logging import configure_logging
from retouchd.logging import protect_log_stream
import structlog

def work(who, count, size, go):
    configure_logging("json", "info")
    protect_log_stream()  # as the daemon and its workers set it up
    log = structlog.get_logger(who)
    go.wait()
    for i in range(count):
        log.info("record", who=who, i=i, payload=who[0] * size)

if __name__ == "__main__":
    count, size = int(sys.argv[1]), int(sys.argv[2])
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    child = ctx.Process(target=work, args=("worker", count, size, go))
    child.start()
    threading.Timer(1.0, go.set).start()  # both write at the same moment, once the worker is up
    work("daemon", count, size, go)
    child.join()
"""


@pytest.mark.parametrize(("target", "size"), [("file", 9000), ("pipe", 3500)])
def test_concurrent_worker_and_daemon_lines_stay_whole(tmp_path: Path, target: str, size: int) -> None:
    """A worker and the daemon each log 1 000 records at once into one stderr: every line is one whole JSON
    object. print() wrote a record over 8 KiB in pieces that interleaved in an O_APPEND file; a pipe keeps
    one write whole only up to PIPE_BUF (4 KiB), hence the smaller records there."""
    count = 1000
    script = tmp_path / "both.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), str(count), str(size)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if target == "file":
        log = tmp_path / "log.jsonl"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            subprocess.run(command, stderr=fd, env=env, timeout=120, check=True)
        finally:
            os.close(fd)
        lines = log.read_text().splitlines()
    else:
        result = subprocess.run(command, stderr=subprocess.PIPE, env=env, timeout=120, check=True)
        lines = result.stderr.decode().splitlines()
    records = [json.loads(line) for line in lines]  # a merged line fails to parse
    assert sorted((r["who"], r["i"]) for r in records) == sorted(
        (who, i) for who in ("daemon", "worker") for i in range(count)
    )
    assert all(r["payload"] == r["who"][0] * size for r in records)
