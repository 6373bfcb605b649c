"""The Feature Maps page in headless Chromium: the grid is drawn, its hover names the channel and
a click on a tile shows that channel large."""

from __future__ import annotations

import pytest

from tests.app.browser import exceptions_on, use_random_weights, wait_count, wait_idle

pytestmark = pytest.mark.browser


def test_feature_maps_page_draws_the_grid(app_url, browser_page) -> None:
    page = browser_page
    page.goto(f"{app_url}/feature_maps")
    wait_idle(page, timeout=180)
    use_random_weights(page)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    # Default: ResNet-18, first block, all 64 channels in one mosaic.
    assert page.get_by_text("layer1.0: 64 of 64 channels").first.is_visible()
    grid = page.locator(".js-plotly-plot").first
    grid.locator(".heatmaplayer").first.wait_for(timeout=30_000)
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


def test_clicking_a_tile_shows_that_channel_large(app_url, browser_page) -> None:
    page = browser_page
    page.goto(f"{app_url}/feature_maps")
    wait_idle(page, timeout=180)
    use_random_weights(page)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert page.get_by_text("layer1.0: 64 of 64 channels").first.is_visible()
    wait_count(page, ".js-plotly-plot", 2)
    panel = page.locator(".js-plotly-plot").nth(1)  # the channel shown large
    panel.get_by_text("channel 0", exact=True).wait_for(timeout=30_000)
    grid = page.locator(".js-plotly-plot").first
    grid.scroll_into_view_if_needed()
    box = grid.locator(".nsewdrag").first.bounding_box()
    assert box is not None
    row, col = 2, 3  # 8 x 8 tiles: channel 19
    x = box["x"] + box["width"] * (col + 0.5) / 8
    y = box["y"] + box["height"] * (row + 0.5) / 8
    page.mouse.move(x - 3, y - 3, steps=3)  # plotly picks the clicked point from the hover
    page.mouse.move(x, y, steps=3)
    page.mouse.click(x, y)
    page.locator(".js-plotly-plot").nth(1).get_by_text("channel 19", exact=True).wait_for(timeout=60_000)
    wait_idle(page, timeout=120)
    assert page.locator(".js-plotly-plot").nth(1).get_by_text("channel 0", exact=True).count() == 0
    assert exceptions_on(page) == []
    assert page.errors == []
