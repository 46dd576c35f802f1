"""Notifications through Apprise (`notify = ["ntfy://…", "mailto://…", …]`): failed jobs, new review items
and a daily summary. A thread of its own sends them, so a slow or dead endpoint never delays a job; events that
arrive together go out as one message per kind (a burst of 500 failures is one message, not 500)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from retouchd.exceptions import ConfigError
from retouchd.store.states import printable

if TYPE_CHECKING:
    from retouchd.pipeline import TaskResult
    from retouchd.store import Job

log = structlog.get_logger("retouchd.alerts")
DAY = 86400.0
COALESCE = 2.0
"""Seconds to gather events into one message."""
SHOWN = 10


class Alerts(threading.Thread):
    def __init__(self, urls: Sequence[str], summary: Callable[[], str] | None = None,
                 summary_every: float = DAY) -> None:
        super().__init__(name="retouchd-alerts", daemon=True)
        import apprise

        self.apprise = apprise.Apprise()
        for url in urls:
            if not self.apprise.add(url):
                raise ConfigError(f"invalid setting 'notify': {url.split('://')[0]}://… is not an Apprise URL "
                                  "this installation can use; see the Apprise documentation for the format")
        self.summary, self.summary_every = summary, summary_every
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self._stop_event = threading.Event()
        self._next_summary = time.monotonic() + summary_every

    def on_result(self, job: Job, result: TaskResult, outcome: str) -> None:
        """The pool's hook: a job that failed for good, or whose result waits for a person."""
        name = f"#{job.id} {job.rule}/{printable(job.rel_path)}"
        if outcome == "failed":
            self.events.put(("failed", f"{name}: {printable(result.error or 'unknown error')}"))
        elif outcome == "review":
            self.events.put(("review", name))

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                first = self.events.get(timeout=0.5)
            except queue.Empty:
                self._maybe_summary()
                continue
            time.sleep(COALESCE)
            batch = [first]
            while True:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            for kind in ("failed", "review"):
                lines = [text for k, text in batch if k == kind]
                if lines:
                    self.send(*self._message(kind, lines))
            self._maybe_summary()

    @staticmethod
    def _message(kind: str, lines: list[str]) -> tuple[str, str, str]:
        more = f"\n… and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
        body = "\n".join(lines[:SHOWN]) + more
        if kind == "failed":
            return f"retouchd: {len(lines)} job(s) failed", body, "failure"
        return f"retouchd: {len(lines)} result(s) to review", body, "info"

    def _maybe_summary(self) -> None:
        if self.summary is None or time.monotonic() < self._next_summary:
            return
        self._next_summary = time.monotonic() + self.summary_every
        try:
            self.send("retouchd: daily summary", self.summary(), "info")
        except Exception as exc:  # a summary that cannot be built is skipped, never fatal
            log.warning("daily summary not sent", error=str(exc))

    def send(self, title: str, body: str, kind: str) -> bool:
        import apprise

        notify_type = {"failure": apprise.NotifyType.FAILURE, "info": apprise.NotifyType.INFO}[kind]
        ok = bool(self.apprise.notify(title=title, body=body, notify_type=notify_type))
        if not ok:
            log.warning("notification not delivered; check the notify URLs", title=title)
        return ok

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(10)


def summary_text(stats: dict[str, Any]) -> str:
    """One line per rule (and variant) of the review stats: results, reject rate, device-seconds per approved."""
    lines = []
    for row in [*stats["rules"], *stats["variants"]]:
        label = row["rule"] + (f" [{row['variant']}]" if row["variant"] else "")
        rate = "–" if row["reject_rate"] is None else f"{100 * row['reject_rate']:.1f} %"
        cost = "–" if row["device_seconds_per_approved"] is None else f"{row['device_seconds_per_approved']:.2f} s"
        lines.append(f"{label}: {row['done']} done, {row['approved']} approved, {row['rejected']} rejected "
                     f"({rate}), {row['pending_review']} to review, {row['failed']} failed, {cost} per approved")
    return "\n".join(lines) or "no jobs in the last day"
