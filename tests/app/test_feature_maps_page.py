"""AppTest of the Feature Maps page: sample and uploaded images, every bad file, caching, layers."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
import streamlit as st
from PIL import Image

from ui import state
from ui.images import picker_keys

PAGE = "pages/feature_maps.py"
UPLOAD = picker_keys(state.FEAT_IMAGE_PREFIX)["upload"]
PICK = picker_keys(state.FEAT_IMAGE_PREFIX)["pick"]


def _png(size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_header() -> bytes:
    data = bytearray(_png((8, 8)))
    i = data.index(b"IHDR")
    data[i + 4 : i + 12] = struct.pack(">II", 10_000, 5_000)
    data[i + 17 : i + 21] = struct.pack(">I", zlib.crc32(bytes(data[i : i + 17])))
    return bytes(data)


def _figures(at) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


def _grid(at) -> dict:
    return next(f for f in _figures(at) if [t.get("name") for t in f["data"]] == ["maps", "tiles", "labels"])


def _uploader(at):
    return next(u for u in at.get("file_uploader") if u.key == UPLOAD)


@pytest.fixture
def counted(monkeypatch):
    """Count real forward captures (cache misses) with a fresh cache."""
    import resviz.analysis.features as features

    st.cache_resource.clear()
    calls: list[tuple[str, ...]] = []
    real = features.capture_activations

    def counting(model, x, layers=(), **kwargs):
        calls.append(tuple(layers))
        return real(model, x, layers, **kwargs)

    monkeypatch.setattr(features, "capture_activations", counting)
    return calls


def _open(app_test, model: str = "resnet_tiny", *, plain: bool = False):
    app_test.session_state[state.MODEL_NAME] = model
    app_test.session_state[state.MODEL_PLAIN] = plain
    at = app_test.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _run(at, model: str = "resnet_tiny", *, plain: bool = False):
    """Rerun after an interaction; AppTest does not keep the sidebar's model choice, so set it again."""
    at.session_state[state.MODEL_NAME] = model
    at.session_state[state.MODEL_PLAIN] = plain
    return at.run()


def test_sample_image_grid_block_and_depth(app_test, counted):
    at = _open(app_test)
    assert not at.error, [e.value for e in at.error]
    grid = _grid(at)
    labels = grid["data"][2]["text"]
    assert labels == [str(i) for i in range(8)]  # layer1.0 of resnet_tiny: 8 channels, all shown
    assert grid["data"][1]["hovertemplate"].startswith("%{text}")  # hover says the channel
    titles = [a["text"] for f in _figures(at) for a in f["layout"].get("annotations", [])]
    assert "F(x) (branch)" in titles and "shortcut x" in titles and "output" in titles
    depth = [f for f in _figures(at) if len(f["data"]) == 8]
    assert {t["name"] for t in depth[0]["data"]} == {"with shortcuts", "shortcuts cut (same weights)"}
    assert [b.proto.label for b in at.get("download_button")] == ["Grid as PNG", "Activations as .npz"]
    assert len(counted) == 1


def test_switching_layers_and_channels_does_not_recompute(app_test, counted):
    at = _open(app_test)
    at.selectbox(key=state.FEAT_LAYER).set_value("layer3")
    _run(at)
    assert not at.exception
    assert len(_grid(at)["data"][2]["text"]) == 32
    # A stage shows the signals of its last block, whose output it is.
    assert "layer3.0: F(x), shortcut and output" in [h.value for h in at.subheader]
    at.radio(key=state.FEAT_CHANNEL_MODE).set_value("top-k")
    _run(at)
    at.slider(key=state.FEAT_TOPK).set_value(5)
    _run(at)
    assert len(_grid(at)["data"][2]["text"]) == 5
    at.selectbox(key=state.FEAT_LAYER).set_value("layer4.0")
    _run(at)
    assert not at.exception and not at.error
    assert len(counted) == 1  # every switch above came from the cache
    at.text_input(key=state.FEAT_MODULE).set_value("layer2.0.conv1")
    _run(at)
    assert not at.exception and not at.error
    assert "layer2.0.conv1" in at.subheader[0].value
    assert not any("F(x), shortcut and output" in h.value for h in at.subheader)  # no block by name
    assert counted[-1] == ("layer2.0.conv1",)


