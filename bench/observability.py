"""What seeing the work costs: one `status` refresh against a large history, one monitor round of the daemon
(snapshot + status file + gauges), `report` over finished jobs with real-sized photos, and the web
interface's API calls and pages against the same history (target: under 200 ms each at 100 000 jobs).

    python bench/observability.py [--history 100000] [--report-jobs 100] [--postgres URL]

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import structlog
from PIL import Image
from sqlalchemy import insert

from retouchd.commands.report import write_report
from retouchd.commands.status.data import reader, status_data
from retouchd.metrics import Metrics
from retouchd.settings import load_settings
from retouchd.statusfile import status_path, write_status
from retouchd.store import Job, JobState, open_store, utcnow

STEPS = [{"op": "upscale", "seconds": 0.8, "metrics": {"tile": 256, "tiles": 6, "device": "cpu", "model": "fast"}}]


def fill_history(store, n: int, rules: int = 4) -> None:  # type: ignore[no-untyped-def]
    """`n` jobs over the last two days, mostly archived, a few failed, queued and running."""
    now, rng = utcnow(), np.random.default_rng(0)
    states = rng.choice([JobState.ARCHIVED, JobState.FAILED, JobState.QUEUED, JobState.RUNNING], size=n,
                        p=[0.96, 0.02, 0.019, 0.001])
    rows = []
    for i in range(n):
        at = now - timedelta(seconds=float(rng.uniform(0, 2 * 86400)))
        rows.append({"rule": f"rule{i % rules}", "content_key": f"k{i}", "sha256": f"{i:064x}",
                     "source_path": f"/in/{i}.jpg", "rel_path": f"{i}.jpg", "size": 1, "mtime": 0.0,
                     "state": str(states[i]), "attempts": 1, "created_at": at, "updated_at": at,
                     "started_at": at, "finished_at": at if states[i] in (JobState.ARCHIVED, JobState.FAILED) else None,
                     "steps": STEPS, "device_seconds": 0.8,
                     "error": "not an image" if states[i] == JobState.FAILED else None})
    with store.session() as s:
        for start in range(0, n, 5000):
            s.execute(insert(Job), rows[start:start + 5000])


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


WEB_CALLS = {
    "api_jobs": "/api/jobs",
    "api_jobs_failed_rule": "/api/jobs?state=failed&rule=rule1",
    "api_jobs_pending": "/api/jobs?review=pending",
    "api_jobs_search": "/api/jobs?q=4242",
    "api_job": "/api/jobs/{id}",
    "api_stats": "/api/stats",
    "api_status": "/api/status",
    "api_inboxes": "/api/inboxes",
    "events_once": "/events?once=1",
    "image_before": "/jobs/{id}/before",
    "image_after": "/jobs/{id}/after",
    "page_dashboard": "/",
    "page_history": "/history?rule=rule2",
    "page_history_search": "/history?q=4242",
    "page_review": "/review",
    "page_failures": "/failures",
    "page_job": "/jobs/{id}",
    "page_login": "/login",
}
WEB_POSTS = {  # each repetition acts on a job of its own, prepared with its file
    "post_pause": "/api/inboxes/rule1/pause",
    "post_resume": "/api/inboxes/rule1/resume",
    "post_approve": "/api/jobs/{id}/approve",
    "post_reject": "/api/jobs/{id}/reject",
    "post_retry": "/api/jobs/{id}/retry",
    "post_cancel": "/api/jobs/{id}/cancel",
}
REPEAT = 5


def uncached(client, url: str) -> None:  # type: ignore[no-untyped-def]
    """One request, without the dashboard data that open pages share for a second."""
    client.app.state.web._status_cache = (0.0, None)
    client.get(url)


def web_latency(settings, store, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median time of each API call and page, in-process (no network), with 2 % of results reviewed."""
    from sqlalchemy import insert as sql_insert
    from starlette.testclient import TestClient

    from retouchd.rules import load_rules, rule_folders
    from retouchd.store import Review
    from retouchd.web.app import create_app

    settings.root.mkdir(parents=True, exist_ok=True)
    rules_file = settings.root / "rules.toml"
    rules_file.write_text("".join(f'[[rule]]\nname = "rule{i}"\ninbox = "rule{i}"\n'
                                  'steps = [{ op = "upscale", scale = 2, model = "lanczos" }]\n' for i in range(4)))
    rules = load_rules([rules_file])
    verdicts = ["pending", "approved", "rejected"]
    with store.session() as s:
        s.execute(sql_insert(Review), [{"job_id": i, "verdict": verdicts[i % 3], "created_at": utcnow()}
                                       for i in range(1, n + 1, 50)])
    folders = rule_folders(settings, rules)
    for f in folders.values():
        for folder in (f.inbox, f.outbox, f.review, f.failed, f.archive):
            folder.mkdir(parents=True, exist_ok=True)
    photo = Image.new("RGB", (768, 512), (90, 120, 150))
    with store.session() as s:  # the job the GET calls show has its original and its output on disk
        job = s.get(Job, n // 2)
        job.archive_path, job.output_path = str(settings.root / "before.jpg"), str(settings.root / "after.jpg")
    photo.save(settings.root / "before.jpg", quality=90)
    photo.save(settings.root / "after.jpg", quality=90)
    targets = prepare_actions(store, folders, photo, n)
    app = create_app(settings, rules, store, folders)
    client = TestClient(app, base_url="http://127.0.0.1")
    out = {}
    for name, path in WEB_CALLS.items():
        url = path.format(id=n // 2)
        assert client.get(url).status_code == 200, url
        out[f"web_{name}_{n}_jobs_s"] = timed(lambda u=url: uncached(client, u), REPEAT)
    for name, path in WEB_POSTS.items():
        ids = iter(targets.get(name, [0] * REPEAT))

        def post(p: str = path, i: Any = ids, reject: bool = name == "post_reject") -> None:
            url = p.format(id=next(i))
            response = client.post(url, json={"reason": "halo"} if reject else None,
                                   headers={"X-CSRF-Token": app.state.web.guard.csrf})
            assert response.status_code == 200, (url, response.text)

        out[f"web_{name}_{n}_jobs_s"] = timed(post, REPEAT)
    return out


def prepare_actions(store, folders, photo, n: int) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    """REPEAT jobs for each POST action, each in the state the action needs, with its file where it belongs."""
    from sqlalchemy import select

    from retouchd.store import Review

    wanted = {"post_approve": JobState.ARCHIVED, "post_reject": JobState.ARCHIVED, "post_retry": JobState.FAILED,
              "post_cancel": JobState.QUEUED}
    targets: dict[str, list[int]] = {}
    with store.session() as s:
        for name, state in wanted.items():
            taken = {i for ids in targets.values() for i in ids}
            rows = s.scalars(select(Job).where(Job.state == state, Job.id > n // 4, Job.id % 50 != 1)
                             .order_by(Job.id).limit(REPEAT + len(taken))).all()
            rows = [j for j in rows if j.id not in taken][:REPEAT]
            targets[name] = [j.id for j in rows]
            for job in rows:
                f = folders[job.rule]
                if name == "post_approve":
                    job.state, job.output_path = JobState.REVIEW, str(f.review / f"{job.id}.jpg")
                    s.add(Review(job_id=job.id, verdict="pending", created_at=utcnow()))
                elif name == "post_reject":
                    job.output_path = str(f.outbox / f"{job.id}.jpg")
                elif name == "post_retry":
                    job.failed_path, job.source_path = str(f.failed / f"{job.id}.jpg"), str(f.inbox / f"{job.id}.jpg")
                else:
                    job.source_path = str(f.inbox / f"{job.id}.jpg")
                path = Path(job.output_path if name in ("post_approve", "post_reject") else
                            job.failed_path if name == "post_retry" else job.source_path)
                photo.save(path, quality=90)
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if name in ("post_approve", "post_reject"):
                    job.output_sha256 = digest
                else:
                    job.sha256, job.size, job.mtime = digest, path.stat().st_size, path.stat().st_mtime
    return targets


def report_jobs(store, root: Path, n: int) -> None:  # type: ignore[no-untyped-def]
    """`n` finished jobs whose archived originals are 1600×1200 JPEGs and outputs 3200×2400 JPEGs."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:1200, 0:1600]
    base = np.stack([x * 255 / 1599, y * 255 / 1199, (x + y) % 256], axis=-1)
    small = Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    small.save(root / "before.jpg", quality=90)
    small.resize((3200, 2400)).save(root / "after.jpg", quality=90)
    now = utcnow()
    rows = [{"rule": "photos", "content_key": f"r{i}", "sha256": f"{i:064x}", "source_path": f"/in/r{i}.jpg",
             "rel_path": f"r{i}.jpg", "size": 1, "mtime": 0.0, "state": JobState.ARCHIVED, "attempts": 1,
             "created_at": now, "updated_at": now, "started_at": now, "finished_at": now, "steps": STEPS,
             "archive_path": str(root / "before.jpg"), "output_path": str(root / "after.jpg")} for i in range(n)]
    with store.session() as s:
        s.execute(insert(Job), rows)


@contextlib.contextmanager
def fresh_database(server: str | None, n: int) -> Iterator[str | None]:
    """None (SQLite under the root), or the URL of a new PostgreSQL database, dropped afterwards."""
    if server is None:
        yield None
        return
    from sqlalchemy import create_engine, make_url, text

    name = f"retouchd_bench_{os.getpid()}_{n}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--report-jobs", type=int, default=100)
    parser.add_argument("--postgres", metavar="URL",
                        help="measure on PostgreSQL: a fresh database per history size is made on this server "
                             "(e.g. postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))  # actions log
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for n in (1_000, args.history):
            with fresh_database(args.postgres, n) as url:
                settings = load_settings(env=False, root=base / f"h{n}", **({"database_url": url} if url else {}))
                store = open_store(settings.db_url)
                fill_history(store, n)
                if url:  # what autovacuum does within a minute of a bulk load: statistics and visibility map
                    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                        conn.exec_driver_sql("VACUUM ANALYZE")
                engine = reader(settings.db_url)
                results[f"status_refresh_{n}_jobs_s"] = timed(lambda e=engine, st=settings: status_data(e, st.state),
                                                              5)
                results.update(web_latency(settings, store, n))
                store.engine.dispose()
                engine.dispose()

        snapshot = {"schema": 1, "settling": 2, "paused": {}, "updated_at": time.time(), "interval": 2.0,
                    "slots": [{"index": i, "device": "cpu", "job_id": None, "restarts": 0} for i in range(4)],
                    "devices": [{"device": "cpu", "slots": 4, "memory_used": 1 << 30, "memory_total": 1 << 34}]}
        metrics, path = Metrics(), status_path(base)
        counts = {(f"rule{i}", "queued"): 10 for i in range(4)}

        def monitor_round() -> None:
            write_status(path, {**snapshot, "updated_at": time.time()})
            metrics.update(snapshot, counts, [f"rule{i}" for i in range(4)])

        results["monitor_round_s"] = timed(monitor_round, 200)

        root = base / "report"
        root.mkdir()
        settings = load_settings(env=False, root=root)
        store = open_store(settings.db_url)
        report_jobs(store, root, args.report_jobs)
        out = root / "report.html"
        started = time.perf_counter()
        write_report(settings, store, out, since=timedelta(days=1), since_text="1d", rules=[], outcomes=[],
                     limit=500, box=360, external=False)
        results["report_seconds"] = time.perf_counter() - started
        results["report_per_job_s"] = results["report_seconds"] / args.report_jobs
        results["report_mib"] = out.stat().st_size / 2**20
    ns = SimpleNamespace(**results)
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'status refresh, 1 000 jobs in the DB':<44}{ns.status_refresh_1000_jobs_s * 1000:>9.1f} ms")
    print(f"{f'status refresh, {args.history:,} jobs in the DB':<44}"
          f"{results[f'status_refresh_{args.history}_jobs_s'] * 1000:>9.1f} ms")
    for name, path in [*WEB_CALLS.items(), *((k, f"POST {v}") for k, v in WEB_POSTS.items())]:
        value = results[f"web_{name}_{args.history}_jobs_s"] * 1000
        print(f"{f'web {path}, {args.history:,} jobs':<44}{value:>9.1f} ms{'' if value < 200 else '  (over 200 ms)'}")
    print(f"{'monitor round (status file + gauges)':<44}{ns.monitor_round_s * 1000:>9.2f} ms")
    print(f"{f'report, {args.report_jobs} jobs (1600×1200 → 3200×2400 JPEG)':<44}{ns.report_seconds:>10.1f} s")
    print(f"{'  per job (two previews)':<44}{ns.report_per_job_s * 1000:>9.0f} ms")
    print(f"{'  page size':<44}{ns.report_mib:>8.1f} MiB")
    print(json.dumps({k: round(v, 5) for k, v in results.items()}))


if __name__ == "__main__":
    main()
