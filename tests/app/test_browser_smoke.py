"""A real browser opens the app: Home draws its blocks, Architecture its charts, no exceptions."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.app.browser import exceptions_on, use_random_weights, wait_count, wait_idle

pytestmark = pytest.mark.browser


def test_home_and_architecture_in_a_real_browser(browser_page, app_url):
    page = browser_page
    page.goto(app_url)
    wait_idle(page)
    assert page.get_by_role("heading", name="resviz: why skip connections work").is_visible()
    assert wait_count(page, ".js-plotly-plot", 2) == 2
    assert exceptions_on(page) == []

    page.get_by_role("link", name="Architecture").first.click()
    wait_idle(page)
    # A first visit opens on the bundled trained ResNet-56; its own configuration is drawn.
    expect(page.locator('[data-testid="stMain"]')).to_contain_text("as trained in run demo-shapes-resnet56")
    use_random_weights(page)  # then the sidebar's variant (ResNet-18) and its plain twin
    assert wait_count(page, ".js-plotly-plot", 3) >= 3
    assert page.get_by_text("Multiply-accumulates").first.is_visible()
    assert exceptions_on(page) == []

    # The sidebar's choice is shared by every page: flip to the plain twin and the counts follow.
    page.get_by_text("Plain twin (no shortcuts)").click()
    wait_idle(page)
    additions = page.locator('[data-testid="stMetric"]').filter(has_text="Shortcut additions")
    expect(additions).to_contain_text("0.00 M", timeout=60_000)
    page.get_by_role("link", name="Home").first.click()
    wait_idle(page)
    page.get_by_role("link", name="Architecture").first.click()
    wait_idle(page)
    expect(page.locator('[data-testid="stMain"]')).to_contain_text("plain18", timeout=60_000)
    additions = page.locator('[data-testid="stMetric"]').filter(has_text="Shortcut additions")
    expect(additions).to_contain_text("0.00 M", timeout=60_000)
    assert page.errors == []


def test_a_deep_link_to_a_fresh_server_gets_the_whole_shell(_browser, tmp_path):
    """The first request a server sees is a deep link: it must still run app.py (ui.shell)."""
    from tests.app.browser import AppServer

    server = AppServer(
        {"TORCH_HOME": str(tmp_path / "torch"), "RESVIZ_RUNS_DIR": str(tmp_path)}, tmp_path / "log.txt"
    ).start()
    try:
        page = _browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.url}/architecture")
        wait_idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "Variant" in sidebar and "Feature Maps" in sidebar  # our picker and our page titles
        assert page.get_by_role("heading", name="Architecture").is_visible()
        page.close()
    finally:
        server.stop()
