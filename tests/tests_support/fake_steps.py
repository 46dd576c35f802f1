"""A fake removal step, to test rule ordering without a real model."""

from __future__ import annotations

from typing import ClassVar, Literal

from retouchd.steps.base import Step, StepContext, StepOptions, StepResult
from retouchd.typing import Frame


class FakeRemovalOptions(StepOptions):
    op: Literal["fake_removal"] = "fake_removal"


class FakeRemoval(Step[FakeRemovalOptions]):
    name = "fake_removal"
    options_model: ClassVar[type[StepOptions]] = FakeRemovalOptions

    def removes_content(self) -> bool:
        return True

    def run(self, frame: Frame, ctx: StepContext) -> StepResult:
        return StepResult(frame, {})
