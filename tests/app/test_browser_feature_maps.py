"""The Feature Maps page in headless Chromium: the grid is drawn and its hover names the channel."""

from __future__ import annotations

import pytest

from tests.app.browser import exceptions_on, wait_idle

pytestmark = pytest.mark.browser


def test_feature_maps_page_draws_the_grid(app_url, browser_page) -> None:
    page = browser_page
    page.goto(f"{app_url}/feature_maps")
    wait_idle(page, timeout=180)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    # Default: ResNet-18, first block, all 64 channels in one mosaic.
    assert page.get_by_text("layer1.0: 64 of 64 channels").first.is_visible()
    grid = page.locator(".js-plotly-plot").first
    assert grid.locator(".heatmaplayer").count() >= 1
    assert grid.get_by_text("63").count() >= 1  # the channel number drawn on the last tile
    grid.scroll_into_view_if_needed()
    box = grid.locator(".nsewdrag").first.bounding_box()
    assert box is not None
    for _ in range(3):  # plotly needs a move *within* the plot to raise a hover
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=5)
        page.mouse.move(box["x"] + box["width"] * 0.52, box["y"] + box["height"] * 0.52, steps=5)
        if page.locator(".hoverlayer .hovertext").count():
            break
    assert "channel" in (page.locator(".hoverlayer .hovertext").first.text_content(timeout=5_000) or "")
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert exceptions_on(page) == []
    assert page.errors == []
