"""The Attribution page in headless Chromium: an uploaded photo gets its top-5 and its overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.app.browser import exceptions_on, use_random_weights, wait_count, wait_idle

pytestmark = pytest.mark.browser


def test_upload_shows_an_overlay(app_url, browser_page, tmp_path) -> None:
    path = tmp_path / "my_photo.png"
    y, x = np.mgrid[0:120, 0:160]
    rgb = np.stack([x * 255 // 160, y * 255 // 120, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)

    page = browser_page
    page.goto(f"{app_url}/attribution")
    wait_idle(page, timeout=180)
    use_random_weights(page)
    page.get_by_text("This network is untrained").first.wait_for(timeout=60_000)
    # The deep link runs inside app.py's shell: the sidebar holds the shared model picker.
    assert page.locator('[data-testid="stSidebar"]').get_by_text("Plain twin (no shortcuts)").count() == 1
    page.locator('[data-testid="stMain"] input[type="file"]').first.set_input_files(str(path))
    page.get_by_text("my_photo.png: Grad-CAM at layer").first.wait_for(timeout=120_000)
    wait_idle(page, timeout=180)

    # Two images in one batch (the default sample and the upload): two overlays, two top-5 charts.
    assert wait_count(page, ".js-plotly-plot .imagelayer image", 2) == 2
    overlays = page.locator(".js-plotly-plot .imagelayer image")
    assert (overlays.last.get_attribute("href") or "").startswith("data:image/png;base64,")
    assert wait_count(page, ".js-plotly-plot .barlayer", 2) == 2
    assert page.get_by_text("Overlay (PNG)").count() == 2
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert exceptions_on(page) == []
    assert page.errors == []
