"""The running daemon's local status endpoint: a small JSON file per host in the state folder.

The daemon rewrites `state/daemon-<host>.json` every STATUS_INTERVAL seconds (write to a temporary name,
then rename, so a reader never sees half a file) and removes it when it stops. `retouchd status` and
`retouchd doctor` read it from any shell; the database stays the source of truth for jobs. A file is
believed only while it is fresh, and, on its own host, only while its process is alive: a daemon that
was killed leaves a file behind that reads as "stopped".
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from retouchd.instancelock import pid_alive

STATUS_INTERVAL = 2.0
SCHEMA = 1
_PREFIX = "daemon-"


def status_path(state_dir: Path, host: str | None = None) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host or socket.gethostname())
    return state_dir / f"{_PREFIX}{name}.json"


def write_status(path: Path, data: dict[str, Any]) -> None:
    """Replace the status file atomically. It is rewritten every few seconds: no fsync."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def remove_status(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def is_running(data: dict[str, Any], now: float | None = None) -> bool:
    """Fresh (rewritten within three intervals) and, on this machine, its process still alive."""
    now = time.time() if now is None else now
    interval = float(data.get("interval") or STATUS_INTERVAL)
    fresh = now - float(data.get("updated_at") or 0) <= 3 * interval + 5
    # `host` is the configurable host_id; whether the pid is ours to look up depends on the real name.
    machine = data.get("hostname", data.get("host"))
    if machine == socket.gethostname() and isinstance(data.get("pid"), int):
        return fresh and pid_alive(data["pid"])
    return fresh


def read_statuses(state_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """Every daemon status file in `state_dir`, each with `running` set; unreadable files are skipped."""
    found = []
    for path in sorted(state_dir.glob(f"{_PREFIX}*.json")) if state_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being replaced right now, or not ours
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            continue
        data["running"] = is_running(data, now)
        data["file"] = str(path)
        found.append(data)
    return found
