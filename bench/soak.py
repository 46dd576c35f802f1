"""Soak: steady arrivals for N minutes with random faults injected; then count what came out.

    python bench/soak.py [--minutes 30] [--rate 3] [--seed 1]

    python bench/soak.py --minutes 4 --rate 1 --fault-every 40     # a short run that still meets every fault
    python bench/soak.py --minutes 2 --rate 2 --seed 12 --mode poll  # a polled share: no close events

Arrivals: small unique PNGs, plus ~5 % corrupt files and ~5 % re-drops of earlier content under a new name,
~5 % written in place by a writer that reopens the file for each chunk (0.3 s apart) and ~3 % by one that
holds the file open through a 4 s pause (issue 12: none may be processed partial or failed falsely; with
`--mode poll` the pause is longer than the settle time and no close event tells the daemon to wait).
Faults: a worker SIGKILLed about every 45 s, the daemon kill -9'd and restarted about every 4 min, the SQLite
write lock held by another process for 2 s about every 90 s; and, longer than the 10 s lease (issue 11): the
daemon paused with SIGSTOP for --pause-seconds and the write lock held for --lock-seconds (past SQLite's 30 s
busy timeout too), each about every --fault-every seconds. At the end arrivals stop, the daemon drains and is
stopped with SIGTERM, and every file dropped is looked for in exactly one place. Must all be 0: lost,
processed twice, false failures (a good file in failed/), temp files left (state/work/, hidden temp names).
Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

ENV = {"RETOUCHD_WATCH__SETTLE_TIME": "0.5", "RETOUCHD_WORKERS__RETRY_BACKOFF": "1",
       "RETOUCHD_WORKERS__CPU_SLOTS": "2", "RETOUCHD_WORKERS__LEASE_SECONDS": "10",
       "RETOUCHD_WORKERS__MAX_ATTEMPTS": "5", "RETOUCHD_LOG__FORMAT": "json", "RETOUCHD_LOG__LEVEL": "warning"}


def rss_kib(pid: int) -> int:
    total = 0
    pids = [pid] + [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


class Daemon:
    def __init__(self, root: Path, log: Path, mode: str = "auto") -> None:
        self.root, self.log, self.mode = root, log, mode
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        fh = open(self.log, "ab")  # noqa: SIM115 - inherited by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "retouchd", "run", "--root", str(self.root)],
                                     env={**os.environ, **ENV, "RETOUCHD_WATCH__MODE": self.mode}, stdout=fh,
                                     stderr=subprocess.STDOUT)
        fh.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.restarts += 1
        self.start()

    def workers(self) -> list[int]:
        assert self.proc is not None
        pid = self.proc.pid
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]


def pause(daemon: Daemon, seconds: float) -> None:
    """SIGSTOP the daemon (not its workers: a VM pause of the daemon's host is the worse case for leases)."""
    proc = daemon.proc
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)


