"""AppTest of the Attribution page with the methods added to the table in part 2 of issue 9:
FullGrad, Smooth Grad-CAM++, FEM, KPCA-CAM, Shapley-CAM (quick: they run at once) and SS-CAM,
IS-CAM (a pass per channel and per sample: cost first, then a click), each with its option
widgets from the table."""

from __future__ import annotations

import json

from ui import state

PAGE = "pages/attribution.py"


def _overlays(at) -> list[dict]:
    figs = [json.loads(node.proto.spec) for node in at.get("plotly_chart")]
    return [f for f in figs if f.get("layout", {}).get("meta", {}).get("kind") == "attribution_overlay"]


def _open(app_test, monkeypatch):
    import ui.models

    monkeypatch.setattr(ui.models, "DEFAULT_MODEL", "resnet_tiny")
    app_test.session_state[state.MODEL_NAME] = "resnet_tiny"
    at = app_test.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_quick_new_methods_run_with_their_options(app_test, monkeypatch):
    at = _open(app_test, monkeypatch)
    at.selectbox(key=state.ATTR_METHOD).set_value("fullgrad").run()
    assert not at.exception and not at.error
    assert at.selectbox(key=state.ATTR_LAYER).disabled  # the whole network: no layer to choose
    assert len(_overlays(at)) == 1
    assert any("FullGrad for" in m.value for m in at.markdown)
    at.selectbox(key=state.ATTR_METHOD).set_value("smoothgradcampp").run()
    assert not at.exception and not at.error
    assert len(_overlays(at)) == 1
    at.number_input(key=f"{state.ATTR_PREFIX}opt_smoothgradcampp_num_samples").set_value(2).run()
    at.number_input(key=f"{state.ATTR_PREFIX}opt_smoothgradcampp_seed").set_value(7).run()
    assert not at.exception and not at.error
    assert len(_overlays(at)) == 1
    for method, label in (("fem", "FEM"), ("kpca_cam", "KPCA-CAM"), ("shapleycam", "Shapley-CAM")):
        at.selectbox(key=state.ATTR_METHOD).set_value(method).run()
        assert not at.exception and not at.error, method
        assert any(f"{label} at" in m.value for m in at.markdown), method


def test_ss_cam_and_is_cam_say_their_cost_then_run(app_test, monkeypatch):
    at = _open(app_test, monkeypatch)
    for method, samples in (("sscam", 2), ("iscam", 2)):
        at.selectbox(key=state.ATTR_METHOD).set_value(method).run()
        at.number_input(key=f"{state.ATTR_PREFIX}opt_{method}_num_samples").set_value(samples).run()
        assert not at.exception and not at.error, method
        assert any(f"(64 channels x {samples} samples x 1 image(s))" in i.value for i in at.info), method
        assert any(f"{64 * samples} forward passes" in i.value for i in at.info), method
        assert not _overlays(at)  # nothing runs before the click
        at.button(key=state.ATTR_RUN).click().run()
        assert not at.exception and not at.error, method
        assert len(_overlays(at)) == 1, method
