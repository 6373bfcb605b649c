"""The Gradient Flow page in headless Chromium: the twin chart is drawn, nothing raised."""

from __future__ import annotations

import pytest

from tests.app.browser import exceptions_on, wait_count, wait_idle

pytestmark = pytest.mark.browser


def test_gradient_flow_page_draws_the_twin_chart(app_url, browser_page) -> None:
    page = browser_page
    page.goto(f"{app_url}/gradient_flow")
    wait_idle(page, timeout=180)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert page.get_by_text("Gradient Flow").first.is_visible()
    # The twin chart (residual and plain overlaid) and the per-block split chart.
    assert wait_count(page, ".js-plotly-plot", 2) >= 2
    assert page.locator(".js-plotly-plot").first.get_by_text("plain56").count() >= 1
    assert exceptions_on(page) == []
    assert page.errors == []
