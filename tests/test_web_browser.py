"""The web interface in a real browser (Playwright driving the system's Chromium; nothing is downloaded)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retouchd.store.reviews import Reviews
from retouchd.web.server import WebThread

from tests_support.webjobs import Farm

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "browser-token-0123456789"
DOCS = Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs a Chromium (apt install chromium)")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Farm, str]]:
    farm = Farm(tmp_path / "root", web_port=0, web_token=TOKEN)
    web = WebThread(farm.settings, farm.rules, farm.store, farm.folders)
    url = web.start()
    try:
        yield farm, url.rstrip("/")
    finally:
        web.stop()


@pytest.fixture
def page(served: tuple[Farm, str]) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        yield context.new_page()
        browser.close()


def login(page: Any, url: str) -> None:
    page.goto(url + "/")
    assert page.url.endswith("/login")
    page.fill("#token", "wrong-token-xxxxxxxx")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "wrong token"
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def test_login_watch_pause_review_and_filter(served: tuple[Farm, str], page: Any) -> None:
    """Log in; a job appears on the dashboard without a reload; pause an inbox; approve and reject; filter."""
    farm, url = served
    login(page, url)
    shop_queued = page.locator('#inboxes tr[data-rule="shop"] td:nth-child(2)')
    assert shop_queued.inner_text() == "0"
    farm.queued("shop", "arrived.png")
    sync_api.expect(shop_queued).to_have_text("1", timeout=20_000)  # pushed by server-sent events

    page.click('#inboxes button[data-inbox="scans"]')
    sync_api.expect(page.locator('#inboxes tr[data-rule="scans"] .inbox-state')).to_have_text("paused")
    assert set(Reviews(farm.store).paused()) == {"scans"}

    first = farm.finished("shop", "first.png", review=True)
    second = farm.finished("shop", "second.png", review=True)
    page.goto(url + "/review")
    sync_api.expect(page.locator(".review-item")).to_have_count(2)
    page.keyboard.press("a")  # approves the focused (first) item
    sync_api.expect(page.locator(".review-item")).to_have_count(1)
    assert Reviews(farm.store).get(first.id).verdict == "approved"  # type: ignore[union-attr]
    assert (farm.folders["shop"].outbox / "first.png").is_file()
    page.fill(f'.review-item[data-job="{second.id}"] .reason', "visible seam")
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#flash")).to_contain_text("reject done")
    rejected = Reviews(farm.store).get(second.id)
    assert rejected is not None and (rejected.verdict, rejected.reason) == ("rejected", "visible seam")
    assert (farm.root / "rejected" / "shop" / "second.png").is_file()

    farm.failed("scans", "broken.png")
    page.goto(url + "/history")
    sync_api.expect(page.locator("#jobs tbody tr")).to_have_count(4)
    page.select_option('select[name="state"]', "failed")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"state=failed"))
    rows = page.locator("#jobs tbody tr")
    sync_api.expect(rows).to_have_count(1)
    assert "broken.png" in rows.inner_text()


def test_job_page_viewer_and_screenshot(served: tuple[Farm, str], page: Any) -> None:
    """The job page shows before/after with slider, side by side and difference; docs/web.png is the dashboard."""
    farm, url = served
    login(page, url)
    done = [farm.finished("shop", f"catalog/item-{i}.png", seconds=1.5 + i, size=(96, 64)) for i in range(3)]
    farm.finished("shop", "catalog/odd.png", review=True, size=(96, 64))
    farm.finished("scans", "scan-1.png", seconds=4.0, size=(96, 64))
    farm.failed("scans", "torn.png")
    farm.queued("scans", "waiting.png")
    Reviews(farm.store).pause("scans")
    page.request.post(f"{url}/api/jobs/{done[0].id}/reject", data={"reason": "halo"},
                      headers={"Authorization": f"Bearer {TOKEN}"})

    page.goto(f"{url}/jobs/{done[1].id}")
    natural = page.eval_on_selector("img.after", "i => i.complete && i.naturalWidth")
    assert natural == 192  # the full-resolution output (96 px ×2)
    page.click('button[data-mode="side"]')
    assert page.locator(".mode-side").is_visible() and not page.locator(".mode-slider").is_visible()
    page.click('button[data-mode="diff"]')
    page.wait_for_function("document.getElementById('diff').width === 192")

    page.goto(url + "/")
    sync_api.expect(page.locator("#stats tbody tr")).to_have_count(2)
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "web.png"), full_page=True)
    assert (DOCS / "web.png").stat().st_size > 10_000