@pytest.mark.parametrize(
    ("model", "plain", "words", "wrong"),
    [
        ("resnet_tiny", False, "output = ReLU(F(x) + shortcut)", "no ReLU"),
        ("preact_resnet_tiny", False, "no ReLU after the sum", "ReLU(F(x) + shortcut)"),
        ("resnet_tiny", True, "ReLU(F(x)) alone", "+ shortcut"),
        ("preact_resnet_tiny", True, "its output is F(x) alone", "ReLU"),
    ],
)
def test_block_caption_matches_the_kind_of_block(app_test, model, plain, words, wrong):
    at = _open(app_test, model, plain=plain)
    caption = next(c.value for c in at.caption if "F(x)" in c.value and "color scale" in c.value)
    assert words in caption and wrong not in caption
    heading = "layer1.0: F(x) and output (no shortcut)" if plain else "layer1.0: F(x), shortcut and output"
    assert heading in [h.value for h in at.subheader]


def test_block_comparison_says_it_shows_the_first_8_channels(app_test):
    at = _open(app_test)
    caption = next(c.value for c in at.caption if "color scale" in c.value)
    assert "The channels shown above" in caption  # layer1.0: all 8 channels fit
    at.selectbox(key=state.FEAT_LAYER).set_value("layer4.0")
    _run(at)
    caption = next(c.value for c in at.caption if "color scale" in c.value)
    assert "first 8 of the 64 channels shown" in caption


def test_channel_sliders_set_through_session_state_get_no_default(app_test, monkeypatch):
    from streamlit.elements.lib import policies

    warned: list[str] = []
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    monkeypatch.setattr(policies._LOGGER, "warning", lambda msg, *a, **k: warned.append(msg % a))
    at = _open(app_test)
    at.selectbox(key=state.FEAT_LAYER).set_value("layer4.0")
    _run(at)
    at.slider(key=state.FEAT_RANGE).set_value((40, 63))
    _run(at)
    at.selectbox(key=state.FEAT_LAYER).set_value("layer1.0")  # 8 channels: the range is reset
    _run(at)
    assert not at.exception
    assert at.slider(key=state.FEAT_RANGE).value == (0, 7)
    at.radio(key=state.FEAT_CHANNEL_MODE).set_value("top-k")
    at.selectbox(key=state.FEAT_LAYER).set_value("layer4.0")
    _run(at)
    at.slider(key=state.FEAT_TOPK).set_value(60)
    _run(at)
    at.selectbox(key=state.FEAT_LAYER).set_value("layer1.0")  # k = 60 > 8: k is reset
    _run(at)
    assert not at.exception
    assert at.slider(key=state.FEAT_TOPK).value == 8
    assert not [w for w in warned if "Session State API" in w], warned


def test_unknown_module_is_one_sentence(app_test):
    at = _open(app_test)
    at.text_input(key=state.FEAT_MODULE).set_value("layer2.0.conv9")
    _run(at)
    assert not at.exception
    assert any("no layer named 'layer2.0.conv9'" in e.value and "Close matches" in e.value for e in at.error)


def test_a_module_the_plain_model_never_runs_is_one_sentence(app_test):
    at = _open(app_test, plain=True)
    at.text_input(key=state.FEAT_MODULE).set_value("layer2.0.shortcut_out")
    _run(at, plain=True)
    assert not at.exception, at.exception
    assert any("not used by this model's forward pass" in e.value for e in at.error)


