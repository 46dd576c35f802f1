"""`retouchd report`: a self-contained HTML page of before/after pairs with each job's steps and metrics.

"Before" is the archived original (or the file still in the inbox, or in failed/), "after" the output.
Thumbnails are JPEG, embedded as data URIs, or written beside the page with `--external-images`.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from sqlalchemy import func, select

from retouchd.commands.report.page import Entry, Thumb, render_page
from retouchd.settings import Settings
from retouchd.store import Job, JobState, Store, utcnow

OUTCOMES = ("done", "review", "failed")


class NoPreview(Exception):
    """Why a file has no thumbnail: a reason to show on the page, never raised past this module."""


def outcome_of(job: Job) -> str | None:
    """done, review or failed; None for jobs still queued or running."""
    if job.state == JobState.FAILED:
        return "failed"
    if job.state in (JobState.QUEUED, JobState.RUNNING):
        return None
    asked = any((record.get("metrics") or {}).get("review") for record in job.steps or [])
    return "review" if asked or job.state == JobState.REVIEW else "done"


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB; transparency shown over a light checkerboard."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(im, dtype=np.float32)
        scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
        return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        y, x = np.mgrid[0:rgba.height, 0:rgba.width]
        checker = np.where(((x // 8) + (y // 8)) % 2 == 0, 255, 220).astype(np.uint8)
        board = Image.fromarray(np.stack([checker] * 3, axis=-1)).convert("RGBA")
        return Image.alpha_composite(board, rgba).convert("RGB")
    return im.convert("RGB")


def thumbnail(path: Path, size: tuple[int, int] | int, max_pixels: int) -> Thumb:
    """A JPEG of `path` that fits `size` (a box side, or an exact width×height); raises NoPreview.

    A truncated file (an upload cut short, the usual reason it failed) is shown as far as it decodes.
    """
    try:
        return _thumbnail(path, size, max_pixels)
    except NoPreview as exc:
        if "truncated" not in str(exc).lower():
            raise
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # the report is a one-shot command: nothing else decodes meanwhile
    try:
        thumb = _thumbnail(path, size, max_pixels)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    thumb.partial = True
    return thumb


def header_size(path: Path) -> tuple[int, int] | None:
    """The size the file's header declares, for files that do not decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as opened:
                return opened.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _thumbnail(path: Path, size: tuple[int, int] | int, max_pixels: int) -> Thumb:
    box = size if isinstance(size, int) else max(size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: the limit below is ours
            with Image.open(path) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise NoPreview(f"{width}×{height} is over limits.max_input_pixels")
                turned = opened.getexif().get(0x0112, 1) in (5, 6, 7, 8)
                source = (height, width) if turned else (width, height)
                opened.draft("RGB", (box, box))  # JPEG: decode at a fraction of the size
                image = _to_rgb(ImageOps.exif_transpose(opened))
    except FileNotFoundError:
        raise NoPreview("file no longer exists") from None
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise NoPreview("not a readable image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise NoPreview(f"cannot be read ({exc})") from None
    if isinstance(size, int):
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    else:
        image = image.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=82)
    return Thumb(buf.getvalue(), image.width, image.height, source)


class ImageSink:
    """Where thumbnails go: data URIs in the page, or files in a folder beside it."""

    def __init__(self, folder: Path | None, page: Path) -> None:
        self.folder, self.page = folder, page
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> str:
        if self.folder is None:
            return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        (self.folder / name).write_bytes(data)
        return quote(Path(os.path.relpath(self.folder / name, self.page.parent)).as_posix())


def _first_existing(*paths: str | None) -> Path | None:
    for path in paths:
        if path and Path(path).is_file():
            return Path(path)
    return None


def _preview(entry: Entry, kind: str, path: Path | None, size: tuple[int, int] | int, sink: ImageSink,
             max_pixels: int) -> Thumb | None:
    if path is None:
        entry.notes.append(f"{kind}: no longer on disk")
        return None
    try:
        thumb = thumbnail(path, size, max_pixels)
    except NoPreview as exc:
        entry.notes.append(f"{kind}: {exc}")
        setattr(entry, f"{kind}_size", header_size(path))
        return None
    if thumb.partial:
        entry.notes.append(f"{kind}: the file is cut short; the preview shows the part that decodes")
    setattr(entry, kind, sink.put(f"{entry.job.id}-{kind}.jpg", thumb.data))
    setattr(entry, f"{kind}_size", thumb.source_size)
    setattr(entry, f"{kind}_full", quote(os.path.relpath(path.absolute(), sink.page.absolute().parent)))
    return thumb


def change_centre(before: bytes, after: bytes) -> float:
    """The horizontal centre of what differs between two previews of one size, in % of the width (50 when
    nothing differs): the slider starts there, so that a change on one side is not hidden."""
    with Image.open(io.BytesIO(before)) as b, Image.open(io.BytesIO(after)) as a:
        diff = np.abs(np.asarray(b.convert("L"), dtype=np.int16) - np.asarray(a.convert("L"), dtype=np.int16))
    columns = np.where(diff > 24, diff, 0).sum(axis=0).astype(np.float64)
    if diff.shape[1] == 0 or columns.sum() == 0:
        return 50.0
    centre = float((columns * (np.arange(columns.size) + 0.5)).sum() / columns.sum())
    return round(min(95.0, max(5.0, 100.0 * centre / float(columns.size))), 1)


def build_entry(job: Job, outcome: str, sink: ImageSink, box: int, max_pixels: int) -> Entry:
    """Previews of one job. The output is previewed first; the original is then drawn at exactly the same
    pixel size, so that the slider lines them up (the browser would enlarge a small original anyway)."""
    entry = Entry(job, outcome)
    original = _first_existing(job.archive_path, job.failed_path, job.source_path)
    after = None
    if outcome != "failed":
        after = _preview(entry, "after", _first_existing(job.output_path), box, sink, max_pixels)
    size: tuple[int, int] | int = (after.width, after.height) if after else box
    before = _preview(entry, "before", original, size, sink, max_pixels)
    shown = after or before
    if shown is not None:
        entry.aspect = (shown.width, shown.height)
    if before is not None and after is not None and (before.width, before.height) == (after.width, after.height):
        entry.start = change_centre(before.data, after.data)
    return entry


def collect(store: Store, *, since: timedelta | None, rules: list[str], outcomes: list[str],
            limit: int) -> tuple[list[tuple[Job, str]], int]:
    """The newest `limit` finished jobs that pass the filters (the limit counts what is shown, not what is
    read), and how many jobs of the period are still queued or running."""
    cutoff = utcnow() - since if since else None
    query = select(Job).order_by(Job.updated_at.desc(), Job.id.desc())
    if cutoff is not None:
        query = query.where(Job.updated_at >= cutoff)
    if rules:
        query = query.where(Job.rule.in_(rules))
    active = (JobState.QUEUED, JobState.RUNNING)
    picked: list[tuple[Job, str]] = []
    with store.session() as session:
        pending = int(session.scalar(select(func.count()).select_from(query.where(Job.state.in_(active))
                                                                         .order_by(None).subquery())) or 0)
        for job in session.scalars(query.where(Job.state.not_in(active)).execution_options(yield_per=500)):
            outcome = outcome_of(job)
            if outcome is not None and (not outcomes or outcome in outcomes):
                picked.append((job, outcome))
                if len(picked) == limit:
                    break
    return picked, pending


def write_report(settings: Settings, store: Store, out: Path, *, since: timedelta | None, since_text: str | None,
                 rules: list[str], outcomes: list[str], limit: int, box: int, external: bool) -> dict[str, Any]:
    """Write the page; returns a summary (counts by outcome, pending, path)."""
    from retouchd.store.stats import review_stats

    jobs, pending = collect(store, since=since, rules=rules, outcomes=outcomes, limit=limit)
    folder = out.with_name(out.stem + "_files") if external else None
    sink = ImageSink(folder, out)
    entries = [build_entry(job, outcome, sink, box, settings.limits.max_input_pixels) for job, outcome in jobs]
    meta = {"generated": datetime.now().astimezone(), "since": since_text, "root": str(settings.root.absolute()),
            "pending": pending, "limit": limit, "box": box,
            "stats": review_stats(store.engine, since=utcnow() - since if since else None)}
    page = render_page(entries, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    counts = {o: sum(1 for e in entries if e.outcome == o) for o in OUTCOMES}
    return {"path": str(out), "jobs": len(entries), "pending": pending, **counts,
            "previews": sum(1 for e in entries if e.before) + sum(1 for e in entries if e.after)}
