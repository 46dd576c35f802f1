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


def _queue_table(queue: dict[str, dict[str, int]]) -> RenderableType:
    states = [str(s) for s in JobState]
    table = _table("queue by rule")
    table.add_column("rule", style="bold")
    for state in states:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    for rule, counts in sorted(queue.items()):
        cells = [str(counts.get(s, 0)) if counts.get(s) else "·" for s in states]
        table.add_row(rule, *cells, str(sum(counts.values())))
    if not queue:
        return Text("queue by rule: (no jobs yet)")
    return table


def _running_table(running: list[dict[str, Any]]) -> RenderableType:
    if not running:
        return Text("in flight: none")
    table = _table(f"in flight: {len(running)}")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"), ("rule", "left"), ("file", "left"), ("step", "left"), ("progress", "left"),
        ("device", "left"), ("host", "left"), ("time", "right"), ("try", "right"))
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="ellipsis", no_wrap=name != "file")
    for job in running:
        grid = Table.grid()
        if job.get("progress") is not None:
            label = (f" {job['done']}/{job['total']} tiles" if job.get("total") else f" {job['progress'] * 100:.0f}%")
            grid.add_row(ProgressBar(total=1.0, completed=job["progress"], width=16), label)
        else:
            grid.add_row(Text("-", style="dim"))
        table.add_row(str(job["id"]), job["rule"], job["path"], job["step"] or "-", grid, job["device"] or "-",
                      job["host"] or "-", human_seconds(job["seconds"]), str(job["attempt"]))
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


def render(data: dict[str, Any], footer: str = "", root: str = "") -> RenderableType:
    now = data["time"]
    title = Text.assemble(("retouchd status", "bold"), f" · {root} · " if root else " · ",
                          now.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    parts: list[RenderableType] = [title, *_daemon_lines(data, now.timestamp())]
    for section in (_queue_table(data["queue"]), _running_table(data["running"]), _throughput(data["throughput"]),
                    _hosts_table(data), _devices_table(data["devices"]), _failures_table(data)):
        parts += [Text(""), section]
    if footer:
        parts += [Text(""), Text(footer, style="dim")]
    return Group(*parts)


@contextlib.contextmanager
def _keypresses() -> Iterator[Callable[[float], str]]:
    """A `wait(seconds) -> key` function; the terminal is in cbreak mode (keys without Enter) meanwhile."""
    stdin = sys.stdin
    if not stdin.isatty():
        yield lambda seconds: (select.select([], [], [], seconds), "")[1]
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

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
                frame = render(collect(), footer, root)
            except Exception as exc:  # a busy or vanished database: say so and keep watching
                frame = Group(Text(f"cannot read the status: {exc}", style="red"), Text(footer, style="dim"))
            view.update(frame, refresh=True)
            if wait(interval).lower() == "q":
                return
