"""Apprise notifications, delivered to a local JSON endpoint (json://127.0.0.1:PORT)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from retouchd.alerts import Alerts, summary_text
from retouchd.exceptions import ConfigError

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


def test_daily_summary(endpoint: tuple[str, list[dict[str, Any]]]) -> None:
    """The summary goes out when due, built from the review stats."""
    url, received = endpoint
    stats = {"rules": [{"rule": "shop", "variant": None, "done": 10, "approved": 8, "rejected": 2,
                        "pending_review": 0, "failed": 1, "reject_rate": 0.2, "device_seconds_per_approved": 1.5}],
             "variants": []}
    alerts = Alerts([url], summary=lambda: summary_text(stats), summary_every=0.5)
    alerts.start()
    try:
        wait_for(lambda: received, timeout=30)
    finally:
        alerts.stop()
    assert received[0]["title"] == "retouchd: daily summary"
    assert received[0]["message"] == ("shop: 10 done, 8 approved, 2 rejected (20.0 %), 0 to review, 1 failed, "
                                      "1.50 s per approved")


def test_an_unusable_url_is_a_config_error() -> None:
    """A URL Apprise cannot use stops start-up with a message naming the setting."""
    with pytest.raises(ConfigError, match="'notify'"):
        Alerts(["nonsense-scheme://x"])