def test_uploaded_image_is_used_and_kept_across_pages(app_test, counted):
    at = _open(app_test)
    _uploader(at).upload("mine.png", _png(), "image/png")
    at = _run(at)
    assert not at.exception and not at.error
    assert at.selectbox(key=PICK).value == "⬆ mine.png"
    assert len(counted) == 2  # the sample, then the upload
    at.switch_page("pages/home.py")
    at = _run(at)
    at.switch_page(PAGE)
    at = _run(at)
    assert not at.exception
    assert at.selectbox(key=PICK).value == "⬆ mine.png"  # still picked, though the uploader forgot it
    assert len(counted) == 2  # and still cached


BAD_FILES = {
    "text.png": (b"just some text, not pixels\n" * 4, "not an image"),
    "empty.jpg": (b"", "empty"),
    "cut.png": (_png((64, 64))[:300], "truncated"),
    "bomb.png": (_bomb_header(), "megapixels"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_every_bad_file_gives_a_message_not_an_exception(app_test, name):
    data, words = BAD_FILES[name]
    at = _open(app_test)
    _uploader(at).upload(name, data, "image/png")
    at = _run(at)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and name in errors[0] and words in errors[0]
    assert _grid(at)  # the page keeps working on the sample image


def _picker_script():
    import streamlit as st

    from ui.images import image_picker

    st.write(", ".join(im.name for im in image_picker("t_", multiple=True)))


def test_picker_bad_and_good_uploads_together():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_picker_script, default_timeout=60).run()
    up = at.get("file_uploader")[0]
    up.upload("bad.gif", b"GIF89a" + bytes(5), "image/gif").upload("good.png", _png(), "image/png").run()
    assert not at.exception
    assert len(at.error) == 1 and "bad.gif" in at.error[0].value
    assert at.markdown[0].value == "chelsea (cat), good.png"


def test_over_size_limit_upload(app_test, monkeypatch):
    import resviz.images as images

    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 1000)  # the browser refuses real ones itself
    monkeypatch.setattr(
        images.decode_image, "__kwdefaults__", {"max_pixels": images.MAX_PIXELS, "max_bytes": 1000}
    )
    at = _open(app_test)
    _uploader(at).upload("large.png", _png((64, 64)), "image/png")
    at = _run(at)
    assert not at.exception
    assert any("upload limit" in e.value for e in at.error)


def test_resnet18_layer_switch_redraws_from_the_cache(app_test, counted):
    """A real-size model: switching layers reruns the page without a forward pass (the timing
    against issue 3's 0.3 s budget is bench/bench_pages.py's job)."""
    at = _open(app_test, "resnet18")
    assert not at.error and len(counted) == 1
    at.selectbox(key=state.FEAT_LAYER).set_value("layer2.1")
    at = _run(at, "resnet18")
    assert not at.exception and not at.error
    assert len(counted) == 1
    texts = [m.value for m in at.markdown] + [h.value for h in at.subheader]
    assert any("layer2.1: 64 of 128 channels" in t for t in texts), texts  # the first 64 by default


def test_a_wider_model_keeps_the_channel_range_and_k(app_test):
    """Issue 11: a model switch changed the sliders' bounds and they fell back to all channels / k=1."""
    at = _open(app_test)
    at.selectbox(key=state.FEAT_LAYER).set_value("layer4.0")
    _run(at)
    assert len(_grid(at)["data"][2]["text"]) == 64  # resnet_tiny's layer4.0: 64 channels, all shown
    _run(at, "resnet_tiny_bottleneck")  # its layer4.0 has 128 channels
    assert not at.exception and not at.error
    assert at.subheader[0].value.startswith("layer4.0: 64 of 128 channels")
    assert at.slider(key=state.FEAT_RANGE).value == (0, 63)
    at.radio(key=state.FEAT_CHANNEL_MODE).set_value("top-k")
    _run(at, "resnet_tiny_bottleneck")
    at.slider(key=state.FEAT_TOPK).set_value(5)
    _run(at, "resnet_tiny_bottleneck")
    _run(at)  # back to 64 channels: k = 5 still applies
    assert at.slider(key=state.FEAT_TOPK).value == 5
    assert len(_grid(at)["data"][2]["text"]) == 5
