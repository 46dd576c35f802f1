"""Device busy time / wall time of one slot, with and without the codec overlap (issue 16).

A real worker process (retouchd.worker) runs the jobs, handed over as slot.Slot does: one at a time
(workers.overlap = false), or the next one as soon as the last one reports "computed" (a CPU slot: its encode
then runs in its own thread while the next is read, decoded and computed), or (`prefetch`, a GPU slot) as
soon as the last one has started its step, so the next one's read and decode run while the device computes
too. The simulated device is measured all three ways, the real CPU step the first two. Inputs are the photo
set's holdout crops (768×512 PNG), written as files; outputs are PNG at the default `png_compression`.

- `sim`: the model step is a fixed-time compute that leaves the CPU to the codec, as a GPU does
  (`--device-seconds`, sleep), then a nearest ×4 enlargement (so the encoder gets a ×4 output: 6.3 MP).
- `fast`: the real `upscale` step, `fast` ×4, on this machine's CPU (ncnn, `--threads`): here the "device"
  is the CPU the codec also needs, so the overlap can only fill the gaps.

Device busy = the sum of the model steps' own seconds (the child runs one step at a time); wall = first
hand-over to last result. busy / wall = 1.0 means the device never waited for the codec.

    python bench/codec_overlap.py [--files 8] [--device-seconds 0.25,0.5,1.0] [--fast-files 3] [--threads 2]
                                  [--device cuda:0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

from retouchd import worker as worker_module
from retouchd.pipeline import Task
from retouchd.steps.base import Step, StepContext, StepOptions, StepResult
from retouchd.typing import Frame

sys.path.insert(0, str(Path(__file__).parent))
from photoset import photos


class SimOptions(StepOptions):
    op: Literal["device_sim"] = "device_sim"
    seconds: float = 0.5


class SimStep(Step[SimOptions]):
    """A device step: `seconds` of compute that does not use the CPU, then a nearest ×4 enlargement."""

    name = "device_sim"
    options_model: ClassVar[type[StepOptions]] = SimOptions

    def run(self, frame: Frame, ctx: StepContext) -> StepResult:
        began = time.time()
        time.sleep(self.options.seconds)
        rgb = np.repeat(np.repeat(frame.rgb, 4, axis=0), 4, axis=1)
        return StepResult(Frame(rgb), {"began": began, "ended": time.time()})


def bench_child(*args: Any) -> None:
    """The worker's entry point, with the simulated step registered (spawned: imports this file anew)."""
    from retouchd.steps import REGISTRY

    REGISTRY["device_sim"] = "__mp_main__:SimStep"
    worker_module.child_main(*args)


def run_slot(tasks: list[Task], *, overlap: bool, prefetch: bool = False) -> dict[str, Any]:
    """Hand `tasks` to one worker as a slot does; device busy seconds, wall seconds and their ratio. The
    first task only warms the worker (imports, model load), as a daemon's slot is warm: it is not timed.
    `prefetch`: the next job is handed over once the one in the worker has started its step (not only once it
    computed), so its read and decode run while the device computes."""
    worker = worker_module.Worker("cpu", "json", "warning")
    computed: set[str] = set()
    stepping: set[str] = set()
    busy = 0.0

    def on_message(message: tuple[Any, ...]) -> None:
        if message[0] == "computed":
            computed.add(message[1])
        elif message[0] == "step":
            stepping.add(message[1])

    def results() -> list[Any]:
        ended = worker.pump(wait=0.01, timeout=3600, on_message=on_message, tick=lambda key: None, tick_every=3600)
        for event in ended:
            if event.kind != "result" or event.result is None or not event.result.ok:
                raise SystemExit(f"job failed: {event}")
            Path(event.result.tmp_path or "").unlink(missing_ok=True)
        return ended

    worker.submit("warm", tasks[0])
    while not results():
        pass
    pending = [(str(i), task) for i, task in enumerate(tasks[1:])]
    done = 0
    started = time.perf_counter()
    spans: list[tuple[float, float, float]] = []
    handed: dict[str, float] = {}
    queue = list(pending)
    while done < len(pending):
        ahead = computed | stepping if prefetch else computed
        if queue and (not worker.sent or (overlap and len(worker.sent) == 1 and set(worker.sent) <= ahead)):
            handed[queue[0][0]] = time.time()
            worker.submit(*queue.pop(0))
        for event in results():
            done += 1
            assert event.result is not None
            busy += sum(step["seconds"] for step in event.result.steps)
            metrics = event.result.steps[0]["metrics"]
            if "began" in metrics:
                spans.append((metrics["began"] - handed[event.key or ""], metrics["began"], metrics["ended"]))
    wall = time.perf_counter() - started
    worker.stop()
    row = {"overlap": overlap, "jobs": len(pending), "busy_s": round(busy, 2), "wall_s": round(wall, 2),
           "busy_over_wall": round(busy / wall, 3)}
    if spans:  # where the device waited: hand-over → step start, and previous step end → step start
        spans.sort(key=lambda span: span[1])
        row["handover_to_step_ms"] = round(1000 * float(np.median([span[0] for span in spans])))
        row["device_gap_ms"] = round(1000 * float(np.median([b[1] - a[2] for a, b in pairwise(spans)])))
    return row


