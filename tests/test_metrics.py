"""Prometheus metrics: off by default; when on, the real daemon reports queue, outcomes, step times,
settling files, device memory and worker restarts."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from retouchd.devicemem import parse_nvidia_smi, sample
from retouchd.exceptions import ConfigError
from retouchd.metrics import Metrics
from retouchd.settings import load_settings
from retouchd.statusfile import status_path

from conftest import cli, db_rows, save_image, wait_for


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _status_file(root: Path) -> dict:
    return json.loads(status_path(root / "state").read_text())


def test_metrics_from_a_running_daemon(root: Path, daemon) -> None:
    """Outcomes, step histograms, queue depth, settling files, CPU memory and a worker restart are exported."""
    proc = daemon(env={"RETOUCHD_METRICS_PORT": "0"})
    url = wait_for(lambda: status_path(root / "state").exists() and _status_file(root)["metrics_url"])
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    inbox = root / "inbox" / "upscale"
    save_image(inbox / "a.png", seed=1)
    save_image(inbox / "b.png", seed=2)
    (inbox / "bad.png").write_bytes(b"not an image at all")
    wait_for(lambda: sorted(r["state"] for r in db_rows(root)) == ["archived", "archived", "failed"])

    samples = wait_for(lambda: (s := scrape(url)) and _value(s, "retouchd_queue_depth", rule="upscale") == 0 and s)
    assert _value(samples, "retouchd_jobs_total", rule="upscale", outcome="done") == 2
    assert _value(samples, "retouchd_jobs_total", rule="upscale", outcome="failed") == 1
    assert _value(samples, "retouchd_step_duration_seconds_count", rule="upscale", op="upscale") == 2
    assert 0 < _value(samples, "retouchd_step_duration_seconds_sum", rule="upscale", op="upscale") < 30
    assert _value(samples, "retouchd_job_duration_seconds_count", rule="upscale") == 2
    assert _value(samples, "retouchd_jobs_running", rule="upscale") == 0
    assert _value(samples, "retouchd_files_settling") == 0
    assert _value(samples, "retouchd_slots", device="cpu") == 1
    used = _value(samples, "retouchd_device_memory_used_bytes", device="cpu")
    total = _value(samples, "retouchd_device_memory_total_bytes", device="cpu")
    assert used is not None and total is not None and 50 * 2**20 < used < total
    assert _value(samples, "retouchd_worker_restarts_total", slot="0", device="cpu") == 0
    assert _value(samples, "retouchd_process_resident_memory_bytes") > 0

    # A worker killed from outside is restarted for the next job, and counted.
    os.kill(wait_for(lambda: _status_file(root)["slots"][0]["worker_pid"]), signal.SIGKILL)
    save_image(inbox / "c.png", seed=3)
    wait_for(lambda: [r["state"] for r in db_rows(root)].count("archived") == 3)
    wait_for(lambda: _value(scrape(url), "retouchd_worker_restarts_total", slot="0", device="cpu") == 1)
    assert proc.stop() == 0
    with pytest.raises(OSError):
        scrape(url)


def test_metrics_off_by_default_and_a_taken_port_stops_startup(root: Path) -> None:
    """Without metrics_port nothing listens; with a port another program holds, start-up stops with exit 2."""
    save_image(root / "inbox" / "upscale" / "a.png")
    plain = cli("run", "--once", "--root", str(root), env={"RETOUCHD_WATCH__SETTLE_TIME": "0"})
    assert plain.returncode == 0 and "serving metrics" not in plain.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli("run", "--once", "--root", str(root), env={"RETOUCHD_METRICS_PORT": str(port)})
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr and "metrics_port" in result.stderr


def test_metrics_settings_are_validated() -> None:
    """An out-of-range port or a malformed address stops start-up with one line naming the key."""
    with pytest.raises(ConfigError, match="metrics_port"):
        load_settings(env=False, metrics_port=70000)
    with pytest.raises(ConfigError, match="metrics_address"):
        load_settings(env=False, metrics_address="not an address")
    settings = load_settings(env=False)
    assert settings.metrics_port is None and settings.metrics_address == "127.0.0.1"


def test_gauges_follow_the_snapshot() -> None:
    """Queue gauges drop rules that are gone; restarts count up by the difference; memory is per device."""
    metrics = Metrics()
    snapshot = {"settling": 3, "paused": {"scans": "inbox missing"},
                "slots": [{"index": 0, "device": "cuda:0", "job_id": 7, "restarts": 2}],
                "devices": [{"device": "cuda:0", "slots": 1, "memory_used": 5 * 2**30, "memory_total": 80 * 2**30}]}
    metrics.update(snapshot, {("old", "queued"): 4, ("new", "running"): 1}, ["new"])
    metrics.update(snapshot, {("new", "queued"): 2}, ["new"])
    metrics.update({**snapshot, "slots": [{**snapshot["slots"][0], "restarts": 3}]}, {}, ["new"])
    get = metrics.registry.get_sample_value
    assert get("retouchd_queue_depth", {"rule": "old"}) is None
    assert get("retouchd_queue_depth", {"rule": "new"}) == 0
    assert get("retouchd_files_settling") == 3 and get("retouchd_inboxes_paused") == 1
    assert get("retouchd_slots_busy", {"device": "cuda:0"}) == 1
    assert get("retouchd_device_memory_used_bytes", {"device": "cuda:0"}) == 5 * 2**30
    assert get("retouchd_worker_restarts_total", {"slot": "0", "device": "cuda:0"}) == 3
    metrics.observe("new", "done", [{"op": "remove_text", "seconds": 0.4}, {"op": "upscale", "seconds": 2.0}])
    metrics.observe("new", "retry", [{"op": "remove_text", "seconds": 0.3}])
    assert get("retouchd_jobs_total", {"rule": "new", "outcome": "retry"}) == 1
    assert get("retouchd_step_duration_seconds_count", {"rule": "new", "op": "remove_text"}) == 2
    assert get("retouchd_job_duration_seconds_sum", {"rule": "new"}) == pytest.approx(2.4)


def test_nvidia_smi_output_is_read_in_bytes() -> None:
    """nvidia-smi's CSV (MiB) becomes bytes per GPU index; unparsable lines and [N/A] values are tolerated."""
    text = "0, NVIDIA H200, 1024, 143771\n1, NVIDIA A100-SXM4-80GB, [N/A], [N/A]\nNo devices were found\n"
    gpus = parse_nvidia_smi(text)
    assert gpus[0] == {"name": "NVIDIA H200", "used": 1024 * 2**20, "total": 143771 * 2**20}
    assert gpus[1] == {"name": "NVIDIA A100-SXM4-80GB", "used": None, "total": None}
    assert list(gpus) == [0, 1]


@pytest.mark.gpu
def test_cuda_memory_is_sampled_on_a_gpu() -> None:
    """On a CUDA machine the device memory comes from the driver: a total of at least 1 GiB, used below it."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    [entry] = sample(["cuda:0"], [])
    assert entry["memory_total"] >= 2**30 and 0 <= entry["memory_used"] <= entry["memory_total"]
    assert entry["name"] and entry["memory_scope"] == "whole device"
