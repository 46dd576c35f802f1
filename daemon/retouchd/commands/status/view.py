"""`retouchd status`: a live view (like `top`) of the queue, jobs in flight, throughput, devices and failures.

On a terminal it refreshes every `interval` seconds until `q` or Ctrl-C; `--once`, or output that is not a
terminal, prints one frame; `--json` prints the data for scripts.
"""

from __future__ import annotations

import contextlib
import select
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from retouchd.store import JobState

SPARKS = " ▁▂▃▄▅▆▇█"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top == 0:
        return SPARKS[1] * len(values)
    return "".join(SPARKS[1 + round(v / top * (len(SPARKS) - 2))] if v else SPARKS[1] for v in values)


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                 pad_edge=False)


def _daemon_lines(data: dict[str, Any], now_ts: float) -> list[Text]:
    daemons = data.get("daemons", [])
    lines = []
    for d in daemons:
        if d["running"]:
            slots = d.get("slots", [])
            state = "draining" if d.get("stopping") else "running"
            line = Text.assemble(("● ", "green"), (f"{state} on {d['host']}", "bold"),
                                 f", pid {d['pid']}, up {human_seconds(now_ts - d['started_at'])} · "
                                 f"{len(slots)} slot{'s' if len(slots) != 1 else ''} · "
                                 f"{d.get('settling', 0)} file(s) settling")
            if d.get("metrics_url"):
                line.append(f" · metrics {d['metrics_url']}")
            lines.append(line)
            for rule, reason in (d.get("paused") or {}).items():
                lines.append(Text(f"  ⏸ inbox of rule {rule} paused: {reason}", style="yellow"))
            if d.get("database_error"):
                lines.append(Text(f"  ⚠ database unavailable, work waits: {d['database_error']}", style="red"))
            lines += sidecar_lines(d)
        else:
            lines.append(Text(f"○ stopped on {d['host']}: pid {d['pid']} last reported "
                              f"{human_seconds(now_ts - d['updated_at'])} ago", style="yellow"))
    for rule in data.get("paused_inboxes") or {}:
        lines.append(Text(f"⏸ inbox of rule {rule} paused by a person (resume it in the web interface)",
                          style="yellow"))
    if not any(d["running"] for d in daemons):
        lines.append(Text("○ no daemon reports to this state folder; the queue below is the database's",
                          style="dim"))
    return lines


def sidecar_lines(d: dict[str, Any]) -> list[Text]:
    """Images held for a late mask, and masks whose image never came (from a daemon's status file)."""
    lines = []
    for w in d.get("awaiting_sidecar") or []:
        lines.append(Text(f"  ⧗ {Path(w['path']).name} ({w['rule']}) waits for its .mask.png: "
                          f"{human_seconds(w['left'])} left", style="cyan"))
    for o in d.get("orphan_masks") or []:
        lines.append(Text(f"  ⚠ {o['path']} ({o['rule']}): a mask without an image for "
                          f"{human_seconds(o['age'])}; drop its image beside it or remove it", style="yellow"))
    return lines


def _queue_table(queue: dict[str, dict[str, int]], duplicates: dict[str, int]) -> RenderableType:
    states = [str(s) for s in JobState]
    table = _table("queue by rule")
    table.add_column("rule", style="bold")
    for state in states:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    # Second copies of content already handled: archived, never a job of their own.
    table.add_column("dups", justify="right")
    for rule, counts in sorted(queue.items()):
        cells = [str(counts.get(s, 0)) if counts.get(s) else "·" for s in states]
        table.add_row(rule, *cells, str(sum(counts.values())), str(duplicates.get(rule) or "·"))
    if not queue:
        return Text("queue by rule: (no jobs yet)")
    return table


def _running_table(running: list[dict[str, Any]]) -> RenderableType:
    if not running:
        return Text("in flight: none")
    table = _table(f"in flight: {len(running)}")
    # Narrow enough for 80 columns: the host only when several share the work, a retry's attempt beside the
    # step (↻2), tiles done/total beside the bar.
    several_hosts = len({job["host"] for job in running}) > 1
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"), ("rule", "left"), ("file", "left"), ("step", "left"), ("progress", "left"),
        ("device", "left"), *((("host", "left"),) if several_hosts else ()), ("time", "right"))
    for name, justify in columns:
        # The file name is what a person looks for: it keeps a share of a narrow terminal.
        table.add_column(name, justify=justify, overflow="ellipsis", no_wrap=name != "file",
                         min_width=12 if name == "file" else None)
    for job in running:
        grid = Table.grid()
        if job.get("progress") is not None:
            label = f" {job['done']}/{job['total']}" if job.get("total") else f" {job['progress'] * 100:.0f}%"
            grid.add_row(ProgressBar(total=1.0, completed=job["progress"], width=10), label)
        else:
            grid.add_row(Text("-", style="dim"))
        step = (job["step"] or "-") + (f" ↻{job['attempt']}" if job.get("attempt", 1) > 1 else "")
        table.add_row(str(job["id"]), job["rule"], job["path"], step, grid, job["device"] or "-",
                      *((job["host"] or "-",) if several_hosts else ()), human_seconds(job["seconds"]))
    return table