def _tasks(sources: list[Path], work: Path, steps: list[dict[str, Any]], threads: int,
           device: str = "cpu") -> list[Task]:
    return [Task(rule="bench", source=str(path), steps=steps, output={}, work_dir=str(work), cpu_threads=threads,
                 device=device, allow_cpu_fallback=False, tmp_prefix=f"{i}-") for i, path in enumerate(sources)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=8, help="timed jobs per run (one more warms the worker)")
    parser.add_argument("--device-seconds", default="0.25,0.5,1.0")
    parser.add_argument("--fast-files", type=int, default=3, help="timed jobs of the real `fast` run (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="device of the real `fast` run (cuda:0 on a GPU machine)")
    parser.add_argument("--subset", default="holdout")
    args = parser.parse_args()
    worker_module.child_main = bench_child  # type: ignore[assignment]  # the spawned worker's target
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="codec-overlap-") as tmp:
        folder, work = Path(tmp) / "in", Path(tmp) / "work"
        folder.mkdir()
        work.mkdir()
        crops = photos(args.subset)
        sources = []
        for i in range(max(args.files, args.fast_files) + 1):
            name, rgb = crops[i % len(crops)]
            path = folder / f"{i:02d}-{name}.png"
            Image.fromarray(rgb).save(path, compress_level=6)
            sources.append(path)
        for seconds in [float(s) for s in args.device_seconds.split(",") if s]:
            tasks = _tasks(sources[: args.files + 1], work, [{"op": "device_sim", "seconds": seconds}], args.threads)
            for overlap, prefetch in ((False, False), (True, False), (True, True)):
                row = {"step": f"sim {seconds} s", **run_slot(tasks, overlap=overlap, prefetch=prefetch),
                       "prefetch": prefetch}
                print(json.dumps(row), flush=True)
                rows.append(row)
        if args.fast_files:
            steps = [{"op": "upscale", "scale": 4, "model": "fast"}]
            tasks = _tasks(sources[: args.fast_files + 1], work, steps, args.threads, args.device)
            gpu = args.device != "cpu"  # a GPU slot hands over the next job from the step's start
            for overlap in (False, True):
                row = {"step": f"fast ×4 {args.device}" + (f" {args.threads} threads" if args.device == "cpu" else ""),
                       **run_slot(tasks, overlap=overlap, prefetch=overlap and gpu), "prefetch": overlap and gpu}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("| step | overlap | jobs | device busy s | wall s | busy / wall | device gap ms (median) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        overlap = ("from step start" if row["prefetch"] else "from computed") if row["overlap"] else "off"
        print(f"| {row['step']} | {overlap} | {row['jobs']} | {row['busy_s']} | {row['wall_s']} | "
              f"{row['busy_over_wall']} | {row.get('device_gap_ms', '')} |")


if __name__ == "__main__":
    main()
