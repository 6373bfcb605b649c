"""AppTest of the Attribution page's Faithfulness section: held-out images of a saved shapes run."""

from __future__ import annotations

import json

import pytest

from ui import state

PAGE = "pages/attribution.py"
SHAPES = ("circle", "ring", "square", "frame", "triangle", "cross")  # six classes, as shapes has


@pytest.fixture
def shapes_run():
    from resviz.runs import save_run
    from tests.test_weights import fake_trained

    return save_run(fake_trained("resnet8", classes=SHAPES))  # into the test's own runs folder


def _open(open_page, run, **extra):
    return open_page(
        PAGE,
        model_name="resnet8",
        model_weights="run",
        train_run=str(run),
        **{state.FAITH_N: 16, state.FAITH_METHODS: ["gradcam", "random"], state.FAITH_STEPS: 5, **extra},
    )


def test_the_section_says_the_cost_then_evaluates_both_nets(open_page, shapes_run):
    at = _open(open_page, shapes_run)
    assert not at.exception, at.exception
    assert any(s.value == "Faithfulness" for s in at.subheader)
    said = [c.value for c in at.caption] + [w.value for w in at.warning]  # a warning on a busy machine
    assert any("About" in t and "16 images on both networks" in t for t in said)
    assert not at.get("arrow_data_frame")  # nothing computed before the button
    at.button(key=state.FAITH_RUN).click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    (frame,) = at.dataframe
    rows = frame.value
    assert list(rows["net"]) == ["resnet8", "resnet8", "plain8", "plain8"]
    assert list(rows["method"]) == ["gradcam", "random"] * 2
    assert rows["Pointing game ↑"].between(0, 1).all()  # shapes has masks
    assert "Deletion AUC ↓" in rows.columns
    charts = {n.proto.id: json.loads(n.proto.spec) for n in at.get("plotly_chart")}
    titles = [c["layout"].get("title", {}).get("text", "") for c in charts.values()]
    assert any(t.startswith("Faithfulness of each method on resnet8 and plain8") for t in titles)
    assert any(t.startswith("Curves, mean over 16 images") for t in titles)
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Table (CSV)", "Per image (npz)", "Metrics chart (HTML)", "Curves (HTML)"} <= set(labels)
    # Kept: a chart setting elsewhere on the page does not recompute it.
    import resviz.analysis.faithfulness as F

    calls = []
    real = F.evaluate
    F.evaluate = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        at.slider(key=state.ATTR_OPACITY).set_value(0.8).run()
    finally:
        F.evaluate = real
    assert not at.exception and calls == [] and len(at.dataframe) == 1


def test_a_larger_set_warns_before_running(open_page, shapes_run, monkeypatch):
    import resviz.analysis.faithfulness as F

    # The estimate times a few passes on this machine: fix it, so the test does not depend on load.
    monkeypatch.setattr(F, "estimate_seconds", lambda *args, **kwargs: 95.0)
    at = _open(
        open_page,
        shapes_run,
        **{state.FAITH_N: 256, state.FAITH_METHODS: ["integrated_gradients", "occlusion"]},
    )
    assert not at.exception, at.exception
    assert any(w.value.startswith("About 95 s here for 256 images") for w in at.warning)
    assert any("Fewer images, methods or steps make it quicker" in w.value for w in at.warning)
    assert not any("default set" in w.value for w in at.warning)  # issue 21: it was the default set
    assert not at.get("arrow_data_frame")
