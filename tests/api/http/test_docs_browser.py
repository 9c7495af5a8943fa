"""``/docs`` in headless Chromium with every request to anything but the app refused: Swagger UI
loads from the app's own assets and renders every operation of the schema (before, it loaded
from a CDN and showed a blank page on a machine without internet access)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.api.http.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin"),
]

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def test_swagger_ui_renders_every_operation_offline(live_server: tuple[str, Any]) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    base, app = live_server
    documented = {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    blocked: list[str] = []
    problems: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.route("**/*", only_local)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            page.goto(f"{base}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            # An operation with two tags is shown under each: compare the distinct ones.
            methods = page.locator(".opblock .opblock-summary-method").all_inner_texts()
            paths = page.locator(".opblock .opblock-summary-path").all_inner_texts()
            shown = {
                (m.strip(), p.replace("\u200b", "").strip())
                for m, p in zip(methods, paths, strict=True)
            }
            assert shown == documented
            assert (
                page.locator(".information-container .title").inner_text().startswith("steerfeed")
            )
            # The feed page's typed response is documented (its schema is listed).
            assert page.locator("section.models").count() == 1
        finally:
            browser.close()
    assert blocked == []
    assert problems == []
