"""`remove_text`: find overlaid text (date stamps, captions, labels, watermarks) and fill it in.

With `when = "auto"` the step is also a router: only images whose overlay score reaches `threshold` are
treated, the others pass through untouched (the same pixels). The score (see `retouchd.textdetect`) is
recorded either way, and `review_below` flags results whose score lies in [review_below, threshold) for a
person to check; the pipeline sends those to review/.

Metrics: `overlay_score` (0–1), `text_area` (share of the image's pixels in the letter mask, also when
the image was not treated), `boxes` (text lines masked), `treated`, `review`, `engine`, `detect_seconds`
and, when treated, `inpaint_seconds`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar, cast

from retouchd import masks
from retouchd.inpaint import inpaint
from retouchd.steps.base import Step, StepContext, StepResult
from retouchd.steps.options import RemoveTextOptions, StepOptions
from retouchd.typing import Frame, Metrics

if TYPE_CHECKING:
    from retouchd.textdetect import OcrModels


def _models(ctx: StepContext) -> OcrModels:
    from retouchd.textdetect import load_models

    # One session pair per worker and device; threads follow the pool's share of the CPU.
    key = f"textdetect:{ctx.device}:{ctx.cpu_threads}"
    return cast("OcrModels", ctx.models.get(key, lambda: load_models(ctx.device, ctx.cpu_threads)))


class RemoveTextStep(Step[RemoveTextOptions]):
    name = "remove_text"
    options_model: ClassVar[type[StepOptions]] = RemoveTextOptions

    def _pixel_regions(self, frame: Frame) -> list[tuple[int, int, int, int]] | None:
        if self.options.regions is None:
            return None
        boxes = (masks.region_box(region, frame.width, frame.height) for region in self.options.regions)
        return [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]

    def run(self, frame: Frame, ctx: StepContext) -> StepResult:
        from retouchd.textdetect import detect

        opts = self.options
        start = time.perf_counter()
        found = detect(
            _models(ctx), frame.rgb, regions=self._pixel_regions(frame), min_score=opts.min_score, halo=opts.dilate
        )
        score = found.score
        metrics: Metrics = {
            "overlay_score": score,
            "text_area": round(float(found.mask.mean()), 6),
            "boxes": len(found.masked),
            "treated": False,
            "review": opts.review_below is not None and opts.review_below <= score < opts.threshold,
            "engine": opts.engine,
            "detect_seconds": round(time.perf_counter() - start, 3),
        }
        if (opts.when == "auto" and score < opts.threshold) or not (found.mask.any() or found.bands or found.tiles
                                                                       or found.shadows):
            return StepResult(frame, metrics)
        start = time.perf_counter()
        rgb, hole = frame.rgb, found.mask
        if found.bands:
            from retouchd.textdetect.unblend import apply

            rgb, clipped = apply(rgb, list(found.bands))
            hole = hole | clipped
        if found.tiles is not None:
            from retouchd.textdetect import watermark

            rgb, clipped = watermark.apply(rgb, found.tiles)
            hole = hole | clipped
            metrics["tiles"] = found.tiles.copies
        if found.shadows:
            from retouchd.textdetect.shadow import unshadow

            rgb = unshadow(rgb, list(found.shadows))
            metrics["shadows"] = len(found.shadows)
        if found.pages:
            from retouchd.textdetect import pagefill

            rgb, painted = pagefill.apply(rgb, list(found.pages))
            hole = hole & ~painted
        metrics["bands"] = len(found.bands)
        from retouchd.textdetect.rim import take_rim

        rgb = inpaint(rgb, take_rim(rgb, hole), engine=opts.engine, ctx=ctx)
        metrics["treated"] = True
        metrics["inpaint_seconds"] = round(time.perf_counter() - start, 3)
        return StepResult(Frame(rgb, frame.alpha), metrics)
