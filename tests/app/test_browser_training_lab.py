"""The Training Lab in headless Chromium: a very short run draws live curves and saves the runs."""

from __future__ import annotations

import pytest

from tests.app.browser import exceptions_on, wait_idle

pytestmark = pytest.mark.browser


def test_short_run_draws_the_curves(app_url, browser_page) -> None:
    page = browser_page
    page.goto(f"{app_url}/training_lab")
    wait_idle(page, timeout=180)
    steps = page.get_by_label("Steps")
    steps.fill("4")
    steps.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    # The live fragment draws the curves; the end of the run reruns the page with the results.
    page.wait_for_selector(".js-plotly-plot", timeout=180_000)
    page.get_by_text("Saved 4 trained model(s)").wait_for(timeout=180_000)
    curves = page.locator(".js-plotly-plot").first
    for name in ("plain-20", "plain-56", "ResNet-20", "ResNet-56"):
        assert curves.get_by_text(name).count() >= 1, name
    assert page.get_by_text("The paper's numbers, not ours").is_visible()
    # The saved runs are offered by the sidebar's model picker, for every page.
    assert page.get_by_text("Saved training run (Training Lab)").count() == 1
    assert exceptions_on(page) == []
    assert page.errors == []
