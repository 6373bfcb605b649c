"""AppTest of the Gradient Flow page (no browser): charts, downloads, errors, caching, training."""

from __future__ import annotations

import json

import pytest

import resviz.analysis.gradients as ga  # the page imports twin_profile from here
from ui import state

PAGE = "pages/gradient_flow.py"


@pytest.fixture
def grad_page(app_test):
    """The page with small, fast settings (CIFAR-20, batch 4 of 16x16), on empty caches: under
    xdist another file in the same worker may have measured these settings already."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    at = app_test
    at.session_state[state.GRAD_DEPTH_CIFAR] = 20
    at.session_state[state.GRAD_BATCH] = 4
    at.session_state[state.GRAD_SIZE] = 16
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


def _trace_names(at) -> list[set[str]]:
    return [{t.get("name") for t in fig["data"]} for fig in _charts(at)]


def test_twin_chart_split_chart_and_downloads(grad_page) -> None:
    at = grad_page
    assert at.title[0].value == "Gradient Flow"
    assert not at.error
    charts = _charts(at)
    assert len(charts) == 2  # twin chart and split chart; sweep waits for its button, training too
    twin = charts[0]
    assert {t["name"] for t in twin["data"]} == {"resnet20", "plain20"}
    assert twin["layout"]["yaxis"]["type"] == "log"
    assert twin["data"][0]["customdata"][0] == "conv1"  # hover names
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Per-layer norms (CSV)" in labels and "Per-block split (CSV)" in labels
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["plain20: first/last block"]) > 0


def test_results_are_cached_per_settings(grad_page, monkeypatch) -> None:
    at = grad_page
    calls = []
    real = ga.twin_profile
    monkeypatch.setattr(ga, "twin_profile", lambda *a, **k: calls.append(a) or real(*a, **k))
    at.radio(key=state.GRAD_METRIC).set_value("grad_weight_ratio").run()
    assert calls == []  # the metric is a view of the cached result
    at.toggle(key=state.GRAD_BN).set_value(False).run()
    assert len(calls) == 1
    at.toggle(key=state.GRAD_BN).set_value(True).run()
    assert len(calls) == 1  # back to a setting already seen: no recomputation
    assert not at.exception


def test_errors_are_sentences_not_tracebacks(grad_page) -> None:
    at = grad_page
    at.radio(key=state.GRAD_LABELS).set_value("true").run()  # random inputs have no true labels
    assert not at.exception
    assert "digits" in at.error[0].value
    at.radio(key=state.GRAD_LABELS).set_value("random").run()
    at.text_input(key=state.GRAD_STAGES).input("3,x,3").run()
    assert not at.exception and "three whole numbers" in at.error[0].value


def test_depth_sweep_runs_on_request(grad_page) -> None:
    at = grad_page
    at.multiselect(key=state.GRAD_SWEEP_DEPTHS).set_value([8, 14]).run()
    assert len(_charts(at)) == 2
    at.button(key=state.GRAD_SWEEP_RUN).click().run()
    assert not at.exception
    sweep = _charts(at)[2]
    assert [t["x"] for t in sweep["data"]] == [[8, 14], [8, 14]]
    assert "Depth sweep (CSV)" in [b.proto.label for b in at.get("download_button")]


def test_training_fills_heatmaps_and_loss_curves(grad_page) -> None:
    at = grad_page
    at.number_input(key=state.GRAD_STEPS).set_value(2).run()
    at.button(key=state.GRAD_TRAIN).click().run()
    assert not at.exception
    names = _trace_names(at)
    assert {"residual", "plain"} in names  # loss curves
    heatmaps = [f for f in _charts(at) if f["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 2 and len(heatmaps[0]["data"][0]["x"]) == 2
    trainer = next(iter(at.session_state[state.GRAD_TRAINERS].values()))
    assert trainer.steps_done == 2
    # Asking for more continues the same run instead of starting over.
    at.number_input(key=state.GRAD_STEPS).set_value(3).run()
    assert any("Stopped at step 2 of 3" in i.value for i in at.info)
    at.button(key=state.GRAD_TRAIN).click().run()
    assert trainer.steps_done == 3 and not at.exception


@pytest.fixture
def saved_run(tmp_path, monkeypatch):
    """A two-step ResNet-8 trained on the shapes and saved, as the Training Lab would."""
    from resviz.runs import save_run
    from resviz.training import TrainConfig, train

    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(tmp_path / "runs"))
    cfg = TrainConfig(
        dataset="shapes",
        models=("resnet8",),
        steps=2,
        widths=(4, 8, 8),
        n_train=64,
        batch_size=16,
        device="cpu",
    )
    (result,) = train(cfg)
    return save_run(result, tmp_path / "runs")


def test_the_sidebars_saved_run_and_its_twin(saved_run, open_page) -> None:
    at = open_page(
        PAGE,
        model_weights="run",
        train_run=str(saved_run),
        **{state.GRAD_MODEL_SOURCE: "sidebar", state.GRAD_BATCH: 8},
    )
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    twin = _charts(at)[0]
    assert {t["name"] for t in twin["data"]} == {"resnet8", "plain8"}
    assert any("held-out shapes images with their true labels" in c.value for c in at.caption)
    assert any("training run" in c.value for c in at.caption)  # the banner names the run
