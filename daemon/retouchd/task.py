"""What crosses the process boundary: a job's Task (to a worker) and its TaskResult (back to the daemon).

Plain data in a module of its own, so that the daemon's process never imports the image stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retouchd.rules import Rule
    from retouchd.settings import Settings


@dataclass(frozen=True)
class Task:
    """Everything a worker needs for one job; plain data so that it crosses a process boundary."""

    rule: str
    source: str
    steps: list[dict[str, Any]]
    output: dict[str, Any]
    work_dir: str
    job_id: int | None = None
    sha256: str | None = None
    sidecar: str | None = None
    device: str = "cpu"
    allow_cpu_fallback: bool = True
    cpu_threads: int = 0
    max_input_pixels: int = 100_000_000
    max_dimension: int = 65_535
    max_file_bytes: int = 512 * 1024 * 1024
    max_output_pixels: int = 400_000_000
    engines: dict[str, str] = field(default_factory=dict)
    fault_point: str | None = None
    tmp_prefix: str = ""
    inbox: str | None = None
    """The rule's inbox root: a missing file in a missing inbox is an outage, not a deletion."""

    @classmethod
    def build(cls, rule: Rule, settings: Settings, *, source: str, work_dir: str, device: str, cpu_threads: int,
              variant: str | None = None, **job: Any) -> Task:
        """The task for one file of `rule` under `settings`; `job` = the daemon's job fields (job_id, sha256,
        sidecar, inbox, tmp_prefix, fault_point)."""
        limits = settings.limits
        return cls(rule=rule.name, source=source, steps=[options.model_dump() for options in rule.steps_for(variant)],
                   output=rule.output.model_dump(), work_dir=work_dir, device=device,
                   allow_cpu_fallback=rule.cpu_fallback, cpu_threads=cpu_threads,
                   max_input_pixels=limits.max_input_pixels, max_dimension=limits.max_dimension,
                   max_file_bytes=limits.max_file_bytes, max_output_pixels=limits.max_output_pixels,
                   engines=dict(settings.engines), **job)


@dataclass
class TaskResult:
    ok: bool
    tmp_path: str | None = None
    output_name: str | None = None
    output_sha256: str | None = None
    review: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    error_step: str | None = None
    permanent: bool = True
    traceback_id: str | None = None
    vanished: bool = False
    inbox_bytes: int = 0
    """Bytes this attempt read from inbox files (the worker's share of the daemon's inbox reads)."""
    undecodable: bool = False
    """The input did not decode (empty, truncated, not an image): on a file that changed recently, this may
    be a writer that paused longer than the settle time; the committer looks again before failing it."""
