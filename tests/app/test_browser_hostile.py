"""In a real browser: a hostile run title on every page makes no image, no link, no request off the machine.

The title once made another visitor's browser fetch ``http://evil.example.com/track.png`` as soon as
they picked the run (the sidebar caption rendered it as markdown). Here a server is started with
such a run, the run is picked in the sidebar and every page is visited in the same session; every
request the browser makes is recorded, and any to another host fails the test.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from resviz.runs import list_runs, rename_run, save_run
from tests.app.browser import AppServer, exceptions_on, wait_idle
from tests.test_weights import fake_trained

pytestmark = pytest.mark.browser

TITLE = (
    "![t](http://evil.example.com/track.png) [click me](http://evil.example.com/x) "
    "<img src=//evil.example.com/i>"
)
PAGES = [
    "Architecture",
    "Feature Maps",
    "Gradient Flow",
    "Attribution",
    "Training Lab",
    "Runs",
    "Why it works",
]
OUTER = "e => e.parentElement.outerHTML.slice(0, 300)"  # for the failure message
FROM_TITLE = 'img[src*="evil"], a[href*="evil"], image[href*="evil"], [src*="evil"], [href*="evil"]'


@pytest.fixture
def hostile_server(tmp_path):
    runs = tmp_path / "runs"
    path = save_run(fake_trained("plain8", classes=(TITLE, "square", "star")), runs)
    rename_run(next(r for r in list_runs(runs, bundled=False) if r.path == path), TITLE)
    env = {"TORCH_HOME": str(tmp_path / "torch"), "RESVIZ_RUNS_DIR": str(runs), "RESVIZ_THREADS": "1"}
    server = AppServer(env, tmp_path / "streamlit.log").start()
    yield server.url
    server.stop()


def test_a_hostile_title_is_text_on_every_page_and_nothing_leaves_the_machine(_browser, hostile_server):
    context = _browser.new_context(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    try:
        page.goto(hostile_server)
        wait_idle(page, timeout=180)
        sidebar = page.locator('[data-testid="stSidebar"]')
        label = page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(r"^Run$"))
        sidebar.locator('[data-testid="stSelectbox"]', has=label).click()
        page.get_by_role("option").filter(has_text="click me").first.click()
        wait_idle(page, timeout=180)
        shown = sidebar.inner_text().replace("\u200b", "")  # a zero-width space breaks autolinks
        assert "![t](http://evil.example.com/track.png)" in shown  # the title, literally
        assert page.locator(FROM_TITLE).count() == 0
        for title in PAGES:
            sidebar.get_by_role("link", name=title).click()
            wait_idle(page, timeout=180)
            assert not exceptions_on(page), title
            found = page.locator(FROM_TITLE)
            assert found.count() == 0, (title, [found.nth(i).evaluate(OUTER) for i in range(found.count())])
            assert "evil.example.com" in sidebar.inner_text(), title  # still the hostile run
        here = urlparse(hostile_server).netloc
        away = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")]
        away = [u for u in away if urlparse(u).netloc != here]
        assert not away, away
    finally:
        context.close()
