"""The report's HTML: one page, inline CSS and plain JS, no network. Every value from the database is escaped.

The page filters by rule, outcome and file name (kept in the URL's #fragment, so a filtered view can be
bookmarked), switches between a slider and side by side, and marks previews that fail to load; once
loaded, <body> carries data-images-loaded / data-images-broken counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from retouchd.store.states import printable

if TYPE_CHECKING:
    from retouchd.store import Job

SHOWN_METRICS = {"overlay_score", "tile", "tiles", "device", "width", "height"}
"""Metrics with a column of their own (or, for the output size, a place in the card's facts)."""

CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;color:#222;background:#f4f4f4}
header.top{padding:16px 24px;background:#fff;border-bottom:1px solid #ddd}h1{margin:0 0 4px;font-size:20px}
.muted{color:#777}.bar{display:flex;flex-wrap:wrap;gap:12px;align-items:center;padding:10px 24px;
background:#fafafa;border-bottom:1px solid #ddd;position:sticky;top:0;z-index:2}
.bar label{display:flex;gap:6px;align-items:center}main{padding:16px 24px}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;vertical-align:top}
th{font-weight:600;color:#555}.summary td,.summary th{border-bottom:1px solid #e4e4e4}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px;align-items:start}
.job{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;min-width:0}
.job h3{margin:0 0 8px;font-size:14px;display:flex;gap:6px;align-items:baseline;min-width:0}
.job h3 .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.badge{font-size:12px;padding:1px 6px;border-radius:8px;color:#fff;background:#777}
.badge.done{background:#2e7d32}.badge.review{background:#b26a00}.badge.failed{background:#c62828}
.ba{position:relative;overflow:hidden;background:#e8e8e8;border-radius:4px;--pos:50%}
.ba img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain;display:block}
.ba img.before{clip-path:inset(0 calc(100% - var(--pos)) 0 0)}
.ba.pair::after{content:"";position:absolute;top:0;bottom:0;left:var(--pos);width:2px;margin-left:-1px;
background:#fff;box-shadow:0 0 3px #000;pointer-events:none}
.ba input{position:absolute;inset:0;width:100%;height:100%;margin:0;opacity:0;cursor:ew-resize}
.ba .lbl{position:absolute;top:4px;font-size:11px;background:rgba(0,0,0,.55);color:#fff;padding:0 5px;
border-radius:3px;pointer-events:none}.ba .lbl.l{left:4px}.ba .lbl.r{right:4px}
.ba .none{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;color:#888}
body.sbs .ba.pair{display:grid;grid-template-columns:1fr 1fr;gap:4px;aspect-ratio:auto!important}
body.sbs .ba.pair img{position:static;height:auto;clip-path:none}body.sbs .ba.pair img.before{order:-1}
body.sbs .ba.pair input,body.sbs .ba.pair::after{display:none}
.facts{margin:8px 0 4px;font-size:12px;color:#555}.steps{width:100%;font-size:12px}
.steps td:nth-child(2){white-space:nowrap}.steps td.more{color:#777;word-break:break-word;padding-top:0}
.error{color:#b71c1c;font-size:13px;margin:6px 0 0;word-break:break-word}.notes{color:#888;font-size:12px}
.failures td{border-bottom:1px solid #eee}img.broken{visibility:hidden}
[hidden]{display:none!important}
body.diff .ba.pair img.before{clip-path:none;mix-blend-mode:difference}
body.diff .ba.pair input,body.diff .ba.pair::after{display:none}
.full{font-size:12px;margin-left:auto}.ba img,.ba input{cursor:ew-resize}
#zoom{position:fixed;inset:0;z-index:9;background:rgba(0,0,0,.85);overflow:auto;padding:40px 16px 16px}
#zoom .ba{margin:auto;width:max-content;max-width:none;background:#000}
#zoom .ba img{position:static;width:auto;height:auto;max-width:none}#zoom .ba img.before{position:absolute;top:0;left:0}
#zoom button{position:fixed;top:8px;right:16px;z-index:10}
"""

JS = """
const $ = s => document.querySelector(s), all = s => Array.from(document.querySelectorAll(s));
const rule = $('#f-rule'), outcome = $('#f-outcome'), text = $('#f-text'), view = $('#f-view');
function apply(write) {
  let shown = 0;
  for (const el of all('[data-rule]')) {
    const ok = (!rule.value || el.dataset.rule === rule.value) &&
      (!outcome.value || el.dataset.outcome === outcome.value) &&
      (!text.value || el.dataset.name.toLowerCase().includes(text.value.toLowerCase()));
    el.hidden = !ok;
    if (ok && el.classList.contains('job')) shown++;
  }
  $('#shown').textContent = shown;
  $('#no-failures').hidden = all('.failures tbody tr:not([hidden])').length > 0;
  document.body.classList.toggle('sbs', view.value === 'sbs');
  document.body.classList.toggle('diff', view.value === 'diff');
  if (write) {
    const p = new URLSearchParams();
    for (const [k, el] of [['rule', rule], ['outcome', outcome], ['q', text], ['view', view]])
      if (el.value && !(k === 'view' && el.value === 'slider')) p.set(k, el.value);
    history.replaceState(null, '', '#' + p.toString());
  }
}
const p = new URLSearchParams(location.hash.slice(1));
for (const [k, el] of [['rule', rule], ['outcome', outcome], ['q', text], ['view', view]])
  if (p.has(k)) el.value = p.get(k);
for (const el of [rule, outcome, text, view]) el.addEventListener('input', () => apply(true));
document.addEventListener('input', e => {
  if (e.target.matches('.ba input')) e.target.parentElement.style.setProperty('--pos', e.target.value + '%');
});
const zoom = $('#zoom');
document.addEventListener('click', e => {
  const a = e.target.closest('a.full');
  if (!a) return;
  e.preventDefault();
  zoom.querySelector('img.after').src = a.dataset.after || a.dataset.before;
  const b = zoom.querySelector('img.before');
  b.hidden = !(a.dataset.after && a.dataset.before);
  if (!b.hidden) b.src = a.dataset.before;
  const pair = zoom.querySelector('.ba');
  pair.classList.toggle('pair', !b.hidden);
  pair.style.setProperty('--pos', a.dataset.start + '%');
  zoom.querySelector('input').value = a.dataset.start;
  zoom.hidden = false;
});
zoom.querySelector('button').addEventListener('click', () => { zoom.hidden = true; });
document.addEventListener('keydown', e => { if (e.key === 'Escape') zoom.hidden = true; });
document.addEventListener('error', e => { if (e.target.tagName === 'IMG') e.target.classList.add('broken'); }, true);
window.addEventListener('load', () => {
  const imgs = all('main img'), ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok;
  document.body.dataset.imagesBroken = imgs.length - ok;
  if (imgs.length > ok) { $('#broken').hidden = false; $('#broken').textContent = (imgs.length - ok) +
    ' preview(s) failed to load; were the files beside the page moved?'; }
});
apply(false);
"""


@dataclass
class Thumb:
    data: bytes
    width: int
    height: int
    source_size: tuple[int, int]
    partial: bool = False
    """The file is cut short: only its beginning decoded (the rest is grey)."""


@dataclass
class Entry:
    job: Job
    outcome: str
    before: str | None = None
    after: str | None = None
    before_size: tuple[int, int] | None = None
    after_size: tuple[int, int] | None = None
    aspect: tuple[int, int] = (4, 3)
    notes: list[str] = field(default_factory=list)
    before_full: str | None = None
    after_full: str | None = None
    """Links (relative to the page) to the full-size files, opened on a click."""
    start: float = 50.0
    """Where the slider starts, in % of the width: the middle of what changed."""

    @property
    def seconds(self) -> float:
        return sum(float(record.get("seconds") or 0) for record in self.job.steps or [])


def _e(value: Any) -> str:
    return escape(printable(str(value)), quote=True)


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value / 60:.1f} min"


def _size(size: tuple[int, int] | None) -> str:
    return f"{size[0]}×{size[1]}" if size else "?"


def _metric(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _steps(entry: Entry) -> str:
    rows = []
    for record in entry.job.steps or []:
        m = record.get("metrics") or {}
        overlay = f"{float(m['overlay_score']):.2f}" if isinstance(m.get("overlay_score"), int | float) else "–"
        tile = f"{m['tile']} px × {m.get('tiles', '?')}" if m.get("tile") else "–"
        more = " ".join(f"{k}={_metric(v)}" for k, v in m.items() if k not in SHOWN_METRICS and v is not None)
        rows.append(f"<tr><td>{_e(record.get('op'))}</td><td>{_seconds(float(record.get('seconds') or 0))}</td>"
                    f"<td>{overlay}</td><td>{_e(tile)}</td><td>{_e(m.get('device') or entry.job.device or '–')}</td>"
                    "</tr>" + (f"<tr><td class=more colspan=5>{_e(more)}</td></tr>" if more else ""))
    if not rows:
        return ""
    return ("<table class=steps><thead><tr><th>step</th><th>time</th><th>overlay</th><th>tile</th>"
            "<th>device</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _images(entry: Entry) -> str:
    name = _e(entry.job.rel_path)
    ratio = f"aspect-ratio:{entry.aspect[0]}/{entry.aspect[1]}"
    if entry.before and entry.after:
        start = f"{entry.start:g}"
        return (f'<div class="ba pair" style="{ratio};--pos:{start}%"><img class=after src="{_e(entry.after)}" '
                f'alt="after: {name}"><img class=before src="{_e(entry.before)}" alt="before: {name}">'
                f'<span class="lbl l">before</span><span class="lbl r">after</span><input type=range min=0 max=100 '
                f'step=0.1 value={start} aria-label="before / after"></div>')
    only, label = (entry.before, "before") if entry.before else (entry.after, "after")
    if only:
        return (f'<div class=ba style="{ratio}"><img class=single src="{_e(only)}" alt="{label}: {name}">'
                f'<span class="lbl l">{label}</span></div>')
    return '<div class=ba style="aspect-ratio:4/1"><span class=none>no preview</span></div>'


def _card(entry: Entry) -> str:
    job = entry.job
    when = job.finished_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if job.finished_at else "?"
    where = f"{job.device or '?'}@{job.host}" if job.host else (job.device or "?")
    sizes = f"{_size(entry.before_size)} → {_size(entry.after_size)}"
    if entry.outcome == "failed":
        sizes = _size(entry.before_size) if entry.before_size else "size unknown"
    facts = (f"rule <b>{_e(job.rule)}</b> · {when} · {_e(where)} · attempt {job.attempts} · {sizes} · "
             f"total {_seconds(entry.seconds)}")
    error = ""
    if entry.outcome == "failed":
        error = f"<p class=error>failed in {_e(job.error_step or '?')}: {_e(job.error or 'no reason recorded')}</p>"
    notes = f"<p class=notes>{_e('; '.join(entry.notes))}</p>" if entry.notes else ""
    full = ""
    if entry.before_full or entry.after_full:
        full = (f'<a class=full href="{_e(entry.after_full or entry.before_full)}" '
                f'data-before="{_e(entry.before_full or "")}" data-after="{_e(entry.after_full or "")}" '
                f'data-start="{entry.start:g}" title="open the full-size pair">full size</a>')
    return (f'<article class=job data-rule="{_e(job.rule)}" data-outcome="{entry.outcome}" '
            f'data-name="{_e(job.rel_path)}"><h3><span class="badge {entry.outcome}">{entry.outcome}</span>'
            f'<span>#{job.id}</span><span class=name title="{_e(job.rel_path)}">{_e(job.rel_path)}</span>{full}</h3>'
            f"{_images(entry)}<p class=facts>{facts}</p>{_steps(entry)}{error}{notes}</article>")


def _summary(entries: list[Entry]) -> str:
    rules = sorted({e.job.rule for e in entries})
    rows = []
    for rule in rules:
        mine = [e for e in entries if e.job.rule == rule]
        ok = [e.seconds for e in mine if e.outcome != "failed"]
        counts = "".join(f"<td>{sum(1 for e in mine if e.outcome == o)}</td>" for o in ("done", "review", "failed"))
        mean = _seconds(sum(ok) / len(ok)) if ok else "–"
        rows.append(f"<tr><td>{_e(rule)}</td><td>{len(mine)}</td>{counts}<td>{mean}</td></tr>")
    return ("<table class=summary><thead><tr><th>rule</th><th>jobs</th><th>done</th><th>review</th><th>failed</th>"
            "<th>mean time</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _rate(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if percent else f"{value:.2f}"


def _review_stats(stats: dict[str, Any] | None) -> str:
    """Reject rate and device-seconds per approved image, per rule and per experiment variant."""
    if not stats:
        return ""
    rows = "".join(
        f"<tr><td>{_e(r['rule'])}</td><td>{_e(r['variant'] or 'all')}</td><td>{r['done']}</td><td>{r['approved']}</td>"
        f"<td>{r['rejected']}</td><td>{_rate(r['reject_rate'], percent=True)}</td>"
        f"<td>{_rate(r['device_seconds_per_image'])}</td><td>{_rate(r['device_seconds_per_approved'])}</td></tr>"
        for r in [*stats["rules"], *stats["variants"]])
    return ("<table class=summary id=review-stats><thead><tr><th>rule</th><th>variant</th><th>done</th>"
            "<th>approved</th><th>rejected</th><th>reject rate</th><th>device s / image</th>"
            "<th>device s / approved</th></tr></thead>"
            "<tbody>" + rows + "</tbody></table>")


def _failures(entries: Iterable[Entry]) -> str:
    rows = []
    for e in entries:
        if e.outcome != "failed":
            continue
        job = e.job
        when = job.finished_at.astimezone().strftime("%Y-%m-%d %H:%M") if job.finished_at else "?"
        rows.append(f'<tr data-rule="{_e(job.rule)}" data-outcome=failed data-name="{_e(job.rel_path)}">'
                    f"<td>#{job.id}</td><td>{when}</td><td>{_e(job.rule)}</td><td>{_e(job.rel_path)}</td>"
                    f"<td>{_e(job.error_step or '?')}</td><td>{job.attempts}</td><td>{_e(job.error or '')}</td></tr>")
    return ("<table class=failures><thead><tr><th>job</th><th>when</th><th>rule</th><th>file</th><th>step</th>"
            "<th>tries</th><th>reason</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            "<p id=no-failures class=muted>No failures match.</p>")


def _options(values: Iterable[str], every: str) -> str:
    return f'<option value="">{every}</option>' + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)


def render_page(entries: list[Entry], meta: dict[str, Any]) -> str:
    period = f"the last {_e(meta['since'])}" if meta.get("since") else "all time"
    generated = meta["generated"].strftime("%Y-%m-%d %H:%M:%S %Z")
    counts = " ".join(f'<span class="badge {o}">{sum(1 for e in entries if e.outcome == o)} {o}</span>'
                      for o in ("done", "review", "failed"))
    notes = []
    if meta.get("pending"):
        notes.append(f"{meta['pending']} job(s) still queued or running are not shown.")
    if len(entries) >= meta.get("limit", 0) > 0:
        notes.append(f"Only the newest {meta['limit']} jobs are shown; raise --limit for more.")
    cards = "".join(_card(e) for e in entries) or "<p class=muted>No finished jobs in this period.</p>"
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<title>retouchd report · {period}</title><style>{CSS}</style></head>
<body><header class=top><h1>retouchd report</h1>
<div class=muted>{period} · generated {generated} · root {_e(meta['root'])}</div>
<p>{len(entries)} job(s): {counts}</p>{''.join(f'<p class=muted>{n}</p>' for n in notes)}
{_summary(entries)}{_review_stats(meta.get("stats"))}</header>
<div class=bar><label>rule <select id=f-rule>{_options(sorted({e.job.rule for e in entries}), 'all rules')}</select>
</label><label>outcome <select id=f-outcome>{_options(('done', 'review', 'failed'), 'all outcomes')}</select></label>
<label>file <input id=f-text type=search placeholder="name contains"></label>
<label>view <select id=f-view><option value=slider>slider</option><option value=sbs>side by side</option>
<option value=diff>difference</option></select>
</label><span class=muted><span id=shown>{len(entries)}</span> of {len(entries)} shown</span>
<span id=broken class=error hidden></span></div>
<main><section class=grid>{cards}</section>
<h2>Failures</h2>{_failures(entries)}</main>
<div id=zoom hidden><button type=button>close (Esc)</button><div class="ba pair">
<img class=after alt="after, full size"><img class=before alt="before, full size">
<input type=range min=0 max=100 step=0.1 value=50 aria-label="before / after, full size"></div></div>
<script>{JS}</script></body></html>
"""
