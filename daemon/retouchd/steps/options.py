"""The options models of the built-in steps, apart from the steps themselves: validating rules (settings,
`rules check`, the daemon's start-up) imports pydantic only, never numpy, Pillow, OpenCV or torch.

Each model also says what a rule needs to know about its step without running it: whether it erases
content (`removes_content`: such steps must come before `upscale`) and what it needs installed
(`preflight`). A step module imports its options from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retouchd.exceptions import ConfigError, ModelError
from retouchd.inpaint import ENGINES
from retouchd.models.registry import BUNDLED, MODEL_NAMES, bundled_files, is_weights_path, native_scales
from retouchd.regions import Region, validate_region

MIN_TILE = 32
"""The smallest tile tiling shrinks to (and that a rule may set)."""


class StepOptions(BaseModel):
    """Options common to every step; each op subclasses it. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    removes_content: ClassVar[bool] = False
    """True for steps that erase overlays or objects; these must run before `upscale`."""

    op: str

    def preflight(self, engines: dict[str, str]) -> None:
        """Check, at start-up, what this step needs (model files, packages); raise ConfigError if missing.

        `engines` maps configured engine/model names to file paths from the settings.
        """


class UpscaleOptions(StepOptions):
    op: Literal["upscale"] = "upscale"
    scale: float = Field(2.0, gt=1.0, le=8.0)
    model: str = "fast"
    """A bundled model name or a path to user weights (.pth / .safetensors)."""
    tile: int | Literal["auto"] = "auto"
    tile_pad: int | Literal["auto"] = "auto"
    """Context pixels around each tile; auto = the network's receptive radius."""
    fp16: bool | Literal["auto"] = "auto"
    """Half precision on CUDA; auto = on CUDA only. The CPU always runs float32."""

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value in MODEL_NAMES or is_weights_path(value):
            return value
        raise ValueError(
            f"unknown upscale model {value!r}; use one of {', '.join(MODEL_NAMES)} "
            "or a path to weights ending in .pth or .safetensors"
        )

    @field_validator("tile")
    @classmethod
    def _tile_size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < MIN_TILE:
            raise ValueError(f"tile must be 'auto' or at least {MIN_TILE} pixels, not {value}")
        return value

    @field_validator("tile_pad")
    @classmethod
    def _pad_size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 128:
            raise ValueError(f"tile_pad must be 'auto' or 0–128 pixels, not {value}")
        return value

    def preflight(self, engines: dict[str, str]) -> None:
        """Bundled weights are installed; user weights exist and load as one of our architectures."""
        try:
            if is_weights_path(self.model):
                from retouchd.models.registry import load_user

                load_user(Path(self.model).expanduser())
            elif BUNDLED[self.model].package is not None:
                for scale in native_scales(self.model):
                    bundled_files(BUNDLED[self.model], scale)
        except ModelError as exc:
            raise ConfigError(f"upscale model {self.model!r} is not usable: {exc}", step=self.op) from exc


class FillOptions(StepOptions):
    """`engine` (an inpainting engine) and the validation of `regions`, which each subclass declares."""

    removes_content: ClassVar[bool] = True

    engine: str = ENGINES[0]

    @field_validator("regions", mode="before", check_fields=False)
    @classmethod
    def _check_regions(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [validate_region(region) for region in value]
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown inpaint engine {value!r}; use one of: {', '.join(ENGINES)}")
        return value

    def preflight(self, engines: dict[str, str]) -> None:
        from retouchd.inpaint import preflight

        preflight(self.engine, engines)


class RemoveObjectsOptions(FillOptions):
    op: Literal["remove_objects"] = "remove_objects"
    mask: Literal["sidecar"] | None = None
    """"sidecar": `<name>.mask.png` (or `<name>_mask.png`) beside the image, white = remove; required."""
    regions: list[Region] = Field(default_factory=list)
    """Boxes [x, y, w, h] in pixels or "10%" strings, combined with the sidecar."""
    dilate: int = Field(0, ge=0, le=512)
    """Grow the mask by this many pixels to cover anti-aliased edges and halos."""

    @model_validator(mode="after")
    def _has_a_source(self) -> RemoveObjectsOptions:
        if self.mask is None and not self.regions:
            raise ValueError('remove_objects needs mask = "sidecar" and/or regions = [[x, y, w, h], ...]')
        return self


class RemoveTextOptions(FillOptions):
    op: Literal["remove_text"] = "remove_text"
    when: Literal["always", "auto"] = "always"
    """"always": remove whatever text is found; "auto": only when the overlay score reaches `threshold`."""
    threshold: float = Field(0.6, ge=0.0, le=1.0)
    min_score: float = Field(0.5, ge=0.0, le=1.0)
    """Evidence (0–1) a single text line needs to be removed."""
    dilate: int = Field(0, ge=0, le=64)
    """Extra pixels around the letters (glow, heavy shadows) beyond the detected rim."""
    regions: list[Region] | None = None
    """Boxes [x, y, w, h] in pixels or "10%" strings: text is looked for only there (e.g. the bottom 15 %)."""
    review_below: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _review_below_threshold(self) -> RemoveTextOptions:
        if self.review_below is not None and self.review_below >= self.threshold:
            raise ValueError(
                f"review_below ({self.review_below}) must be lower than threshold ({self.threshold}): "
                "scores between the two go to review/"
            )
        return self

    def preflight(self, engines: dict[str, str]) -> None:
        from retouchd.textdetect.runtime import model_dir

        try:
            model_dir()
        except ModelError as exc:
            raise ConfigError(str(exc)) from exc
        super().preflight(engines)


OPTIONS: dict[str, type[StepOptions]] = {
    "upscale": UpscaleOptions, "remove_objects": RemoveObjectsOptions, "remove_text": RemoveTextOptions}
"""The built-in ops' options models (a step registered from elsewhere brings its own: Step.options_model)."""
