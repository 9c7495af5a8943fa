"""The dashboard in headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright):
it loads on a seeded store behind the sign-in form, shows the seeded numbers, and logs no
console errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.http.conftest import CHROMIUM, CHROMIUM_ARGS, watch_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin"),
]


def test_dashboard_loads_in_chromium_with_the_seeded_numbers(
    live_server: tuple[str, Any],
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    from fastapi.testclient import TestClient

    from tests.api.http.test_dashboard_api import ANSWERS, seed_dashboard

    base, app = live_server
    engine = app.state.engine
    admin_key = engine.store.create_api_key("admin")
    analyst_key = engine.store.create_api_key("analyst")
    # Seed through the running app's engine (the TestClient shares it; no second lifespan).
    client = TestClient(app)
    report = seed_dashboard(client, {"Authorization": f"Bearer {admin_key}"})
    users = {a["name"]: a["users"] for a in report["arms"]}
    means = [f"{sum(v) / len(v):.2f}" for v in ANSWERS.values()]

    problems: list[str] = []  # the page's, once it is open
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            problems = watch_page(page)
            page.goto(f"{base}/dashboard")
            assert page.locator("form input[name=key]").count() == 1
            page.fill("input[name=key]", analyst_key)
            page.click("button[type=submit]")
            page.wait_for_selector("section.experiment[data-experiment='dash-exp']")
            shown_users = page.locator("td.users").all_inner_texts()
            assert [int(u) for u in shown_users] == [users["control"], users["wellbeing"]]
            assert page.locator("td.sat-mean").all_inner_texts() == means
            assert page.locator("[data-srm='ok']").count() == 1
            assert page.locator("svg").count() >= 2
            assert page.locator("[data-verdict]").count() == 1
            assert page.title() == "steerfeed dashboard"
        finally:
            browser.close()
    assert problems == []