def hold_lock(db: Path, seconds: float) -> None:
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def reopen_append_writer(data: bytes, path: Path, chunks: int = 6, gap: float = 0.3) -> threading.Thread:
    """Some sync clients and scanner drivers: open, append one chunk, close; again, 0.3 s later."""

    def write() -> None:
        step = len(data) // chunks + 1
        for i in range(0, len(data), step):
            with open(path, "ab") as fh:
                fh.write(data[i:i + step])
            time.sleep(gap)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def pausing_writer(data: bytes, path: Path, pause: float = 4.0) -> threading.Thread:
    """A stalled upload: half the file, a pause with the file held open, then the rest."""

    def write() -> None:
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(pause)
            fh.write(data[len(data) // 2:])

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def main() -> None:  # noqa: PLR0915 - one linear script: arrive, inject, drain, count
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=3.0, help="files per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-every", type=float, default=120, help="mean seconds between long pauses, and "
                        "between long database locks")
    parser.add_argument("--pause-seconds", type=float, default=20, help="SIGSTOP length (lease: 10 s)")
    parser.add_argument("--lock-seconds", type=float, default=40, help="write-lock length (busy timeout: 30 s)")
    parser.add_argument("--mode", choices=["auto", "events", "poll"], default="auto", help="watch.mode")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        inbox = root / "inbox" / "upscale"
        inbox.mkdir(parents=True)
        daemon = Daemon(root, Path(tmp) / "daemon.log", args.mode)
        daemon.start()
        dropped: dict[str, str] = {}  # name → kind (good, corrupt, dup)
        good_bytes: list[bytes] = []
        complete: dict[str, str] = {}  # in-place written name → sha256 of its complete content
        faults = {"worker_kills": 0, "daemon_kills": 0, "db_locks": 0, "long_pauses": 0, "long_db_locks": 0}
        background: threading.Thread | None = None
        next_long = time.monotonic() + rng.uniform(0.5, 1.5) * args.fault_every / 2
        long_kind = 0
        peak_rss = 0
        end = time.monotonic() + args.minutes * 60
        next_worker_kill, next_daemon_kill, next_lock = (time.monotonic() + rng.uniform(20, 70),
                                                        time.monotonic() + rng.uniform(120, 360),
                                                        time.monotonic() + rng.uniform(45, 135))
        n = 0
        writers: list[threading.Thread] = []
        while time.monotonic() < end:
            n += 1
            name = f"s{n:06d}.png"
            roll = rng.random()
            tmp_file = Path(tmp) / name
            if roll < 0.05:
                tmp_file.write_bytes(os.urandom(rng.randint(0, 3000)))
                dropped[name] = "corrupt"
            elif roll < 0.10 and good_bytes:
                tmp_file.write_bytes(rng.choice(good_bytes))
                dropped[name] = "dup"
            elif roll < 0.18:
                image = Image.new("RGB", (256, 192), (n % 256, (n // 256) % 256, rng.randrange(256)))
                image.save(tmp_file, compress_level=0)
                data = tmp_file.read_bytes()
                tmp_file.unlink()
                complete[name] = hashlib.sha256(data).hexdigest()
                writer = reopen_append_writer if roll < 0.15 else pausing_writer
                writers.append(writer(data, inbox / name))
                dropped[name] = "append" if roll < 0.15 else "pause"
            else:
                image = Image.new("RGB", (64, 48), (n % 256, (n // 256) % 256, rng.randrange(256)))
                image.save(tmp_file)
                good_bytes.append(tmp_file.read_bytes())
                dropped[name] = "good"
            if tmp_file.exists():
                os.rename(tmp_file, inbox / name)
            now = time.monotonic()
            if now > next_worker_kill and daemon.workers():
                os.kill(rng.choice(daemon.workers()), signal.SIGKILL)
                faults["worker_kills"] += 1
                next_worker_kill = now + rng.uniform(20, 70)
            if now > next_daemon_kill:
                daemon.kill9()
                faults["daemon_kills"] += 1
                next_daemon_kill = now + rng.uniform(120, 360)
            # Not while a long fault runs beside the arrivals: its 40 s write lock would outlast this one's
            # 30 s wait (a SIGSTOPped daemon holds nothing, but skip that too: one fault at a time).
            if now > next_lock and (root / "state" / "retouchd.db").exists() \
                    and (background is None or not background.is_alive()):
                conn = sqlite3.connect(root / "state" / "retouchd.db", timeout=30, isolation_level=None)
                conn.execute("BEGIN EXCLUSIVE")
                time.sleep(2)
                conn.execute("COMMIT")
                conn.close()
                faults["db_locks"] += 1
                next_lock = now + rng.uniform(45, 135)
            if now > next_long and (background is None or not background.is_alive()) \
                    and (root / "state" / "retouchd.db").exists():
                # Arrivals go on meanwhile: the fault runs beside them, alternating pause and lock.
                if long_kind % 2 == 0:
                    background = threading.Thread(target=pause, args=(daemon, args.pause_seconds))
                    faults["long_pauses"] += 1
                else:
                    background = threading.Thread(target=hold_lock, args=(root / "state" / "retouchd.db",
                                                                          args.lock_seconds))
                    faults["long_db_locks"] += 1
                background.start()
                long_kind += 1
                next_long = now + rng.uniform(0.5, 1.5) * args.fault_every / 2
            if daemon.proc is not None:
                peak_rss = max(peak_rss, rss_kib(daemon.proc.pid))
            time.sleep(rng.expovariate(args.rate))
        if background is not None:
            background.join()
        for thread in writers:
            thread.join()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            conn = sqlite3.connect(root / "state" / "retouchd.db", timeout=30)
            busy = conn.execute("SELECT count(*) FROM jobs WHERE state IN ('queued','running','done')").fetchone()[0]
            conn.close()
            if busy == 0 and not any(inbox.iterdir()):
                break
            time.sleep(1)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(120)
        conn = sqlite3.connect(root / "state" / "retouchd.db")
        jobs = conn.execute("SELECT rel_path, state, attempts, error, sha256 FROM jobs").fetchall()
        duplicates = conn.execute("SELECT count(*) FROM duplicates").fetchone()[0]
        conn.close()
        outputs = [p for p in (root / "outbox").rglob("*") if p.is_file()]
        failed = [p for p in (root / "failed").rglob("*") if p.is_file() and not p.name.endswith(".error.json")]
        archived = [p for p in (root / "archive").rglob("*") if p.is_file()]
        left = [p for p in inbox.iterdir()]
        found = {p.name for p in failed} | {p.name for p in archived} | {p.name for p in left}
        lost = sorted(set(dropped) - found)
        twice = [p.name for p in outputs + archived if " (" in p.name]
        false_failures = sorted(p.name for p in failed if dropped.get(p.name) != "corrupt")
        temps = [p for p in (root / "state" / "work").glob("*")] + [
            p for folder in ("outbox", "archive", "failed", "inbox") for p in (root / folder).rglob(".retouchd-*")]
        good_jobs = [j for j in jobs if j[1] == "archived"]
        written = {name for name, kind in dropped.items() if kind in ("append", "pause")}
        false_failures = [j for j in jobs if j[1] == "failed" and dropped.get(j[0]) in ("good", "append", "pause")
                          and "worker" not in (j[3] or "")]
        # A partial file processed: a job of an in-place written file whose content is not the complete one
        # (or a fragment failed as truncated); the one job of each such file must hold its final content.
        partial = [j for j in jobs if j[0] in written and (j[1] == "failed" or j[4] != complete[j[0]])]
        result = {
            "benchmark": "soak", "minutes": args.minutes, "mode": args.mode, "files_in": len(dropped),
            "good": sum(1 for k in dropped.values() if k == "good"),
            "corrupt": sum(1 for k in dropped.values() if k == "corrupt"),
            "redropped": sum(1 for k in dropped.values() if k == "dup"),
            "files_out": len(outputs), "jobs_archived": len(good_jobs), "files_failed": len(failed),
            "duplicates_archived": duplicates, "left_in_inbox": len(left), "lost": len(lost),
            "processed_twice": len(twice), "false_failures": len(false_failures), "temp_files_left": len(temps),
            "max_attempts_seen": max((j[2] for j in jobs), default=0),
            "peak_rss_mib": round(peak_rss / 1024, 1), "faults": faults, "exit_code": code,
            "in_place_writers": len(written), "partial_processed": len(partial),
        }
    print(f"{'in':>6} {'out':>6} {'failed':>6} {'dups':>5} {'lost':>5} {'twice':>6} {'false fail':>10} "
          f"{'temps left':>10} {'peak RSS MiB':>13}")
    print(f"{result['files_in']:>6} {result['files_out']:>6} {result['files_failed']:>6} "
          f"{result['duplicates_archived']:>5} {result['lost']:>5} {result['processed_twice']:>6} "
          f"{result['false_failures']:>10} {result['temp_files_left']:>10} {result['peak_rss_mib']:>13}")
    print("faults: " + ", ".join(f"{k} {v}" for k, v in faults.items()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
