"""Options shared by the steps that fill pixels in (`remove_objects`, `remove_text`)."""

from __future__ import annotations

from pydantic import field_validator

from retouchd import masks
from retouchd.inpaint import ENGINES
from retouchd.steps.base import StepOptions


class FillOptions(StepOptions):
    """`engine` (an inpainting engine) and the validation of `regions`, which each subclass declares."""

    engine: str = ENGINES[0]

    @field_validator("regions", mode="before", check_fields=False)
    @classmethod
    def _check_regions(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [masks.validate_region(region) for region in value]
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown inpaint engine {value!r}; use one of: {', '.join(ENGINES)}")
        return value
