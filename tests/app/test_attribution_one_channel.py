"""Issue 21, section 3: every method of the table on a 1-channel (digits) run with an uploaded RGB
photo, through the library and through the page; and what Stop leaves on the page."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from resviz.analysis.methods import METHOD_TABLE
from ui import state

PAGE = "pages/attribution.py"
DIGITS = tuple(str(d) for d in range(10))
SIDE = 24  # not 8, 16 or 32: nothing may assume the demo's input size


def _photo(size=(40, 30), seed=0) -> Image.Image:
    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rgb, "RGB")


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _digits_trained():
    """What :func:`resviz.runs.save_run` reads of a 1-channel digits run, without training one."""
    from resviz.models import create_model
    from resviz.preprocessing import Preprocessing

    model = create_model("resnet8", num_classes=len(DIGITS), seed=0, in_channels=1)
    prep = Preprocessing(resize=SIDE, crop=SIDE, mean=(0.5,), std=(0.25,), channels=1)
    meta = {
        "name": "resnet8",
        "variant_config": model.config.to_dict(),
        "dataset": "digits",
        "class_names": list(DIGITS),
        "preprocessing": prep.to_dict(),
        "seed": 0,
        "steps_done": 2,
        "final_train_error": 0.5,
        "curves": {"loss": [2.3, 2.2]},
    }
    return SimpleNamespace(
        model=model,
        name="resnet8",
        dataset="digits",
        config=SimpleNamespace(seed=0),
        metadata=lambda: meta,
        snapshots={},  # no weights kept along training
    )


@pytest.fixture
def digits_run():
    from resviz.runs import save_run

    return save_run(_digits_trained())  # into the test's own runs folder


@pytest.mark.parametrize("method", [m.name for m in METHOD_TABLE])
def test_every_method_explains_an_rgb_photo_on_a_one_channel_model(digits_run, method):
    from resviz.analysis.attribution import attribute_images
    from resviz.models.weights import load_run

    loaded = load_run(digits_run)
    assert loaded.model.config.in_channels == 1
    result = attribute_images(loaded, [_photo(), _photo(seed=1).convert("RGBA")], method)
    assert result.maps.shape == (2, SIDE, SIDE)
    assert np.isfinite(result.maps).all()
    assert set(result.target_labels) <= set(DIGITS)


def test_the_cost_probe_uses_the_models_channels(digits_run):
    from resviz.analysis.cams_forward import probe_layer
    from resviz.models.weights import load_run

    channels, seconds = probe_layer(load_run(digits_run).model, "layer3", SIDE)
    assert channels == 64 and seconds > 0


def _overlays(at) -> list[dict]:
    figs = [json.loads(node.proto.spec) for node in at.get("plotly_chart")]
    return [f for f in figs if f.get("layout", {}).get("meta", {}).get("kind") == "attribution_overlay"]


def _open_with_upload(open_page, run):
    at = open_page(PAGE, model_name="resnet8", model_weights="run", train_run=str(run))
    assert not at.exception, at.exception
    at.file_uploader[0].upload("cat.png", _png(_photo((64, 48))), "image/png").run()
    assert not at.exception, at.exception
    return at


def test_every_method_of_the_table_runs_on_the_page_for_a_digits_run_and_an_rgb_upload(open_page, digits_run):
    at = _open_with_upload(open_page, digits_run)
    for spec in METHOD_TABLE:
        at.selectbox(key=state.ATTR_METHOD).set_value(spec.name).run()
        if spec.engine == "forward":  # the cost first, then a click
            assert any("forward passes" in i.value for i in at.info), spec.name
            at.button(key=state.ATTR_RUN).click().run()
        assert not at.exception, (spec.name, at.exception)
        assert not at.error, (spec.name, [e.value for e in at.error])
        assert len(_overlays(at)) == 2, spec.name  # the default sample digit and the photo
        # The rest of the page is still there (it vanished behind the error before).
        assert any(s.value == "Faithfulness" for s in at.subheader), spec.name


def _progress_texts(at) -> list[str]:
    return [n.proto.text for n in at.get("progress")]


def test_stop_replaces_the_progress_bar_with_where_it_stopped(open_page, digits_run, monkeypatch):
    """A click on Stop interrupts the run at its next progress update (Streamlit raises in the
    script thread there). Simulated: the run draws its bar, reports 3 of 10 passes and is cut
    off; then Stop is clicked."""
    import streamlit as st

    import resviz.analysis.attribution as attribution

    real, cut = attribution.attribute_images, [True]

    def interrupted(*args, progress, **kw):
        if not cut[0]:
            return real(*args, progress=progress, **kw)
        progress(3, 10)
        st.stop()  # the script ends here, as when a rerun interrupts it

    at = open_page(PAGE, model_name="resnet8", model_weights="run", train_run=str(digits_run))
    at.selectbox(key=state.ATTR_METHOD).set_value("scorecam").run()
    monkeypatch.setattr(attribution, "attribute_images", interrupted)
    at.button(key=state.ATTR_RUN).click().run()
    assert _progress_texts(at) == ["3 of 10 forward passes"]
    at.button(key=state.ATTR_STOP).click().run()
    assert not at.exception, at.exception
    assert not _progress_texts(at)  # no bar left behind, "Starting…" or other
    said = [w.value for w in at.warning]
    assert "Score-CAM stopped after 3 of 10 forward passes; press Run to start again." in said
    assert not _overlays(at)
    # Still said after another widget's rerun, and gone once Run is pressed again.
    at.slider(key=state.ATTR_OPACITY).set_value(0.7).run()
    assert any("stopped after 3 of 10" in w.value for w in at.warning)
    cut[0] = False
    at.button(key=state.ATTR_RUN).click().run()
    assert not at.exception and not any("stopped" in w.value for w in at.warning)
    assert len(_overlays(at)) == 1


def test_stop_while_nothing_runs_says_so(open_page, digits_run):
    at = open_page(PAGE, model_name="resnet8", model_weights="run", train_run=str(digits_run))
    at.selectbox(key=state.ATTR_METHOD).set_value("ablationcam").run()
    at.button(key=state.ATTR_STOP).click().run()
    assert not at.exception
    assert any(w.value.startswith("Nothing is running") for w in at.warning)


@pytest.mark.parametrize("page", ["pages/attribution.py", "pages/feature_maps.py"])
def test_a_photo_on_a_digits_model_gets_one_line_saying_what_the_model_knows(open_page, digits_run, page):
    notice = "knows only digits (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"
    at = open_page(page, model_name="resnet8", model_weights="run", train_run=str(digits_run))
    assert not at.exception
    assert not any(notice in i.value for i in at.info)  # a held-out digit: nothing to say
    at.file_uploader[0].upload("cat.png", _png(_photo((64, 48))), "image/png").run()
    if page == "pages/feature_maps.py":  # one image at a time: pick the upload
        box = at.selectbox(key="feat_img_images_pick")
        box.set_value(next(o for o in box.options if "cat.png" in o)).run()
    said = [i.value for i in at.info if notice in i.value]
    assert len(said) == 1 and "not what the photo is" in said[0] and "ImageNet weights" in said[0]
