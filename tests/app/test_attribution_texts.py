"""Issue 21, section 4, Attribution: each method explained from the table, Eigen-CAM without a
class, Integrated Gradients' steps raised until its completeness check passes, the method count,
and signed attributions on a diverging scale."""

from __future__ import annotations

import json

import pytest

from resviz.analysis.methods import METHOD_TABLE, get_method
from ui import state

PAGE = "pages/attribution.py"


def _figures(at, kind: str) -> list[dict]:
    figs = [json.loads(node.proto.spec) for node in at.get("plotly_chart")]
    return [f for f in figs if f.get("layout", {}).get("meta", {}).get("kind") == kind]


def _open(app_test, monkeypatch):
    import streamlit as st

    import ui.models

    st.cache_data.clear()  # the page's attribution cache: each test counts its own computations
    monkeypatch.setattr(ui.models, "DEFAULT_MODEL", "resnet_tiny")
    app_test.session_state[state.MODEL_NAME] = "resnet_tiny"
    at = app_test.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_every_row_of_the_table_has_its_lines_and_the_count_is_the_tables(app_test, monkeypatch):
    assert all(20 < len(m.about) < 320 for m in METHOD_TABLE)  # one or two sentences each
    at = _open(app_test, monkeypatch)
    picker = at.selectbox(key=state.ATTR_METHOD)
    assert picker.label == f"Method ({len(METHOD_TABLE)})" and len(picker.options) == len(METHOD_TABLE)
    for name in ("gradcam", "occlusion", "fullgrad"):
        picker.set_value(name).run()
        spec = get_method(name)
        assert any(c.value.startswith(f"**{spec.label}**: {spec.about}") for c in at.caption), name
        picker = at.selectbox(key=state.ATTR_METHOD)


@pytest.mark.parametrize("method", [m.name for m in METHOD_TABLE if not m.uses_class])
def test_class_free_methods_grey_out_the_class_picker(app_test, monkeypatch, method):
    at = _open(app_test, monkeypatch)
    assert not at.selectbox(key=state.ATTR_TARGET).disabled  # Grad-CAM: a class to pick
    at.selectbox(key=state.ATTR_METHOD).set_value(method).run()
    assert not at.exception and not at.error
    assert at.selectbox(key=state.ATTR_TARGET).disabled
    said = [m.value for m in at.markdown if get_method(method).label in m.value]
    assert said and all(" for **" not in m and "the same for every class" in m for m in said)


def test_integrated_gradients_raises_its_steps_until_complete(app_test, monkeypatch):
    """With a tolerance no 32-step path meets, the page doubles the steps up to its cap and says so;
    with the toggle off it keeps the slider's steps."""
    import resviz.analysis.attribution as attribution

    steps_asked: list[int] = []
    real = attribution.attribute_images

    def counting(*args, **kwargs):
        steps_asked.append(getattr(kwargs["options"], "steps", None))
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, "attribute_images", counting)
    at = _open(app_test, monkeypatch)
    steps_asked.clear()  # Grad-CAM's, on the way in
    at.selectbox(key=state.ATTR_METHOD).set_value("integrated_gradients").run()
    assert not at.exception and not at.error
    worst = [c.value for c in at.caption if c.value.startswith("Completeness error (")]
    assert worst or at.warning  # the check is said either way
    if steps_asked[-1] != 32:  # raised: said, and under the tolerance or at the cap
        assert any(c.value.startswith("Steps raised from 32 to") for c in at.caption)
    assert steps_asked == sorted(steps_asked) and steps_asked[-1] <= 256
    # Off: the slider's number is kept.
    steps_asked.clear()
    at.toggle(key=state.ATTR_IG_AUTO).set_value(False).run()
    at.slider(key=state.ATTR_IG_STEPS).set_value(8).run()
    assert steps_asked == [8]
    assert not any(c.value.startswith("Steps raised") for c in at.caption)


def test_the_page_raises_steps_when_the_check_fails(app_test, monkeypatch):
    """A fake result whose error halves with each doubling: 32 -> 64 -> 128 steps, then it passes."""
    import dataclasses

    import numpy as np

    import resviz.analysis.attribution as attribution

    real = attribution.attribute_images

    def fake(*args, **kwargs):
        result = real(*args, **kwargs)
        error = {32: 13.4, 64: 7.0, 128: 3.5}.get(getattr(kwargs["options"], "steps", 0), 1.0)
        return dataclasses.replace(result, completeness=np.full(len(result.maps), error, np.float32))

    monkeypatch.setattr(attribution, "attribute_images", fake)
    at = _open(app_test, monkeypatch)
    at.selectbox(key=state.ATTR_METHOD).set_value("integrated_gradients").run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Steps raised from 32 to 128") for c in at.caption)
    assert any("up to 3.5%" in c.value for c in at.caption)
    assert not any("Completeness" in w.value for w in at.warning)


def test_signed_attributions_on_a_diverging_scale(app_test, monkeypatch):
    at = _open(app_test, monkeypatch)
    at.selectbox(key=state.ATTR_METHOD).set_value("integrated_gradients").run()
    (signed,) = _figures(at, "attribution_signed")
    heat = signed["data"][0]
    assert heat["type"] == "heatmap" and heat["zmid"] == 0 and heat["zmin"] == -heat["zmax"]
    colors = [c[1] for c in heat["colorscale"]]
    assert colors[0] != colors[-1]  # two ends: a diverging scale
    assert "red raises" in signed["layout"]["title"]["text"]
    # Saliency: its absolute value by default (nothing signed), the sign once asked for.
    at.selectbox(key=state.ATTR_METHOD).set_value("saliency").run()
    assert not _figures(at, "attribution_signed")
    assert any("Absolute gradient" in c.value for c in at.caption)
    at.toggle(key=f"{state.ATTR_OPTION_PREFIX}saliency_absolute").set_value(False).run()
    assert not at.exception
    assert len(_figures(at, "attribution_signed")) == 1
    # A CAM has no sign to show.
    at.selectbox(key=state.ATTR_METHOD).set_value("gradcam").run()
    assert not _figures(at, "attribution_signed")


def test_the_imagenet_button_says_its_size(app_test, monkeypatch):
    import ui.models

    monkeypatch.setattr(ui.models, "DEFAULT_MODEL", "resnet18")
    app_test.session_state[state.MODEL_NAME] = "resnet18"
    at = app_test.switch_page(PAGE).run()
    assert not at.exception
    label = at.button(key=state.ATTR_GET_PRETRAINED).proto.label
    assert label == "Get pretrained ImageNet weights (45 MB, downloaded once)"  # torchvision's metadata
