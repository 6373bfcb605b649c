"""ui.images' decoded-upload cache: bounded by the pixels' bytes, least recently used goes first."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from resviz.errors import ImageError
from resviz.images import LoadedImage, decode_image
from ui.images import ByteLRU, Upload, decoded, image_bytes


def image(side: int) -> LoadedImage:
    return LoadedImage(f"{side}", Image.new("RGB", (side, side)))


def test_evicts_least_recently_used_by_bytes() -> None:
    cache = ByteLRU(budget=3 * 100 * 100 * 3)  # three 100 x 100 RGB images
    for key in "abc":
        cache.get((key, ""), lambda: image(100))
    assert len(cache) == 3 and cache.nbytes == 90_000
    cache.get(("a", ""), lambda: pytest.fail("a hit must not decode"))  # a is now the newest
    cache.get(("d", ""), lambda: image(100))  # over budget: b, the least recently used, goes
    made = []
    cache.get(("b", ""), lambda: made.append(1) or image(100))
    assert made == [1]  # b was evicted and decoded again; c went to make room
    assert cache.nbytes <= cache.budget
    cache.get(("big", ""), lambda: image(300))  # alone over budget: kept, everything else goes
    assert len(cache) == 1 and cache.nbytes == image_bytes(image(300)) == 270_000


def test_a_bad_file_is_not_cached() -> None:
    cache = ByteLRU(budget=10**6)
    with pytest.raises(ImageError):
        cache.get(("x", "x.png"), lambda: decode_image(b"not an image", "x.png"))
    assert len(cache) == 0


def test_an_upload_is_decoded_downscaled_and_shared() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (2400, 1600), (10, 200, 30)).save(buf, "PNG")
    up = Upload("big.png", "digest-of-big", buf.getvalue())
    first = decoded(up)
    assert first.size == (1254, 836) and "downscaled from 2400 x 1600" in first.notes[0]
    assert decoded(up) is first  # a rerun decodes nothing


def _scene(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, ((x // 97 + y // 89) % 2) * 255], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("page", ["pages/attribution.py", "pages/feature_maps.py"])
def test_a_large_upload_is_shown_downscaled_with_its_overlay(app_test, monkeypatch, page) -> None:
    """The pages take the downscaled upload: a note says so, and the network's view is the
    preprocessing of Pillow's own resize of the full image (what a full-size decode would give)."""
    import json

    import ui.models
    from resviz.preprocessing import IMAGENET
    from ui import state

    monkeypatch.setattr(ui.models, "DEFAULT_MODEL", "resnet_tiny")
    app_test.session_state[state.MODEL_NAME] = "resnet_tiny"
    at = app_test.switch_page(page).run()
    full = _scene(3000, 2000)
    buf = io.BytesIO()
    full.save(buf, "PNG", compress_level=1)  # lossless: ``full`` is what a full-size decode gives
    data = buf.getvalue()
    at.file_uploader[0].upload("wide.png", data, "image/png").run()
    assert not at.exception and not at.error, (at.exception, at.error)
    captions = " ".join(c.value for c in at.caption)
    assert "wide.png: downscaled from 3000 x 2000 to 1254 x 836 pixels" in captions
    figs = [json.loads(n.proto.spec) for n in at.get("plotly_chart")]
    if page == "pages/attribution.py":
        overlays = [
            f for f in figs if f.get("layout", {}).get("meta", {}).get("kind") == "attribution_overlay"
        ]
        assert len(overlays) == 2  # the default sample and the upload
    else:
        assert figs  # the feature-map grid of the upload
    reference = IMAGENET.array([full.resize((1254, 836), Image.Resampling.LANCZOS)])
    ours = IMAGENET.array(
        [decoded(Upload("wide.png", at.session_state[state.IMAGE_UPLOADS][-1].digest, data)).image]
    )
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 4