def _throughput(t: dict[str, Any]) -> RenderableType:
    line = Text.assemble(
        ("throughput: ", "bold"), f"{t['last_5_min']} done in the last 5 min ({t['per_minute_5']:.1f}/min), "
        f"{t['last_hour']} in the last hour",
        (f", {t['failed_last_hour']} failed" if t.get("failed_last_hour") else "", "red"),
    )
    spark = Text.assemble(f"  jobs per minute, last {t['minutes']} min (max {max(t['per_minute'], default=0)}): ",
                          (sparkline(t["per_minute"]), "cyan"), " now")
    return Group(line, spark)


def _devices_table(devices: list[dict[str, Any]]) -> RenderableType:
    if not devices:
        return Text("devices: unknown (no running daemon reports them)", style="dim")
    table = _table("devices")
    for name in ("host", "device", "name", "slots busy", "memory in use", ""):
        table.add_column(name)
    for d in devices:
        used, total = d.get("memory_used"), d.get("memory_total")
        bar: RenderableType = Text(d.get("note") or "", style="dim")
        if used is not None and total:
            bar = ProgressBar(total=float(total), completed=float(used), width=16)
        memory = f"{human_bytes(used)} / {human_bytes(total)}" + (f" ({d['memory_scope']})"
                                                                  if d.get("memory_scope") else "")
        table.add_row(d.get("host") or "-", d["device"], d.get("name") or "", f"{d['busy']}/{d['slots']}",
                      memory, bar)
    return table


def _hosts_table(data: dict[str, Any]) -> RenderableType:
    """Every daemon sharing this database (several hosts on PostgreSQL), from its heartbeat row."""
    hosts = data.get("hosts", [])
    if not hosts:
        return Text("hosts: none has reported in the last 30 s", style="dim")
    table = _table("hosts sharing this database")
    for name in ("host", "pid", "slots", "busy", "working on", "up", "seen"):
        table.add_column(name)
    for h in hosts:
        counts: dict[str, int] = {}
        for device in h["slots"]:
            counts[device] = counts.get(device, 0) + 1
        slots = ", ".join(f"{device}×{n}" for device, n in counts.items())
        working = ", ".join(f"#{i}" for i in h["working_on"]) or "-"
        table.add_row(h["host"], str(h["pid"]), slots, f"{len(h['working_on'])}/{len(h['slots'])}", working,
                      human_seconds((data["time"] - h["started_at"]).total_seconds()), _ago(h["seen_at"], data["time"]))
    return table


def _ago(at: datetime | None, now: datetime) -> str:
    return f"{human_seconds((now - at).total_seconds())} ago" if at else "-"


def _failures_table(data: dict[str, Any]) -> RenderableType:
    rows = data["recent_failures"]
    retrying = data.get("retrying", [])
    if not rows and not retrying:
        return Text("recent failures: none")
    table = _table("recent failures")
    for name in ("#", "when", "rule", "file", "step", "reason"):
        table.add_column(name, overflow="fold" if name == "reason" else "ellipsis", no_wrap=name not in ("reason",))
    for f in rows:
        table.add_row(str(f["id"]), _ago(f["at"], data["time"]), f["rule"], f["path"], f["step"] or "-",
                      Text(f["error"] or "", style="red"))
    for f in retrying:
        wait = ""
        if f.get("not_before") and f["not_before"] > data["time"]:
            wait = f", again in {human_seconds((f['not_before'] - data['time']).total_seconds())}"
        table.add_row(str(f["id"]), "retrying", f["rule"], f["path"], f["step"] or "-",
                      Text(f"attempt {f['attempt']} failed{wait}: {f['error']}", style="yellow"))
    return table


def _queue_line(data: dict[str, Any]) -> Text:
    queue, duplicates = data["queue"], data.get("duplicates", {})
    parts = []
    for rule, counts in sorted(queue.items()):
        shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        dup = f", {duplicates[rule]} dup" if duplicates.get(rule) else ""
        parts.append(f"{rule} {shown}{dup}")
    return Text.assemble(("queue: ", "bold"), "; ".join(parts) or "(no jobs yet)")


def _running_line(data: dict[str, Any]) -> Text:
    running = data["running"]
    jobs = ", ".join(f"#{j['id']} {j['path']} {j['step'] or ''}".rstrip() for j in running)
    return Text.assemble(("in flight: ", "bold"), f"{len(running)}" + (f" ({jobs})" if jobs else ""))


def _throughput_line(data: dict[str, Any]) -> Text:
    t = data["throughput"]
    failed = f", {t['failed_last_hour']} failed" if t.get("failed_last_hour") else ""
    return Text.assemble(("throughput: ", "bold"), f"{t['last_5_min']} in 5 min, {t['last_hour']} in 1 h{failed}")


