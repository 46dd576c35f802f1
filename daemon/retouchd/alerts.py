"""Notifications through Apprise (`notify = ["ntfy://…", "mailto://…", …]`): failed jobs, new review items
and a daily summary. A thread of its own sends them, so a slow or dead endpoint never delays a job; events that
arrive together go out as one message per kind (a burst of 500 failures is one message, not 500).

The summary goes out once a day at `notify_summary_at` (local time), or at the first moment after it that a
daemon runs; the day is claimed in the database before sending, so a restart or a second host never sends it
twice (a process that dies between the claim and the send loses that day's summary: at most once)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

import structlog

from retouchd.exceptions import ConfigError
from retouchd.store.states import printable

if TYPE_CHECKING:
    from retouchd.store import Job
    from retouchd.task import TaskResult

log = structlog.get_logger("retouchd.alerts")
COALESCE = 2.0
"""Seconds to gather events into one message."""
SHOWN = 10
RETRY_SUMMARY = 900.0
"""Seconds before a summary that could not be sent (endpoint or database down) is tried again."""


def local_now() -> datetime:
    return datetime.now().astimezone()


class DailySchedule:
    """When the daily summary is due: at `at` (local time) each day, once per local day. `claim(day)` records
    the day in the database (False: sent already, by this host before a restart or by another host);
    `release(day)` frees it after a failed send. `clock` returns the local time (tests set it)."""

    def __init__(self, at: dtime, claim: Callable[[str], bool], release: Callable[[str], None],
                 clock: Callable[[], datetime] = local_now) -> None:
        self.at, self.claim, self.release, self.clock = at.replace(tzinfo=None), claim, release, clock
        self._settled: str | None = None
        """The last day this process knows is taken care of (sent, by anyone): no database call until the next."""
        self._not_before = 0.0

    def due(self) -> str | None:
        """The day whose summary to send now (claimed for this process), or None."""
        now = self.clock()
        day = now.date().isoformat()
        if day == self._settled or now.time().replace(tzinfo=None) < self.at or time.monotonic() < self._not_before:
            return None
        try:
            claimed = self.claim(day)
        except Exception as exc:  # the database is away: try again later
            self.failed(day, f"cannot record it in the database: {str(exc).splitlines()[0] if str(exc) else exc}")
            return None
        self._settled = day
        return day if claimed else None

    def failed(self, day: str, why: str) -> None:
        log.warning("daily summary not sent; will try again", day=day, error=why,
                    retry_in_s=RETRY_SUMMARY)
        self._settled, self._not_before = None, time.monotonic() + RETRY_SUMMARY
        with contextlib.suppress(Exception):
            self.release(day)


class Alerts(threading.Thread):
    def __init__(self, urls: Sequence[str], summary: Callable[[], str] | None = None,
                 schedule: DailySchedule | None = None) -> None:
        super().__init__(name="retouchd-alerts", daemon=True)
        import apprise

        self.apprise = apprise.Apprise()
        for url in urls:
            if not self.apprise.add(url):
                raise ConfigError(f"invalid setting 'notify': {url.split('://')[0]}://… is not an Apprise URL "
                                  "this installation can use; see the Apprise documentation for the format")
        self.summary, self.schedule = summary, schedule
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self._stop_event = threading.Event()

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
                self.summary_if_due()
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
            self.summary_if_due()

    @staticmethod
    def _message(kind: str, lines: list[str]) -> tuple[str, str, str]:
        more = f"\n… and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
        body = "\n".join(lines[:SHOWN]) + more
        if kind == "failed":
            return f"retouchd: {len(lines)} job(s) failed", body, "failure"
        return f"retouchd: {len(lines)} result(s) to review", body, "info"

    def summary_if_due(self) -> bool:
        """Send the day's summary if it is due and nobody sent it yet; True when it went out."""
        if self.summary is None or self.schedule is None:
            return False
        day = self.schedule.due()
        if day is None:
            return False
        try:
            sent = self.send("retouchd: daily summary", self.summary(), "info")
        except Exception as exc:  # a summary that cannot be built is not fatal; it is tried again later
            self.schedule.failed(day, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return False
        if not sent:
            self.schedule.failed(day, "not delivered")
        return sent

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
