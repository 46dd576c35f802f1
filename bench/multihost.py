"""Several daemons, one PostgreSQL database: throughput with 1, 2 and 3 daemon processes on one root
(lanczos ×2, N small files) and the claim latency (SELECT … FOR UPDATE SKIP LOCKED + lease update).

    python bench/multihost.py [--files 1000] [--server postgresql://postgres@127.0.0.1:5432/test]
    python bench/multihost.py --inbox-reads [--files 6]   # inbox bytes read per file with 3 daemons (SQLite)

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from retouchd.store import open_store

RULES = '[[rule]]\nname = "upscale"\ninbox = "upscale"\nsteps = [{ op = "upscale", scale = 2, model = "lanczos" }]\n'


def _db(server: str) -> tuple[str, object]:
    base = make_url(server).set(drivername="postgresql+psycopg")
    name = f"retouchd_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name).render_as_string(hide_password=False), admin


def _drop(admin: object, url: str) -> None:
    with admin.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))


def throughput(server: str, files: int, daemons: int) -> float:
    url, admin = _db(server)
    try:
        open_store(url).engine.dispose()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "root"
            inbox = root / "inbox" / "upscale"
            inbox.mkdir(parents=True)
            (Path(tmp) / "rules.toml").write_text(RULES)
            env = {**os.environ, "RETOUCHD_DATABASE_URL": url, "RETOUCHD_WATCH__SETTLE_TIME": "0",
                   "RETOUCHD_LOG__LEVEL": "warning", "RETOUCHD_WATCH__MODE": "poll",
                   "RETOUCHD_WATCH__POLL_INTERVAL": "0.5"}
            procs = [subprocess.Popen([sys.executable, "-m", "retouchd", "run", "--root", str(root), "--rules",
                                       str(Path(tmp) / "rules.toml")], env={**env, "RETOUCHD_HOST_ID": f"h{n}"},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in range(daemons)]
            time.sleep(4)  # start-up (imports, worker spawn) is not throughput
            staging = Path(tmp) / "staging"
            staging.mkdir()
            for i in range(files):
                Image.new("RGB", (64, 48), (i % 256, i // 256, 7)).save(staging / f"f{i:04d}.png")
            started = time.perf_counter()
            for path in staging.iterdir():
                os.rename(path, inbox / path.name)
            engine = create_engine(url)
            while True:
                with engine.connect() as conn:
                    done = conn.execute(text("SELECT count(*) FROM jobs WHERE state = 'archived'")).scalar()
                if done == files:
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            engine.dispose()
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
            return files / elapsed
    finally:
        _drop(admin, url)


def claim_latency(server: str, n: int = 500) -> dict[str, float]:
    url, admin = _db(server)
    try:
        store = open_store(url)
        for i in range(n):
            store.enqueue(rule="r", content_key=f"k{i}", sha256=f"k{i}", source_path=f"/x/{i}", rel_path=str(i),
                          sidecar_path=None, size=1, mtime=0.0, max_attempts=3)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            store.claim("bench:1:x:0", "bench", "cpu", 60, ["r"])
            times.append((time.perf_counter() - t) * 1000)
        store.engine.dispose()
        return {"median_ms": round(statistics.median(times), 3),
                "p95_ms": round(statistics.quantiles(times, n=20)[18], 3)}
    finally:
        _drop(admin, url)


def _rchar(pid: int) -> int:
    """Bytes a daemon and all its children (workers, spawned by any of its threads) read through
    read(2)-like calls: inbox files, but also the database, model files and pipes, so an upper bound."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    """Every descendant: /proc/PID/task/TID/children lists the children of one thread only."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        for kid in kids:
            out += [kid, *_children(kid)]
    return out


def _counted(states: list[Path]) -> list[int]:
    """Bytes read from inbox files as each daemon counts them (its own hashing and moves + its workers'
    decoding), from the status files the daemons rewrite every 2 s."""
    return [int(json.loads((state / f"daemon-h{n}.json").read_text())["inbox_bytes_read"])
            for n, state in enumerate(states)]