def _hosts_line(data: dict[str, Any]) -> Text:
    hosts = data.get("hosts", [])
    names = ", ".join(f"{h['host']} {len(h['working_on'])}/{len(h['slots'])} busy" for h in hosts)
    return Text.assemble(("hosts: ", "bold"), names or "none reported in the last 30 s")


def _devices_line(data: dict[str, Any]) -> Text:
    parts = [f"{d['device']} {d['busy']}/{d['slots']} busy, {human_bytes(d.get('memory_used'))}"
             for d in data["devices"]]
    return Text.assemble(("devices: ", "bold"), "; ".join(parts) or "unknown (no running daemon reports them)")


def _failures_line(data: dict[str, Any]) -> Text:
    rows, retrying = data["recent_failures"], data.get("retrying", [])
    if not rows and not retrying:
        return Text("recent failures: none")
    newest = f" · newest #{rows[0]['id']} {rows[0]['path']}: {rows[0]['error']}" if rows else ""
    return Text.assemble(("recent failures: ", "bold"), f"{len(rows)} failed, {len(retrying)} retrying",
                         (newest, "red"), " · retouchd history --failed")


def _sections(data: dict[str, Any]) -> list[tuple[RenderableType, Text]]:
    """Each section in full and as one line, most important first."""
    sections = [
        (_queue_table(data["queue"], data.get("duplicates", {})), _queue_line(data)),
        (_running_table(data["running"]), _running_line(data)),
        (_failures_table(data), _failures_line(data)),
        (_devices_table(data["devices"]), _devices_line(data)),
        (_throughput(data["throughput"]), _throughput_line(data)),
        (_hosts_table(data), _hosts_line(data)),
    ]
    for _, line in sections:
        line.no_wrap, line.overflow = True, "ellipsis"
    return sections


def render(data: dict[str, Any], footer: str = "", root: str = "", *, console: Console | None = None,
           height: int | None = None) -> RenderableType:
    """The frame. With `height` (a terminal's), sections collapse to one line each, least important
    first, until the frame fits; the footer (how to quit) is always the last line shown."""
    now = data["time"]
    title = Text.assemble(("retouchd status", "bold"), f" · {root} · " if root else " · ",
                          now.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    head: list[RenderableType] = [title, *_daemon_lines(data, now.timestamp())]
    tail: list[RenderableType] = [Text(footer, style="dim", no_wrap=True, overflow="ellipsis")] if footer else []
    sections = _sections(data)
    full = [True] * len(sections)

    def build(spaced: bool) -> list[RenderableType]:
        parts = list(head)
        for (whole, line), wide in zip(sections, full, strict=True):
            if wide:
                parts += [Text(""), whole] if spaced else [whole]
            else:
                parts.append(line)
        return parts

    if height is None or console is None:
        return Group(*build(True), *([Text("")] if tail else []), *tail)
    options = console.options.update(height=None)

    def lines(parts: list[RenderableType]) -> int:
        return len(console.render_lines(Group(*parts), options, pad=False, new_lines=False))

    for index in [*range(len(sections) - 1, -1, -1), -1]:
        parts = build(spaced=any(full))
        if lines(parts) + len(tail) <= height:
            return Group(*parts, *tail)
        if index >= 0:
            full[index] = False
    # Even one line per section is too tall: keep what fits above the footer.
    kept: list[RenderableType] = []
    for part in parts:
        if lines([*kept, part]) + len(tail) > height:
            break
        kept.append(part)
    return Group(*kept, *tail)


@contextlib.contextmanager
def _keypresses() -> Iterator[Callable[[float], str]]:
    """A `wait(seconds) -> key` function; the terminal is in cbreak mode (keys without Enter) meanwhile."""
    stdin = sys.stdin
    if not stdin.isatty():
        yield lambda seconds: (select.select([], [], [], seconds), "")[1]
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)  # not TCSAFLUSH: a `q` typed while the view starts still counts

    def wait(seconds: float) -> str:
        ready, _, _ = select.select([fd], [], [], seconds)
        return stdin.read(1) if ready else ""

    try:
        yield wait
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def live(collect: Callable[[], dict[str, Any]], interval: float, root: str, console: Console) -> None:
    """Redraw every `interval` seconds on the terminal's alternate screen until `q` or Ctrl-C."""
    footer = f"refreshes every {interval:g} s · q or Ctrl-C to quit"
    with contextlib.suppress(KeyboardInterrupt), _keypresses() as wait, \
            Live(console=console, screen=True, auto_refresh=False, redirect_stderr=False) as view:
        while True:
            try:
                frame = render(collect(), footer, root, console=console, height=console.size.height)
            except Exception as exc:  # a busy or vanished database: say so and keep watching
                frame = Group(Text(f"cannot read the status: {exc}", style="red"), Text(footer, style="dim"))
            view.update(frame, refresh=True)
            if wait(interval).lower() == "q":
                return
