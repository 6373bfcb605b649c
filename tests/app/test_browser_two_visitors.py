"""Two visitors in two real browsers on one server: B cannot delete, rename or stop A's work, and A is
told when the run it has open is deleted elsewhere."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from tests.app.browser import AppServer, exceptions_on, wait_idle

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    runs = tmp_path / "runs"
    env = {"TORCH_HOME": str(tmp_path / "torch"), "RESVIZ_RUNS_DIR": str(runs), "RESVIZ_THREADS": "1"}
    srv = AppServer(env, tmp_path / "streamlit.log").start()
    yield srv.url, runs
    srv.stop()


def _start(page, steps: int) -> None:
    box = page.get_by_label("Steps")
    box.fill(str(steps))
    box.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()


def test_b_cannot_touch_a_s_runs_or_job_and_a_hears_of_a_deletion(_browser, server):
    url, runs = server
    contexts = [_browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in "AB"]
    a, b = (c.new_page() for c in contexts)
    try:
        # A trains four tiny models: they are A's.
        a.goto(f"{url}/training_lab")
        wait_idle(a, timeout=180)
        _start(a, 4)
        a.get_by_text("Saved 4 trained model(s)").wait_for(timeout=240_000)

        # B ticks one of them on the Runs page: read-only, no Rename or Delete.
        b.goto(f"{url}/runs")
        wait_idle(b, timeout=180)
        table = b.locator('[data-testid="stDataFrame"]').first
        table.scroll_into_view_if_needed()
        box = table.bounding_box()
        assert box is not None
        b.mouse.click(box["x"] + 18, box["y"] + 35 * 1.5)  # the first row: a saved run of A's
        wait_idle(b, timeout=120)
        main = b.locator('[data-testid="stMain"]')
        expect(main).to_contain_text("Read-only", timeout=60_000)
        assert b.get_by_role("button", name="Delete").count() == 0
        assert b.get_by_role("button", name="Rename").count() == 0

        # A starts a long run; B sees it going, with a Stop it cannot press.
        a.reload()
        wait_idle(a, timeout=180)
        _start(a, 5000)
        a.get_by_text(re.compile(r"step \d+ of 5000")).wait_for(timeout=180_000)
        b.goto(f"{url}/training_lab")
        wait_idle(b, timeout=180)
        expect(b.locator('[data-testid="stMain"]')).to_contain_text("Only they can stop it", timeout=60_000)
        expect(b.get_by_role("button", name="Stop (keep what was trained)")).to_be_disabled()
        a.get_by_role("button", name="Stop (keep what was trained)").click()
        expect(a.locator('[data-testid="stMain"]')).to_contain_text("Stopped", timeout=120_000)

        # A opens one of its runs; it is deleted elsewhere (the CLI, a shell): A's sidebar says so.
        sidebar = a.locator('[data-testid="stSidebar"]')
        label = a.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(r"^Run$"))
        sidebar.locator('[data-testid="stSelectbox"]', has=label).click()
        a.get_by_role("option").filter(has_text="plain20 · digits").first.click()
        wait_idle(a, timeout=180)
        picked = next(p for p in runs.iterdir() if p.name.endswith("plain20-s0"))
        shutil.rmtree(picked)
        a.get_by_role("link", name="Home").first.click()
        wait_idle(a, timeout=180)
        expect(sidebar).to_contain_text("was deleted", timeout=60_000)
        assert exceptions_on(a) == [] and exceptions_on(b) == []
    finally:
        for c in contexts:
            c.close()
