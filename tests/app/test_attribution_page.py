"""AppTest of the Attribution page: samples, uploads (good and bad), caching, the grid, the banner."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import streamlit as st
from PIL import Image

from ui import state

PAGE = "pages/attribution.py"


def _png(size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _figures(at, kind: str) -> list[dict]:
    figs = [json.loads(node.proto.spec) for node in at.get("plotly_chart")]
    return [f for f in figs if f.get("layout", {}).get("meta", {}).get("kind") == kind]


def _open(app_test, monkeypatch, model: str = "resnet_tiny"):
    # After switch_page, AppTest's tree has no sidebar widgets, so a value set on the sidebar's model
    # selectbox is dropped on the next rerun; the picker's default is what every rerun keeps.
    import ui.models

    monkeypatch.setattr(ui.models, "DEFAULT_MODEL", model)
    app_test.session_state[state.MODEL_NAME] = model
    at = app_test.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def counted(monkeypatch):
    """Count real attribution computations (cache misses) with a fresh cache."""
    import resviz.analysis.attribution as attribution

    st.cache_data.clear()
    calls = []
    real = attribution.attribute_images

    def counting(*args, **kwargs):
        calls.append(args[2] if len(args) > 2 else kwargs.get("method"))
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, "attribute_images", counting)
    return calls


def test_sample_image_gives_top5_and_overlay(app_test, counted, monkeypatch):
    at = _open(app_test, monkeypatch)
    assert any("untrained: its attributions show structure, not knowledge" in w.value for w in at.warning)
    assert len(_figures(at, "attribution_overlay")) == 1
    bars = [
        f for f in (json.loads(n.proto.spec) for n in at.get("plotly_chart")) if f["data"][0]["type"] == "bar"
    ]
    assert len(bars) == 1 and len(bars[0]["data"][0]["y"]) == 5
    assert [b.proto.label for b in at.get("download_button")] == ["Overlay (PNG)", "All raw maps (.npz)"]
    assert not at.error
    assert counted == ["gradcam"]


def test_opacity_and_colormap_do_not_recompute(app_test, counted, monkeypatch):
    at = _open(app_test, monkeypatch)
    first = _figures(at, "attribution_overlay")[0]["data"][0]["source"]
    at.slider(key=state.ATTR_OPACITY).set_value(0.9).run()
    at.selectbox(key=state.ATTR_COLORMAP).set_value("Viridis").run()
    assert not at.exception
    assert _figures(at, "attribution_overlay")[0]["data"][0]["source"] != first
    assert counted == ["gradcam"]
    at.selectbox(key=state.ATTR_LAYER).set_value("layer2").run()
    at.selectbox(key=state.ATTR_METHOD).set_value("saliency").run()
    at.selectbox(key=state.ATTR_TARGET).set_value(3).run()
    assert not at.exception and not at.error
    assert counted == ["gradcam", "gradcam", "saliency", "saliency"]
    assert any("class 3" in m.value for m in at.markdown)


def test_opacity_change_does_not_redo_the_networks_view_or_decode(app_test, monkeypatch):
    import resviz.images
    from resviz.preprocessing import Preprocessing

    st.cache_data.clear()
    st.cache_resource.clear()
    at = _open(app_test, monkeypatch)
    at.file_uploader[0].upload("photo.png", _png((300, 200)), "image/png").run()
    assert not at.exception and not at.error
    work: list[str] = []
    real_array, real_decode = Preprocessing.array, resviz.images.decode_image
    monkeypatch.setattr(
        Preprocessing, "array", lambda self, ims: work.append("view") or real_array(self, ims)
    )
    monkeypatch.setattr(
        resviz.images, "decode_image", lambda *a, **k: work.append("decode") or real_decode(*a, **k)
    )
    import ui.images

    monkeypatch.setattr(ui.images, "decode_image", resviz.images.decode_image)
    for opacity in (0.9, 0.3):
        at.slider(key=state.ATTR_OPACITY).set_value(opacity).run()
    at.selectbox(key=state.ATTR_COLORMAP).set_value("Viridis").run()
    assert not at.exception and not at.error
    assert len(_figures(at, "attribution_overlay")) == 2
    assert work == []  # the views and the decoded upload came from their caches


def test_session_state_keeps_upload_bytes_not_decoded_pixels(app_test, monkeypatch):
    from PIL import Image as PILImage

    from resviz.images import LoadedImage
    from ui.images import Upload

    at = _open(app_test, monkeypatch)
    data = _png((300, 200))
    at.file_uploader[0].upload("photo.png", data, "image/png").run()
    assert not at.exception and not at.error
    kept = at.session_state[state.IMAGE_UPLOADS]
    assert [(u.name, u.data) for u in kept] == [("photo.png", data)] and isinstance(kept[0], Upload)

    def pixels(value, depth=0):
        if isinstance(value, PILImage.Image | LoadedImage | np.ndarray):
            return True
        if depth < 3 and isinstance(value, list | tuple | dict):
            items = value.values() if isinstance(value, dict) else value
            return any(pixels(v, depth + 1) for v in items)
        return False

    held = [k for k in at.session_state if pixels(at.session_state[k])]
    assert held == []
    # Shared by both image pages and kept across a page switch.
    at.switch_page("pages/feature_maps.py").run()
    assert not at.exception
    assert "⬆ photo.png" in at.selectbox(key="feat_img_images_pick").options


def test_upload_one_good_and_one_bad_file(app_test, counted, monkeypatch):
    at = _open(app_test, monkeypatch)
    at.file_uploader[0].upload("photo.png", _png(), "image/png").run()
    at.file_uploader[0].upload("notes.png", b"this is not an image", "image/png").run()
    assert not at.exception
    assert any("notes.png" in e.value for e in at.error)
    overlays = _figures(at, "attribution_overlay")
    assert len(overlays) == 2  # the default sample and the good upload, in one batch
    assert counted[-1] == "gradcam" and len(counted) <= 3


def _bomb_header() -> bytes:
    """A valid 8x8 PNG whose header claims 10000 x 5000 pixels (checked before any decoding)."""
    import struct
    import zlib

    data = bytearray(_png((8, 8)))
    i = data.index(b"IHDR")
    data[i + 4 : i + 12] = struct.pack(">II", 10_000, 5_000)
    data[i + 17 : i + 21] = struct.pack(">I", zlib.crc32(bytes(data[i : i + 17])))
    return bytes(data)


BAD_FILES = {
    "empty.jpg": (b"", "empty"),
    "cut.png": (_png((64, 64))[:300], "truncated"),
    "bomb.png": (_bomb_header(), "megapixels"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_every_bad_file_is_a_sentence_and_the_sample_still_explained(app_test, monkeypatch, name):
    data, words = BAD_FILES[name]
    at = _open(app_test, monkeypatch)
    at.file_uploader[0].upload(name, data, "image/png").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and name in errors[0] and words in errors[0]
    assert errors[0].count(". ") == 0 and errors[0].endswith(".")  # one sentence
    assert len(_figures(at, "attribution_overlay")) == 1  # the sample is still explained


def test_every_method_through_the_page(app_test, monkeypatch):
    at = _open(app_test, monkeypatch)
    for method in ("guided_gradcam", "integrated_gradients", "occlusion"):
        at.selectbox(key=state.ATTR_METHOD).set_value(method).run()
        assert not at.exception and not at.error, method
        assert len(_figures(at, "attribution_overlay")) == 1
    # Occlusion's cost is said before a bigger request is made.
    assert any("forward passes per image" in c.value for c in at.caption)


def test_comparison_grid_layers_methods_and_twin(app_test, monkeypatch):
    at = _open(app_test, monkeypatch)
    at.toggle(key=state.ATTR_GRID).set_value(True).run()
    assert not at.exception and not at.error
    grid = _figures(at, "attribution_grid")
    images = [t for t in grid[0]["data"] if t["type"] == "image"]
    assert len(grid) == 1 and len(images) == 8  # 4 stages x (Grad-CAM, Guided Grad-CAM)
    at.radio(key=state.ATTR_GRID_MODE).set_value("twin").run()
    assert not at.exception and not at.error
    grid = _figures(at, "attribution_grid")[0]
    assert len([t for t in grid["data"] if t["type"] == "image"]) == 8
    titles = {a["text"] for a in grid["layout"]["annotations"]}
    assert {"with shortcuts", "shortcuts cut (same weights)", "layer1", "layer4"} <= titles


def test_pretrained_button_switches_sidebar_weights(app_test, monkeypatch):
    import resviz.models.weights as weights
    from resviz.errors import WeightsUnavailableError

    def offline(name, **_):
        raise WeightsUnavailableError(f"Could not download pretrained weights for {name} (offline).")

    monkeypatch.setattr(weights, "download_weights", offline)  # no network in tests, ever
    at = _open(app_test, monkeypatch, "resnet18")
    at.button(key=state.ATTR_GET_PRETRAINED).click().run()
    assert not at.exception
    assert at.session_state[state.MODEL_WEIGHTS] == "imagenet"
    # Offline: the loader falls back to random weights and the page says why, and still works.
    assert any("Using random weights instead" in w.value for w in at.warning)
    assert len(_figures(at, "attribution_overlay")) == 1


def test_forward_pass_cam_says_its_cost_then_runs_on_a_click(app_test, monkeypatch):
    at = _open(app_test, monkeypatch)
    at.selectbox(key=state.ATTR_METHOD).set_value("ablationcam").run()
    assert not at.exception and not at.error
    assert any("forward passes (64 channels x 1 image(s))" in i.value for i in at.info)
    assert not _figures(at, "attribution_overlay")  # nothing runs before the click
    at.button(key=state.ATTR_RUN).click().run()
    assert not at.exception and not at.error
    assert len(_figures(at, "attribution_overlay")) == 1
    at.slider(key=state.ATTR_OPACITY).set_value(0.8).run()  # kept: no second click needed
    assert len(_figures(at, "attribution_overlay")) == 1


def test_new_cams_and_integrated_gradients_completeness(app_test, monkeypatch):
    at = _open(app_test, monkeypatch)
    for method in ("gradcampp", "eigencam"):
        at.selectbox(key=state.ATTR_METHOD).set_value(method).run()
        assert not at.exception and not at.error, method
        overlay = _figures(at, "attribution_overlay")
        assert len(overlay) == 1 and any(t.get("marker", {}).get("showscale") for t in overlay[0]["data"])
    at.selectbox(key=state.ATTR_METHOD).set_value("integrated_gradients").run()
    assert any("Completeness error" in c.value for c in [*at.caption, *at.warning])
    top = [json.loads(n.proto.spec) for n in at.get("plotly_chart")]
    assert any(f["layout"].get("yaxis", {}).get("type") == "category" for f in top)


@pytest.mark.demo_default
@pytest.mark.parametrize(("picked", "after"), [(None, "layer4"), ("layer2", "layer2")])
def test_leaving_the_demo_run_resets_the_default_layer_but_keeps_a_picked_one(open_page, picked, after):
    """The demo ResNet-56's last stage is layer3; ResNet-18's is layer4. A layer the user picked
    that the new model also has stays."""
    from ui import state

    at = open_page("pages/attribution.py")
    assert not at.exception and at.session_state[state.ATTR_LAYER] == "layer3"
    if picked:
        at.selectbox(key=state.ATTR_LAYER).set_value(picked).run()
    at.session_state[state.MODEL_WEIGHTS] = "random"  # the sidebar's variant: resnet18
    at.run()
    assert not at.exception
    assert at.session_state[state.MODEL_NAME] == "resnet18"
    assert at.session_state[state.ATTR_LAYER] == after
