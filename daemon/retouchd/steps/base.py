"""The Step interface: one class per op, an options model per step, `run(frame, ctx) -> StepResult`.

A step never touches the database or the file system beyond its own inputs (the frame, and the files the
context names, such as a sidecar mask) and returns a new frame plus metrics.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import structlog

from retouchd.steps.options import StepOptions
from retouchd.typing import Frame, Metrics, ModelCache, ProgressFn


class DictCache:
    """Loaded models by key, kept for the life of the object (a worker process, a `process` run)."""

    def __init__(self) -> None:
        self._items: dict[str, object] = {}

    def get(self, key: str, load: Callable[[], object]) -> object:
        if key not in self._items:
            self._items[key] = load()
        return self._items[key]


def _no_progress(done: int, total: int) -> None:
    """Default progress sink: ignore."""


@dataclass
class StepContext:
    """What a step may know about the job it runs in. Built by the pipeline, never by a step."""

    rule: str
    source: Path
    job_id: int | None = None
    sidecar_mask: Path | None = None
    sidecar_bytes: bytes | None = None
    """The sidecar's content, read by the pipeline beneath the inbox (steps never open inbox files)."""
    device: str = "cpu"
    allow_cpu_fallback: bool = True
    max_output_pixels: int = 400_000_000
    cpu_threads: int = 0
    models: ModelCache = field(default_factory=DictCache)
    progress: ProgressFn = _no_progress
    log: Any = field(default_factory=structlog.get_logger)
    engines: dict[str, str] = field(default_factory=dict)
    """Configured model paths by engine name (e.g. {"lama": "/models/big-lama.pt"})."""


@dataclass(frozen=True, slots=True)
class StepResult:
    frame: Frame
    metrics: Metrics = field(default_factory=dict)


OptionsT = TypeVar("OptionsT", bound=StepOptions)


class Step(abc.ABC, Generic[OptionsT]):
    """A unit of image work. Subclasses set `name` and `options_model` and implement `run`."""

    name: ClassVar[str]
    options_model: ClassVar[type[StepOptions]]

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    def preflight(self, engines: dict[str, str]) -> None:
        """Check, at start-up, what this step needs (model files, packages); raise ConfigError if missing.

        `engines` maps configured engine/model names to file paths from the settings. The built-in steps'
        checks live on their options (steps/options.py), so that start-up runs them without the step.
        """
        self.options.preflight(engines)

    def removes_content(self) -> bool:
        """True for steps that erase overlays or objects; these must run before `upscale`."""
        return type(self.options).removes_content

    @abc.abstractmethod
    def run(self, frame: Frame, ctx: StepContext) -> StepResult:
        """Return the processed frame and this step's metrics; raise a RetouchdError subclass on failure."""
