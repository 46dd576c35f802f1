"""Run one rule's steps on one file: read (hash-checked) → decode → steps → encode to a durable temp file.

This is the whole of a job's risky work. It runs inside a worker process (pool.py) or in-process for
`retouchd process`, and it never touches the database, the outbox or the archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from retouchd import beneath
from retouchd.exceptions import DecodeError, InputError, LimitError, RetouchdError, SourceChangedError, UnsafePathError
from retouchd.fsops import as_transient
from retouchd.images import Decoded, decode, encode, output_name
from retouchd.outputspec import OutputSpec
from retouchd.steps import build_step, step_class
from retouchd.steps.base import StepContext
from retouchd.steps.options import StepOptions
from retouchd.task import Task, TaskResult
from retouchd.typing import ModelCache, ProgressFn
from retouchd.untouched import can_copy, copy_source

log = structlog.get_logger("retouchd.pipeline")


def _release_kept_pools(options: StepOptions, device: str) -> None:
    """Before a step: a previous job's ncnn blocks, kept for the next ncnn upscale (NcnnModule.settle), must
    not sit under any other kind of step (a bundled model on the CPU is the ncnn backend)."""
    ncnnrun = sys.modules.get("retouchd.models.ncnnrun")
    if ncnnrun is None:  # no ncnn model ran in this process: nothing is kept
        return
    from retouchd.models.registry import BUNDLED

    model = BUNDLED.get(str(getattr(options, "model", "")))
    if not (options.op == "upscale" and device == "cpu" and model is not None and model.family != "resample"):
        ncnnrun.release_held()


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        return self._fh.write(view)


def fault(task: Task, point: str) -> None:
    """Test-only fault injection at `point`: `POINT` exits abruptly, `hang-POINT` hangs, `slow-POINT` waits
    3 s, `segv-POINT` segfaults; `...@NAME` limits it to the file called NAME."""
    if not task.fault_point:
        return
    spec, _, only = task.fault_point.partition("@")
    if only and Path(task.source).name != only:
        return
    if spec == point:
        os._exit(86)
    if spec == f"hang-{point}":
        time.sleep(3600)
    if spec == f"slow-{point}":
        time.sleep(3)
    if spec == f"segv-{point}":
        import ctypes

        ctypes.string_at(0)


def _read_source(task: Task) -> tuple[bytes, os.stat_result]:
    """The job's bytes, read beneath its inbox (never through a link, never from a FIFO or device)."""
    with beneath.open_file(Path(task.inbox) if task.inbox else None, Path(task.source)) as (fd, st):
        if st.st_size > task.max_file_bytes:
            raise LimitError(
                f"file is {st.st_size:,} bytes, over limits.max_file_bytes {task.max_file_bytes:,}; "
                "raise the limit to accept it"
            )
        if st.st_size == 0:
            raise DecodeError("empty file (0 bytes); write the image again")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(task.max_file_bytes + 1)
        beneath.count_read(len(data))
    if task.sha256 is not None and hashlib.sha256(data).hexdigest() != task.sha256:
        raise SourceChangedError("the file changed after it was queued (hash mismatch); it will be retried")
    return data, st


def _still_written(task: Task, read: os.stat_result) -> bool:
    """Whether the file's size or mtime moved since it was read: a "truncated" file that is still growing."""
    try:
        now = beneath.lstat(Path(task.inbox), Path(task.source)) if task.inbox else os.lstat(task.source)
    except (OSError, RetouchdError):
        return False
    return (now.st_size, now.st_mtime_ns) != (read.st_size, read.st_mtime_ns)


def _read_sidecar(task: Task) -> bytes | None:
    """The sidecar mask's bytes, read beneath the inbox like the image (never through a link or a FIFO)."""
    if not task.sidecar:
        return None
    path = Path(task.sidecar)
    try:
        data, _ = beneath.read_file(Path(task.inbox) if task.inbox else None, path, task.max_file_bytes)
    except FileNotFoundError as exc:
        raise InputError(f"sidecar mask {path} disappeared before it could be read; drop it again") from exc
    except (beneath.NotRegularError, UnsafePathError) as exc:
        raise InputError(f"sidecar mask {path} cannot be read safely: {exc}") from exc
    if len(data) > task.max_file_bytes:
        raise InputError(f"sidecar mask {path} is larger than limits.max_file_bytes")
    return data


def _context(task: Task, bound: Any, models: ModelCache | None, progress: ProgressFn | None) -> StepContext:
    ctx = StepContext(
        rule=task.rule, source=Path(task.source), job_id=task.job_id,
        sidecar_mask=Path(task.sidecar) if task.sidecar else None, sidecar_bytes=_read_sidecar(task),
        device=task.device,
        allow_cpu_fallback=task.allow_cpu_fallback, max_output_pixels=task.max_output_pixels,
        cpu_threads=task.cpu_threads, engines=dict(task.engines), log=bound,
    )
    if models is not None:
        ctx.models = models
    if progress is not None:
        ctx.progress = progress
    return ctx


def _write_output(task: Task, write: Callable[[Any], object]) -> tuple[Path, str]:
    """Write the result to a temp file in the work folder and fsync it; no partial temp file outlives a failure."""
    tmp = Path(task.work_dir) / f"{task.tmp_prefix}{task.job_id or 'x'}-{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "wb") as fh:
            writer = _HashingWriter(fh)
            write(writer)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, writer.digest.hexdigest()


