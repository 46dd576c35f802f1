"""Prometheus metrics (off unless `metrics_port` is set), served at http://ADDRESS:PORT/metrics.

Counters and histograms are fed by the pool's result hook as jobs finish; gauges are set by the monitor
from its periodic snapshot, so a scrape never waits on the database. A registry of its own keeps two
daemons in one process (tests) apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from retouchd.exceptions import ConfigError

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(namespace="retouchd", registry=r)
        self.queue_depth = Gauge("retouchd_queue_depth", "Jobs queued and not yet claimed, by rule.", ["rule"],
                                 registry=r)
        self.running = Gauge("retouchd_jobs_running", "Jobs being processed, by rule (all hosts).", ["rule"],
                             registry=r)
        self.jobs = Counter("retouchd_jobs", "Job attempts finished by this daemon, by rule and outcome "
                            "(done, review, retry, failed).", ["rule", "outcome"], registry=r)
        self.step_seconds = Histogram("retouchd_step_duration_seconds", "Time spent in one step of one job.",
                                      ["rule", "op"], buckets=STEP_BUCKETS, registry=r)
        self.job_seconds = Histogram("retouchd_job_duration_seconds", "Time spent in all steps of one successful job.",
                                     ["rule"], buckets=STEP_BUCKETS, registry=r)
        self.settling = Gauge("retouchd_files_settling", "Files seen in an inbox, waiting to settle.", registry=r)
        self.paused = Gauge("retouchd_inboxes_paused", "Inboxes paused because their folder is gone.", registry=r)
        self.slots = Gauge("retouchd_slots", "Worker slots, by device.", ["device"], registry=r)
        self.busy = Gauge("retouchd_slots_busy", "Worker slots running a job, by device.", ["device"], registry=r)
        self.memory_used = Gauge("retouchd_device_memory_used_bytes", "Memory in use: the whole GPU, or the "
                                 "resident memory of the daemon and its workers for the CPU.", ["device"], registry=r)
        self.memory_total = Gauge("retouchd_device_memory_total_bytes", "Memory of the device (GPU) or host (CPU).",
                                  ["device"], registry=r)
        self.restarts = Counter("retouchd_worker_restarts", "Worker processes restarted after they died.",
                                ["slot", "device"], registry=r)
        self._restarts_seen: dict[int, int] = {}
        self._server: WSGIServer | None = None

    def serve(self, address: str, port: int) -> int:
        """Start the HTTP endpoint in a thread; returns the port (useful when `port` is 0: any free one)."""
        try:
            self._server, _thread = start_http_server(port, address, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {address}:{port} ({exc.strerror or exc}); choose another metrics_port "
                "or stop the program that uses it"
            ) from None
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe(self, rule: str, outcome: str, steps: Iterable[Mapping[str, Any]]) -> None:
        """One finished attempt: its outcome and the time each step took."""
        self.jobs.labels(rule, outcome).inc()
        total = 0.0
        for record in steps:
            seconds = float(record.get("seconds") or 0.0)
            total += seconds
            self.step_seconds.labels(rule, str(record.get("op"))).observe(seconds)
        if outcome in ("done", "review"):
            self.job_seconds.labels(rule).observe(total)

    def update(self, snapshot: Mapping[str, Any], counts: Mapping[tuple[str, str], int], rules: Iterable[str]) -> None:
        """Gauges from the monitor's snapshot and the database's (rule, state) counts of active jobs."""
        names = set(rules) | {rule for rule, _ in counts}
        self.queue_depth.clear()
        self.running.clear()
        for rule in sorted(names):
            self.queue_depth.labels(rule).set(counts.get((rule, "queued"), 0))
            self.running.labels(rule).set(counts.get((rule, "running"), 0))
        self.settling.set(snapshot.get("settling", 0))
        self.paused.set(len(snapshot.get("paused") or {}))
        for device in snapshot.get("devices", []):
            name = device["device"]
            self.slots.labels(name).set(device["slots"])
            self.busy.labels(name).set(sum(1 for s in snapshot["slots"] if s["device"] == name and s["job_id"]))
            if device.get("memory_used") is not None:
                self.memory_used.labels(name).set(device["memory_used"])
            if device.get("memory_total") is not None:
                self.memory_total.labels(name).set(device["memory_total"])
        for slot in snapshot.get("slots", []):
            seen = self._restarts_seen.get(slot["index"], 0)
            if slot["restarts"] > seen:
                self.restarts.labels(str(slot["index"]), slot["device"]).inc(slot["restarts"] - seen)
            else:
                self.restarts.labels(str(slot["index"]), slot["device"])  # exported as 0 from the start
            self._restarts_seen[slot["index"]] = slot["restarts"]
