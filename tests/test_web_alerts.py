"""Apprise notifications, delivered to a local JSON endpoint (json://127.0.0.1:PORT)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from retouchd.alerts import Alerts, DailySchedule, summary_text
from retouchd.exceptions import ConfigError
from retouchd.settings import load_settings
from retouchd.store import Store, open_store
from retouchd.store.review_schema import SummarySent
from retouchd.store.reviews import claim_summary_day, release_summary_day

from conftest import wait_for


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def _job(job_id: int, rule: str = "shop", rel: str = "a.jpg") -> Any:
    return SimpleNamespace(id=job_id, rule=rule, rel_path=rel)


def test_failures_and_review_items_are_sent_coalesced(endpoint: tuple[str, list[dict[str, Any]]]) -> None:
    """Three failures and one review item arriving together: one failure message (3 lines), one review message."""
    url, received = endpoint
    alerts = Alerts([url])
    alerts.start()
    try:
        for i in range(3):
            alerts.on_result(_job(i), SimpleNamespace(error=f"corrupt {i}"), "failed")
        alerts.on_result(_job(9, rel="b.jpg"), SimpleNamespace(error=None), "review")
        alerts.on_result(_job(10), SimpleNamespace(error=None), "done")  # nothing to say
        wait_for(lambda: len(received) >= 2, timeout=30)
    finally:
        alerts.stop()
    by_title = {m["title"]: m for m in received}
    failed = by_title["retouchd: 3 job(s) failed"]
    assert failed["type"] == "failure" and failed["message"].splitlines() == [
        "#0 shop/a.jpg: corrupt 0", "#1 shop/a.jpg: corrupt 1", "#2 shop/a.jpg: corrupt 2"]
    assert by_title["retouchd: 1 result(s) to review"]["message"] == "#9 shop/b.jpg"
    assert len(received) == 2


STATS = {"rules": [{"rule": "shop", "variant": None, "done": 10, "approved": 8, "rejected": 2, "pending_review": 0,
                    "failed": 1, "reject_rate": 0.2, "device_seconds_per_approved": 1.5}], "variants": []}
TZ = timezone(timedelta(hours=1))  # the daemon's local time zone in these tests


class Clock:
    """Local wall time the test sets."""

    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at).replace(tzinfo=TZ)

    def __call__(self) -> datetime:
        return self.now

    def set(self, at: str) -> None:
        self.now = datetime.fromisoformat(at).replace(tzinfo=TZ)


def _summaries(url: str, store: Store, clock: Clock, host: str = "a") -> Alerts:
    """Alerts as `retouchd run` makes them: summary at 08:00 local, the sent day kept in the database."""
    schedule = DailySchedule(dtime(8, 0), lambda day: claim_summary_day(store, day, host),
                             lambda day: release_summary_day(store, day), clock=clock)
    return Alerts([url], summary=lambda: summary_text(STATS), schedule=schedule)


def test_daily_summary_at_a_fixed_local_time_once_a_day(endpoint: tuple[str, list[dict[str, Any]]],
                                                        tmp_path: Path) -> None:
    """Not before 08:00 local; at 08:00 once; not again that day, nor after a restart, nor from a second host;
    the next day at 08:00 again."""
    url, received = endpoint
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    clock = Clock("2026-12-02T07:59:59")
    alerts = _summaries(url, store, clock)
    assert alerts.summary_if_due() is False and received == []
    clock.set("2026-12-02T08:00:00")
    assert alerts.summary_if_due() is True
    assert [m["title"] for m in received] == ["retouchd: daily summary"]
    assert received[0]["message"] == ("shop: 10 done, 8 approved, 2 rejected (20.0 %), 0 to review, 1 failed, "
                                      "1.50 s per approved")
    clock.set("2026-12-02T23:59:00")
    assert alerts.summary_if_due() is False
    restarted, other_host = _summaries(url, store, clock), _summaries(url, store, clock, host="b")
    assert restarted.summary_if_due() is False and other_host.summary_if_due() is False
    clock.set("2026-12-03T07:00:00")
    assert restarted.summary_if_due() is False
    clock.set("2026-12-03T08:00:01")
    assert restarted.summary_if_due() is True and other_host.summary_if_due() is False
    assert len(received) == 2
    with store.session() as s:
        assert [(r.day, r.host) for r in s.scalars(select(SummarySent).order_by(SummarySent.day))] == [
            ("2026-12-02", "a"), ("2026-12-03", "a")]


def test_daily_summary_started_after_its_time_is_sent_at_once(endpoint: tuple[str, list[dict[str, Any]]],
                                                              tmp_path: Path) -> None:
    """A daemon that was down at 08:00 sends the day's summary when it runs (its own thread, no call from us)."""
    url, received = endpoint
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    alerts = _summaries(url, store, Clock("2026-12-02T13:15:00"))
    alerts.start()
    try:
        wait_for(lambda: received, timeout=30)
    finally:
        alerts.stop()
    assert [m["title"] for m in received] == ["retouchd: daily summary"]


def test_a_summary_not_delivered_is_sent_later(endpoint: tuple[str, list[dict[str, Any]]], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint is down at 08:00: the day is freed again, and a later try (here a restart) sends it."""
    url, received = endpoint
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    clock = Clock("2026-12-02T08:00:00")
    down = _summaries(f"json://127.0.0.1:{_closed_port()}/hook", store, clock)
    assert down.summary_if_due() is False
    with store.session() as s:
        assert s.scalars(select(SummarySent)).all() == []
    assert down.summary_if_due() is False  # not hammered: the next try waits RETRY_SUMMARY
    clock.set("2026-12-02T09:00:00")
    assert _summaries(url, store, clock).summary_if_due() is True
    assert len(received) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_summary_time_setting() -> None:
    """`notify_summary_at` is a local time of day, 08:00 unless set; a wrong value is one clear line."""
    assert load_settings(env=False).notify_summary_at == dtime(8, 0)
    assert load_settings(env=False, notify_summary_at="18:30").notify_summary_at == dtime(18, 30)
    with pytest.raises(ConfigError, match="notify_summary_at"):
        load_settings(env=False, notify_summary_at="25:00")


def test_an_unusable_url_is_a_config_error() -> None:
    """A URL Apprise cannot use stops start-up with a message naming the setting."""
    with pytest.raises(ConfigError, match="'notify'"):
        Alerts(["nonsense-scheme://x"])


def test_daemon_sends_the_days_summary_once_across_a_restart(endpoint: tuple[str, list[dict[str, Any]]],
                                                             daemon) -> None:
    """`retouchd run` with notify: started after notify_summary_at, it sends the day's summary; started again
    the same day, it does not."""
    url, received = endpoint
    env = {"RETOUCHD_NOTIFY": json.dumps([url]), "RETOUCHD_NOTIFY_SUMMARY_AT": "00:00"}
    first = daemon(env=env)
    wait_for(lambda: [m for m in received if m["title"] == "retouchd: daily summary"], timeout=60)
    assert first.stop() == 0
    second = daemon(env=env)
    wait_for(lambda: any(line.get("event") == "retouchd started" for line in second.log_lines()))
    time.sleep(3)  # six rounds of the alerts thread
    assert second.stop() == 0
    assert [m["title"] for m in received] == ["retouchd: daily summary"]
