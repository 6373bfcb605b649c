"""Two browser sessions at once on Attribution: each sees only its own upload, and one's model
switch leaves the other's result exactly as it was (they share one server and its cached models)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.app.browser import exceptions_on, use_random_weights, wait_count, wait_idle

pytestmark = pytest.mark.browser

OVERLAYS = ".js-plotly-plot .imagelayer image"


def photo(path, colour: tuple[int, int, int]) -> str:
    y, x = np.mgrid[0:120, 0:160]
    rgb = np.zeros((120, 160, 3), np.uint8) + np.array(colour, np.uint8)
    rgb[(x // 20 + y // 20) % 2 == 0] //= 3  # a checkerboard, so that the maps have something to find
    Image.fromarray(rgb).save(path)
    return str(path)


def test_two_sessions_keep_their_uploads_and_models_apart(_browser, app_url, tmp_path) -> None:
    files = {"alpha_red.png": (220, 30, 30), "beta_blue.png": (30, 60, 220)}
    contexts = [_browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in files]
    pages = [c.new_page() for c in contexts]
    try:
        for page in pages:
            page.goto(f"{app_url}/attribution")
        for page in pages:
            wait_idle(page, timeout=180)
            use_random_weights(page)  # a fast model; each session chooses its own
        # Both uploads at once: each page's script runs while the other's does.
        for page, (name, colour) in zip(pages, files.items(), strict=True):
            page.locator('[data-testid="stMain"] input[type="file"]').first.set_input_files(
                photo(tmp_path / name, colour)
            )
        for page, name in zip(pages, files, strict=True):
            page.get_by_text(f"{name}: Grad-CAM at layer").first.wait_for(timeout=180_000)
            wait_idle(page, timeout=180)
        a, b = pages
        for page, mine, other in ((a, *files), (b, *reversed(files))):
            text = page.locator('[data-testid="stMain"]').inner_text()
            assert mine in text and other not in text
            assert wait_count(page, OVERLAYS, 2) == 2  # the default sample and this session's upload

        a_before = a.locator(OVERLAYS).last.get_attribute("href")
        before = b.locator(OVERLAYS).last.get_attribute("href")
        # Session A switches its model to the plain twin: its own overlay changes...
        a.locator('[data-testid="stSidebar"]').get_by_text("Plain twin (no shortcuts)").click()
        a.wait_for_function(
            "([sel, old]) => { const o = document.querySelectorAll(sel);"
            " return o.length >= 2 && o[o.length - 1].getAttribute('href') !== old; }",
            arg=[OVERLAYS, a_before],
            timeout=180_000,
        )
        wait_idle(a, timeout=180)

        b.locator('[data-testid="stMain"] h1').first.click()  # focus the page, then rerun it ("r")
        b.keyboard.press("r")
        wait_idle(b, timeout=180)
        # ...and session B, rerun afterwards, still shows its own model's result, bit for bit.
        assert wait_count(b, OVERLAYS, 2) == 2
        assert b.locator(OVERLAYS).last.get_attribute("href") == before  # B's own result, unchanged
        for page in pages:
            assert exceptions_on(page) == []
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    finally:
        for c in contexts:
            c.close()
