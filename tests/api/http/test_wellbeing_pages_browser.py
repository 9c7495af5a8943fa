"""The wellbeing pages in headless Chromium, with no console errors: the public transparency
page (loads without a key, shows the published periods, says the chain verifies) and a
person's own view (signs in with their key through the form)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.http.conftest import CHROMIUM, CHROMIUM_ARGS, watch_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin"),
]


def test_transparency_page_in_chromium(live_server: tuple[str, Any]) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    from pipelines.serving.jobs import JobContext, run_job

    base, app = live_server
    engine = app.state.engine
    report = run_job("transparency", JobContext(engine))
    assert report.ok, report.message
    problems: list[str] = []  # the page's, once it is open
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            problems = watch_page(page)
            page.goto(f"{base}/transparency")
            assert page.locator("#status.ok").count() == 1
            assert "Chain verified" in page.locator("#status").inner_text()
            rows = page.locator("#report tbody tr")
            assert rows.count() == report.counts["published"]
            # Newest first; the head hash shown is the newest entry's.
            head = engine.store.scalar("SELECT hash FROM transparency_log ORDER BY seq DESC")
            assert page.locator("#status code").inner_text() == head
            assert rows.first.get_attribute("data-seq") == str(report.counts["published"])
        finally:
            browser.close()
    assert not [p for p in problems if "favicon" not in p], problems


def test_my_view_page_signs_in_and_shows_the_persons_time(live_server: tuple[str, Any]) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")

    base, app = live_server
    store = app.state.engine.store
    uid = int(store.scalar("SELECT user_id FROM events GROUP BY 1 ORDER BY count(*) DESC"))
    key = store.create_api_key("user", user_id=uid)
    problems: list[str] = []  # the page's, once it is open
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            # The download is not a page request that failed.
            problems = watch_page(page, failed_requests=False)
            page.goto(f"{base}/me")
            page.fill("input[name=key]", key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/me")
            assert "minutes over the last 28 days" in page.locator("#summary").inner_text()
            assert page.locator("#days tr").count() == 29  # header + 28 days
            with page.expect_download() as dl:
                page.click("a[href='/me/export']")
            assert dl.value.suggested_filename == f"steerfeed-my-view-{uid}.json"
        finally:
            browser.close()
    assert not problems, problems
