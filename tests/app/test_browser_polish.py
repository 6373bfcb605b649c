"""Issue 11's polish list in headless Chromium: what only a browser shows.

Nothing is fetched from outside the machine on a page load; the Feature Maps block comparison
has its column titles and keeps a readable channel range after a switch to a wider model; log
axes label every tick with its whole value at one size, and block names sit on a category axis.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from tests.app.browser import exceptions_on, wait_count, wait_idle

pytestmark = pytest.mark.browser
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _choose(page, label: str, option: str, *, sidebar: bool = False) -> None:
    """Pick ``option`` in the select box labelled ``label`` (typed, as a person would)."""
    root = page.locator('[data-testid="stSidebar"]' if sidebar else '[data-testid="stMain"]')
    box = root.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True))
    box.first.locator("input").click(timeout=120_000)  # a rerun may be redrawing the page
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click(timeout=60_000)
    wait_idle(page, timeout=180)


def test_a_page_load_asks_nothing_of_the_internet(app_url, browser_page) -> None:
    """A ``:material/...:`` page icon made every load fetch an SVG from fonts.gstatic.com."""
    page = browser_page
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(app_url)
    wait_idle(page)
    assert wait_count(page, ".js-plotly-plot", 2) == 2
    page.get_by_role("link", name="Feature Maps").first.click()
    wait_idle(page, timeout=180)
    wait_count(page, ".js-plotly-plot", 3)
    page.wait_for_timeout(1000)  # the favicon and fonts are asked for after the first paint
    outside = [
        u
        for u in urls
        if urlparse(u).scheme not in {"data", "blob"} and urlparse(u).hostname not in LOCAL_HOSTS
    ]
    assert urls and outside == []
    icon = page.locator("link[rel='shortcut icon']").get_attribute("href") or ""
    assert urlparse(icon).hostname in LOCAL_HOSTS | {None}, icon
    # The navigation's icons still show: Streamlit bundles the font it draws them with.
    nav = page.locator('[data-testid="stSidebarNav"]')
    assert nav.locator('[data-testid="stIconMaterial"]').count() >= 7
    assert exceptions_on(page) == [] and page.errors == []


def test_block_titles_and_the_channel_range_after_a_wider_model(app_url, browser_page) -> None:
    page = browser_page
    page.goto(f"{app_url}/feature_maps")
    wait_idle(page, timeout=180)
    # A first visit opens on the bundled trained run, which fixes the variant: go to random weights.
    page.locator('[data-testid="stSidebar"]').get_by_text("Random initialization").click()
    wait_idle(page, timeout=180)
    _choose(page, "Variant", "resnet_tiny", sidebar=True)
    _choose(page, "Layer", "layer4.0 (residual block)")
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("layer4.0: 64 of 64 channels", timeout=120_000)
    _choose(page, "Variant", "resnet_tiny_bottleneck", sidebar=True)  # layer4.0: 128 channels
    expect(main).to_contain_text("layer4.0: 64 of 128 channels", timeout=120_000)
    # The block comparison's column titles are drawn (plotly hid them while they sat off the axis).
    titles = page.locator(".js-plotly-plot .annotation-text")
    for title in ("F(x) (branch)", "shortcut x", "output"):
        expect(titles.filter(has_text=re.compile(f"^{re.escape(title)}$"))).to_have_count(1, timeout=60_000)
    assert exceptions_on(page) == [] and page.errors == []


def test_log_axes_label_whole_values_and_blocks_are_categories(app_url, browser_page) -> None:
    """plotly's own log ticks add bare "2 3 ... 9" at three quarters of the font size."""
    page = browser_page
    page.goto(f"{app_url}/gradient_flow")
    wait_idle(page, timeout=240)
    wait_count(page, ".js-plotly-plot", 2)
    charts = page.locator(".js-plotly-plot")
    for i in range(2):  # the per-layer norms and the per-block split: both log y
        ticks = charts.nth(i).locator("g.ytick text")
        sizes = {t.evaluate("e => getComputedStyle(e).fontSize") for t in ticks.all()}
        assert ticks.count() >= 2 and len(sizes) == 1, sizes
    blocks = charts.nth(1).locator("g.xtick text").all_text_contents()
    assert blocks[:2] == ["layer1.0", "layer1.1"]
    assert exceptions_on(page) == [] and page.errors == []
