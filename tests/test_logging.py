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
import structlog

def work(who, count, go):
    configure_logging("json", "info")
    log = structlog.get_logger(who)
    go.wait()
    for i in range(count):
        log.info("record", who=who, i=i, payload=who[0] * 9000)

if __name__ == "__main__":
    count = int(sys.argv[1])
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    child = ctx.Process(target=work, args=("worker", count, go))
    child.start()
    threading.Timer(1.0, go.set).start()  # both write at the same moment, once the worker is up
    work("daemon", count, go)
    child.join()
"""


@pytest.mark.parametrize("target", ["file", "pipe"])
def test_concurrent_worker_and_daemon_lines_stay_whole(tmp_path: Path, target: str) -> None:
    """A worker and the daemon each log 1 000 records of 9 KB at once into one stderr: every line is one
    whole JSON object (print() wrote such records in pieces that interleaved)."""
    count = 1000
    script = tmp_path / "both.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if target == "file":
        log = tmp_path / "log.jsonl"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            subprocess.run([sys.executable, str(script), str(count)], stderr=fd, env=env, timeout=120, check=True)
        finally:
            os.close(fd)
        lines = log.read_text().splitlines()
    else:
        result = subprocess.run([sys.executable, str(script), str(count)], stderr=subprocess.PIPE, env=env,
                                timeout=120, check=True)
        lines = result.stderr.decode().splitlines()
    records = [json.loads(line) for line in lines]  # a merged line fails to parse
    assert sorted((r["who"], r["i"]) for r in records) == sorted(
        (who, i) for who in ("daemon", "worker") for i in range(count)
    )
    assert all(r["payload"] == r["who"][0] * 9000 for r in records)
