"""The Training Lab in headless Chromium, one full path: train a very short run, find it on the Runs
page, overlay it with a bundled run, and open it on Attribution with one of its held-out images."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.app.browser import exceptions_on, wait_count, wait_idle

pytestmark = pytest.mark.browser


def test_short_run_draws_the_curves_and_becomes_a_model(app_url, browser_page) -> None:
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
    assert exceptions_on(page) == []

    # The Runs page lists the new runs above the bundled ones; tick one of each to overlay them.
    page.get_by_role("link", name="Runs").first.click()
    wait_idle(page, timeout=180)
    table = page.locator('[data-testid="stDataFrame"]').first
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box is not None
    row = 35  # glide-data-grid's row height; the header is one row
    for index in (0, 4):  # saved runs first (resnet56 at the top), then the bundled ones
        page.mouse.click(box["x"] + 18, box["y"] + row * (index + 1.5))
        wait_idle(page, timeout=120)
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_contain_text("· demo", timeout=60_000)
    expect(chart).to_contain_text("· 2", timeout=60_000)  # a saved run's id starts with the date
    expect(page.locator('[data-testid="stMain"]')).to_contain_text("2 run(s)")

    # The sidebar opens a saved run on every page; Attribution offers its held-out images.
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Saved training run (Training Lab)").click()  # already the first visit's
    wait_idle(page)
    run_box = sidebar.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Run", exact=True))
    run_box.click()
    page.get_by_role("option").filter(has_text="resnet56 · digits").first.click()
    wait_idle(page)
    page.get_by_role("link", name="Attribution").first.click()
    wait_idle(page, timeout=180)
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("training run", timeout=60_000)
    expect(main).to_contain_text("held-out 0:", timeout=60_000)
    assert wait_count(page, ".js-plotly-plot .imagelayer image", 1) >= 1
    assert exceptions_on(page) == []
    assert page.errors == []
