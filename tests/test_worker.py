"""Worker processes (retouchd.worker): tied to the daemon's life, or say why not."""

from __future__ import annotations

import ctypes
import errno
import platform
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouchd import worker


def test_die_with_parent_reports_a_failed_prctl(monkeypatch: pytest.MonkeyPatch) -> None:
    """prctl(PR_SET_PDEATHSIG) returning -1 is reported with its errno (the worker logs it once), not
    ignored; success reports nothing."""

    class Libc:
        def __init__(self, result: int) -> None:
            self.result = result

        def prctl(self, *args: int) -> int:
            ctypes.set_errno(errno.EPERM)
            return self.result

    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: Libc(-1))
    assert worker._die_with_parent() == "Operation not permitted"
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: Libc(0))
    assert worker._die_with_parent() is None


def _faults(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[7])  # minflt


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not Path("/proc/self/stat").exists(),
                    reason="glibc's heap policy, read from /proc")
def test_a_worker_keeps_a_small_jobs_heap_for_the_next(tmp_path: Path) -> None:
    """Small jobs one after another reuse the freed heap (retouchd.heap): with glibc's default trimming,
    each 256×171 lanczos ×2 job returned its ~1.5 MB of arrays and faulted ~420 pages in again."""
    from retouchd.task import Task

    inbox = tmp_path / "in"
    inbox.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (171, 256, 3), dtype=np.uint8)).save(inbox / f"{i}.png")
    work = worker.Worker("cpu", "json", "warning")
    work.start()
    try:
        faults = []
        for i in range(8):
            assert work.pid is not None
            before = _faults(work.pid)
            task = Task(rule="r", source=str(inbox / f"{i}.png"), output={}, work_dir=str(tmp_path),
                        steps=[{"op": "upscale", "scale": 2, "model": "lanczos"}], inbox=str(inbox))
            work.submit(f"k{i}", task)
            events: list[worker.Event] = []
            while not events:
                events = work.pump(wait=0.2, timeout=120, on_message=lambda message: None,
                                   tick=lambda key: None, tick_every=1000)
            assert events[0].kind == "result" and events[0].result is not None and events[0].result.ok
            faults.append(_faults(work.pid) - before)
    finally:
        work.stop(timeout=60)
    assert sorted(faults[3:])[2] < 150, faults  # the median of the last five jobs, warm


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="threads read from /proc")
def test_a_worker_runs_its_jobs_on_kept_threads(tmp_path: Path) -> None:
    """A job runs on a thread kept from the job before (two at most), not on a new one per job: a thread's
    first job pays for its stack, its malloc arena's cache and OpenCV's per-thread state."""
    from retouchd.task import Task

    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 24), (i, 2, 3)).save(inbox / f"{i}.png")
    work = worker.Worker("cpu", "json", "warning")
    work.start()
    seen = []
    try:
        for i in range(2):
            task = Task(rule="r", source=str(inbox / f"{i}.png"), output={}, work_dir=str(tmp_path),
                        steps=[{"op": "upscale", "scale": 2, "model": "lanczos"}], inbox=str(inbox),
                        fault_point="slow-after-encode")  # 3 s with the job's thread alive, after its work
            work.submit(f"k{i}", task)
            time.sleep(1.5)
            assert work.pid is not None
            seen.append({entry.name for entry in Path(f"/proc/{work.pid}/task").iterdir()})
            events: list[worker.Event] = []
            while not events:
                events = work.pump(wait=0.2, timeout=120, on_message=lambda message: None,
                                   tick=lambda key: None, tick_every=1000)
            assert events[0].kind == "result" and events[0].result is not None and events[0].result.ok
    finally:
        work.stop(timeout=60)
    assert seen[1] <= seen[0], seen  # no thread in the second job that the first did not have
