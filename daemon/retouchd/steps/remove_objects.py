"""`remove_objects`: fill regions given by a sidecar mask and/or fixed boxes (photobombers, logos, stickers)."""

from __future__ import annotations

import time
from typing import ClassVar

from retouchd import masks
from retouchd.exceptions import InputError
from retouchd.inpaint import inpaint
from retouchd.steps.base import Step, StepContext, StepResult
from retouchd.steps.options import RemoveObjectsOptions, StepOptions
from retouchd.typing import Frame, Mask, Metrics


class RemoveObjectsStep(Step[RemoveObjectsOptions]):
    name = "remove_objects"
    options_model: ClassVar[type[StepOptions]] = RemoveObjectsOptions

    def build_mask(self, frame: Frame, ctx: StepContext) -> Mask:
        """The sidecar (if the rule asks for it) united with the regions, then dilated."""
        mask = masks.regions_mask(self.options.regions, frame.width, frame.height)
        if self.options.mask == "sidecar":
            if ctx.sidecar_mask is None:
                raise InputError(
                    f"rule {ctx.rule!r} removes objects by sidecar mask, but no {ctx.source.stem}.mask.png "
                    f"is beside {ctx.source.name} (the daemon waits watch.sidecar_wait for a late one); place "
                    f"the mask (white = remove) beside it, then `retouchd retry` the job",
                    step=self.name,
                )
            mask |= masks.load_sidecar(ctx.sidecar_mask, frame.width, frame.height, ctx.sidecar_bytes)
        return masks.dilate(mask, self.options.dilate)

    def run(self, frame: Frame, ctx: StepContext) -> StepResult:
        start = time.perf_counter()
        try:
            mask = self.build_mask(frame, ctx)
        except InputError as exc:
            exc.step = exc.step or self.name
            raise
        metrics: Metrics = {
            "mask_fraction": round(float(mask.mean()), 6),
            "mask_components": masks.components(mask),
            "engine": self.options.engine,
        }
        if not mask.any():
            metrics["inpaint_seconds"] = 0.0
            return StepResult(frame, metrics)
        rgb = inpaint(frame.rgb, mask, engine=self.options.engine, ctx=ctx)
        metrics["inpaint_seconds"] = round(time.perf_counter() - start, 3)
        return StepResult(Frame(rgb, frame.alpha), metrics)
