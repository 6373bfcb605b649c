"""The "Why it works" page in headless Chromium, on the first visit's model (the bundled demo run):
the story's live measurement, then a lesion study run from its tab."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.app.browser import exceptions_on, wait_idle

pytestmark = pytest.mark.browser


def test_story_then_a_lesion_study_of_the_demo_pair(app_url, browser_page) -> None:
    page = browser_page
    page.goto(f"{app_url}/why_it_works")
    wait_idle(page, timeout=240)
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("The story, and what we measure", timeout=120_000)
    expect(main).to_contain_text("explodes", timeout=120_000)  # the story's reading of its measurement
    expect(main).to_contain_text("Precomputed when the demo group was bundled", timeout=60_000)
    page.get_by_role("tab", name="Lesion study").click()
    # The smallest study the tab offers (50 images, one draw per k): the browser test is about the
    # page drawing its result; tests/test_lesion.py and the AppTest check the numbers.
    images = page.get_by_label("Held-out images").first  # the lesion tab comes before the landscape
    images.fill("50")
    images.press("Enter")
    wait_idle(page, timeout=120)
    draws = page.get_by_role("slider", name="Random draws per k").first
    draws.focus()
    draws.press("Home")
    wait_idle(page, timeout=120)
    expect(draws).to_have_value("1")
    page.get_by_role("button", name="Run the lesion study").click()
    wait_idle(page, timeout=300)
    # The k-deletion chart of both networks; its twin is the plain-56 trained beside the demo run.
    chart = page.locator(".js-plotly-plot").filter(has_text="Error against the number of").first
    expect(chart).to_be_visible(timeout=120_000)
    expect(chart).to_contain_text("plain56", timeout=60_000)
    assert exceptions_on(page) == []
    assert page.errors == []