def _decode_source(task: Task, data: bytes, read: os.stat_result) -> Decoded:
    """Decode the source; a "truncated" file that grew since it was read is still being written (transient)."""
    try:
        return decode(data, max_pixels=task.max_input_pixels, max_dimension=task.max_dimension)
    except DecodeError as exc:
        if str(exc).startswith("truncated") and _still_written(task, read):
            raise SourceChangedError("still being written: the file grew after it was queued; "
                                     "it will be taken again once complete") from exc
        raise


def run_task(task: Task, *, models: ModelCache | None = None, progress: ProgressFn | None = None,
             on_step: Any = None, gate: contextlib.AbstractContextManager[Any] | None = None,
             on_computed: Callable[[], None] | None = None) -> TaskResult:
    """Process one file; never raises for a problem with the job (the result says what went wrong).

    Only the steps run inside `gate` (a worker's compute lock: reading, decoding and encoding of another job
    may run meanwhile); `on_computed` is called when they are done, before the encode."""
    before = beneath.thread_bytes_read()
    result = _run_task(task, models, progress, on_step, gate or contextlib.nullcontext(), on_computed)
    result.inbox_bytes = beneath.thread_bytes_read() - before
    return result


def _run_task(task: Task, models: ModelCache | None, progress: ProgressFn | None, on_step: Any,
              gate: contextlib.AbstractContextManager[Any], on_computed: Callable[[], None] | None) -> TaskResult:
    records: list[dict[str, Any]] = []
    current = "read"
    bound = log.bind(job_id=task.job_id, rule=task.rule, path=task.source)
    try:
        data, read = _read_source(task)
        current = "decode"
        decoded = _decode_source(task, data, read)
        source_sha = task.sha256 or hashlib.sha256(data).hexdigest()
        del data
        frame, review = decoded.frame, False
        ctx = _context(task, bound, models, progress)
        with gate:
            for raw in task.steps:
                options: StepOptions = step_class(raw["op"]).options_model.model_validate(raw)
                current = options.op
                _release_kept_pools(options, ctx.device)
                if on_step is not None:
                    on_step(current)
                ctx.log = bound.bind(step=current)
                started = time.perf_counter()
                result = build_step(options).run(frame, ctx)
                seconds = time.perf_counter() - started
                frame = result.frame
                review = review or bool(result.metrics.get("review"))
                records.append({"op": current, "seconds": round(seconds, 4), "metrics": result.metrics})
                # Debug, not info: the metrics reach the job's row (and `report`) through TaskResult.steps,
                # and a line per step was one of ~4 per file that made logging a visible share of a small job.
                ctx.log.debug("step done", seconds=round(seconds, 3), **{k: v for k, v in result.metrics.items()})
                fault(task, f"after-step-{current}")
        if on_computed is not None:
            on_computed()
        current = "encode"
        spec = OutputSpec.model_validate(task.output)
        name = output_name(Path(task.source).name, decoded.info, spec)
        if can_copy(decoded.frame, frame, decoded.info, spec):
            bound.info("no step changed a pixel: the output is the input's bytes")
            tmp, digest = _write_output(task, lambda out: copy_source(task.inbox, task.source, out, source_sha))
        else:
            tmp, digest = _write_output(task, lambda out: encode(frame, decoded.info, spec, out))
        fault(task, "after-encode")
        return TaskResult(ok=True, tmp_path=str(tmp), output_name=name, output_sha256=digest, review=review,
                          steps=records)
    except FileNotFoundError:
        if task.inbox and not os.path.isdir(task.inbox):
            return TaskResult(ok=False, error=f"the inbox {task.inbox} is unavailable (unmounted?); will retry",
                              error_step=current, permanent=False, steps=records)
        return TaskResult(ok=False, error="the file disappeared from the inbox before it was processed",
                          error_step=current, permanent=True, steps=records, vanished=True)
    except PermissionError as exc:
        return TaskResult(ok=False, error=f"permission denied: {exc}; fix the file's or share's permissions",
                          error_step=current, permanent=False, steps=records)
    except RetouchdError as exc:
        bound.warning("job step failed", step=exc.step or current, error=str(exc), permanent=exc.permanent)
        return TaskResult(ok=False, error=str(exc), error_step=exc.step or current, permanent=exc.permanent,
                          steps=records, undecodable=isinstance(exc, DecodeError) and current in ("read", "decode"))
    except OSError as exc:
        transient = as_transient(exc)
        bound.warning("job I/O error", step=current, error=str(exc), transient=transient)
        return TaskResult(ok=False, error=f"I/O error: {exc}", error_step=current, permanent=not transient,
                          steps=records)
    except MemoryError:
        return TaskResult(ok=False, error="out of memory; lower limits.max_input_pixels or the number of slots",
                          error_step=current, permanent=False, steps=records)
    except Exception as exc:
        tb_id = uuid.uuid4().hex[:10]
        bound.error("internal error", step=current, traceback_id=tb_id, traceback=traceback.format_exc())
        return TaskResult(ok=False, error=f"internal error in {current}: {exc!r} (traceback {tb_id} in the log)",
                          error_step=current, permanent=False, traceback_id=tb_id, steps=records)