def inbox_reads(files: int, daemons: int = 3) -> dict[str, float]:
    """Bytes read from inbox files per byte of new file, all daemons together, while `daemons` share one
    root (issue 12): one hash by the host that claimed the sighting + one read by the worker = 2.0; each
    extra full read by another host adds 1.0. The figure is the daemons' own count of inbox reads (every
    read of an inbox file's contents goes through retouchd.beneath, which counts it); the rchar of the
    daemons and their workers (all reads: database, models, pipes, imports too) is reported beside it as an
    upper bound, with what the daemons read per second while idle before the files arrived."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        inbox = root / "inbox" / "upscale"
        inbox.mkdir(parents=True)
        (Path(tmp) / "rules.toml").write_text(RULES)
        db = Path(tmp) / "shared.db"
        # One root and one database, each daemon its own state folder: on one machine a second daemon on the
        # same state folder is refused (the instance lock), as it would be on a real second host.
        env = {**os.environ, "RETOUCHD_WATCH__SETTLE_TIME": "0.5", "RETOUCHD_LOG__LEVEL": "warning",
               "RETOUCHD_WATCH__MODE": "poll", "RETOUCHD_WATCH__POLL_INTERVAL": "0.5",
               "RETOUCHD_DATABASE_URL": f"sqlite:///{db}"}
        states = [Path(tmp) / f"state-h{n}" for n in range(daemons)]
        procs = [subprocess.Popen([sys.executable, "-m", "retouchd", "run", "--root", str(root), "--rules",
                                   str(Path(tmp) / "rules.toml")],
                                  env={**env, "RETOUCHD_HOST_ID": f"h{n}", "RETOUCHD_STATE_DIR": str(states[n])},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in range(daemons)]
        staging = Path(tmp) / "staging"
        staging.mkdir()
        rng = np.random.default_rng(12)
        for i in range(files):  # noise does not compress: the PNG is about as big as its pixels
            Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(staging / f"big{i}.png")
        size = sum(p.stat().st_size for p in staging.iterdir())
        up = time.monotonic() + 180
        while not all((states[n] / f"daemon-h{n}.json").exists() for n in range(daemons)) and time.monotonic() < up:
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a daemon exited at start-up")
            time.sleep(0.5)
        time.sleep(8)  # start-up (imports, worker spawn, migrations) is not counted
        idle_from, idle_start = sum(_rchar(p.pid) for p in procs), time.monotonic()
        time.sleep(10)  # what idle daemons read anyway (database polling, still importing): shown beside
        before = sum(_rchar(p.pid) for p in procs)
        idle_rate = (before - idle_from) / (time.monotonic() - idle_start)
        counted_before = _counted(states)
        for path in staging.iterdir():
            os.rename(path, inbox / path.name)
        engine = create_engine(f"sqlite:///{db}")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                done = conn.execute(text("SELECT count(*) FROM jobs WHERE state = 'archived'")).scalar()
            if done == files:
                break
            time.sleep(0.5)
        engine.dispose()
        raw = sum(_rchar(p.pid) for p in procs) - before
        time.sleep(5)  # two status rounds: the counts include the last job
        per_daemon = [after - b for after, b in zip(_counted(states), counted_before, strict=True)]
        counted = sum(per_daemon)
        alive = sum(p.poll() is None for p in procs)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        return {"daemons": daemons, "alive_at_end": alive, "files": files, "archived": int(done or 0),
                "mib_in": round(size / 2**20, 1), "mib_read": round(counted / 2**20, 1),
                "mib_read_per_daemon": [round(b / 2**20, 1) for b in per_daemon],
                "read_per_file_size": round(counted / size, 2),
                "rchar_per_file_size": round(raw / size, 2),
                "idle_kib_per_s": round(idle_rate / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--server", default=os.environ.get("RETOUCHD_TEST_POSTGRES_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--inbox-reads", action="store_true", help="only measure bytes read per file (3 daemons)")
    args = parser.parse_args()
    if args.inbox_reads:
        reads = inbox_reads(args.files if args.files != 1000 else 6)
        print(f"{'daemons':>7} {'files':>5} {'MiB in':>7} {'MiB read':>9} {'read / size':>11} {'rchar / size':>12}")
        print(f"{reads['daemons']:>7} {reads['files']:>5} {reads['mib_in']:>7} {reads['mib_read']:>9} "
              f"{reads['read_per_file_size']:>11} {reads['rchar_per_file_size']:>12}")
        print(json.dumps({"benchmark": "multihost_inbox_reads", **reads}))
        return
    rows = [{"daemons": d, "files_per_s": round(throughput(args.server, args.files, d), 1)} for d in (1, 2, 3)]
    latency = claim_latency(args.server)
    print(f"{args.files} PNGs 64×48, lanczos ×2, one root, one PostgreSQL database")
    print(f"{'daemons':>7} {'files/s':>8}")
    for r in rows:
        print(f"{r['daemons']:>7} {r['files_per_s']:>8}")
    print(f"claim latency: median {latency['median_ms']} ms, p95 {latency['p95_ms']} ms")
    print(json.dumps({"benchmark": "multihost", "files": args.files, "runs": rows, "claim": latency}))


if __name__ == "__main__":
    main()
