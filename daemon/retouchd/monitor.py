"""The daemon's self-report: every few seconds a snapshot of slots, settling files and device memory goes to
the status file (`statusfile`) and, when enabled, to the Prometheus gauges (`metrics`).

It runs in its own thread so that a slow `nvidia-smi` or a busy database never delays the main loop; it
only reads the daemon's state, and an error in one round is logged and the next round tries again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sized
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from retouchd import __version__, beneath
from retouchd.devicemem import sample
from retouchd.statusfile import SCHEMA, STATUS_INTERVAL, remove_status, status_path, write_status
from retouchd.store.states import printable

if TYPE_CHECKING:
    from retouchd.metrics import Metrics
    from retouchd.pool import Identity, Pool
    from retouchd.settings import Settings
    from retouchd.sidecarwait import SidecarWaits
    from retouchd.store import Job, Store
    from retouchd.task import TaskResult
    from retouchd.watcher import Watcher

log = structlog.get_logger("retouchd.monitor")


class Observed(Protocol):
    """What the monitor reads from the daemon (it never writes to it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def identity(self) -> Identity: ...
    @property
    def once(self) -> bool: ...
    @property
    def should_exit(self) -> bool: ...
    @property
    def db_trouble(self) -> str | None: ...
    @property
    def pool(self) -> Pool | None: ...
    @property
    def watcher(self) -> Watcher | None: ...
    @property
    def tracker(self) -> Sized: ...
    @property
    def sidecars(self) -> SidecarWaits: ...
    @property
    def store(self) -> Store | None: ...


class Monitor(threading.Thread):
    def __init__(self, owner: Observed, interval: float = STATUS_INTERVAL) -> None:
        super().__init__(name="retouchd-monitor", daemon=True)
        self.owner, self.interval = owner, interval
        self.path = status_path(owner.settings.state, owner.identity.host)
        self.started_at = time.time()
        self.metrics: Metrics | None = None
        self.metrics_url: str | None = None
        self._stop_event = threading.Event()
        self._warned = False

    def serve_metrics(self) -> None:
        """Start the Prometheus endpoint if `metrics_port` is set; ConfigError if the port is taken."""
        settings = self.owner.settings
        if settings.metrics_port is None:
            return
        from retouchd.metrics import Metrics

        self.metrics = Metrics()
        port = self.metrics.serve(settings.metrics_address, settings.metrics_port)
        host = settings.metrics_address if settings.metrics_address not in ("", "0.0.0.0", "::") else "localhost"
        self.metrics_url = f"http://{host}:{port}/metrics"
        log.info("serving metrics", url=self.metrics_url)

    def on_result(self, job: Job, result: TaskResult, outcome: str) -> None:
        """The pool's hook, called in a slot thread as each attempt ends."""
        if self.metrics is None:
            return
        try:
            self.metrics.observe(job.rule, outcome, result.steps)
        except Exception as exc:  # metrics must never cost a job its commit
            log.warning("metrics not recorded", job_id=job.id, error=str(exc))

    def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # a report must never take the daemon down; try again next round
                if not self._warned:
                    log.warning("status snapshot failed; will keep trying", error=str(exc))
                    self._warned = True
            if self._stop_event.wait(self.interval):
                return

    def tick(self) -> None:
        snapshot = self.snapshot()
        write_status(self.path, snapshot)
        if self.metrics is not None:
            rules = self.owner.pool.rule_names() if self.owner.pool else []
            self.metrics.update(snapshot, self._active_counts(), rules)
        self._warned = False

    def snapshot(self) -> dict[str, Any]:
        d, settings = self.owner, self.owner.settings
        slots: list[dict[str, Any]] = []
        for slot in d.pool.slots if d.pool else []:
            job, live = slot.current, dict(slot.live)
            slots.append({
                "index": slot.index, "device": slot.device, "job_id": job.id if job else None,
                "rule": job.rule if job else None, "path": printable(job.rel_path) if job else None,
                "step": live.get("step") if job else None, "done": live.get("done") if job else None,
                "total": live.get("total") if job else None,
                "started_at": job.started_at.timestamp() if job and job.started_at else None,
                "worker_pid": slot.worker.pid, "restarts": slot.worker.restarts,
            })
        watcher = d.watcher
        inboxes = watcher.inboxes if watcher is not None else []
        pids = [os.getpid(), *(s["worker_pid"] for s in slots if s["worker_pid"])]
        return {
            "schema": SCHEMA, "version": __version__, "host": d.identity.host, "hostname": socket.gethostname(),
            "pid": d.identity.pid,
            "instance": d.identity.instance, "started_at": self.started_at, "updated_at": time.time(),
            "interval": self.interval, "root": str(settings.root.absolute()), "once": d.once,
            "stopping": d.should_exit, "metrics_url": self.metrics_url, "settling": len(d.tracker),
            "watch": [{"rule": i.rule, "path": str(i.path), "mode": i.mode, "paused": i.paused} for i in inboxes],
            "paused": {i.rule: i.paused for i in inboxes if i.paused},
            "slots": slots, "outcomes": dict(d.pool.outcomes) if d.pool else {},
            "inbox_bytes_read": beneath.inbox_bytes_read() + (d.pool.worker_inbox_bytes if d.pool else 0),
            "database_error": d.db_trouble,
            "devices": sample([s["device"] for s in slots], pids),
            **d.sidecars.snapshot(),
        }

    def _active_counts(self) -> dict[tuple[str, str], int]:
        from retouchd.store.overview import active_counts

        store = self.owner.store
        if store is None:
            return {}
        with store.read() as s:
            return active_counts(s)

    def stop(self) -> None:
        """Stop the rounds, take the status file away (the daemon is gone) and close the metrics endpoint."""
        self._stop_event.set()
        if self.is_alive():
            self.join(10)
        remove_status(self.path)
        if self.metrics is not None:
            self.metrics.stop()
