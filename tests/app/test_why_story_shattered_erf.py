"""AppTest of the "Why it works" page's story, shattered-gradients and receptive-field sections."""

from __future__ import annotations

import json

import pytest

from ui import state
from ui.sections import story

PAGE = "pages/why_it_works.py"
FAST = {state.MODEL_NAME: "resnet8"}


@pytest.fixture(autouse=True)
def _small_story(monkeypatch):
    """The story measures 56 layers by default; 8 layers show the same thing in a fraction of the time."""
    monkeypatch.setenv("RESVIZ_THREADS", "1")
    monkeypatch.setattr(story, "DEPTH", 8)
    monkeypatch.setattr(story, "SWEEP_DEPTHS", (8, 14))
    settings = {**story.GRAD_SETTINGS, state.GRAD_DEPTH_CIFAR: 20, state.GRAD_BATCH: 4, state.GRAD_SIZE: 16}
    monkeypatch.setattr(story, "GRAD_SETTINGS", settings)


def _charts(at) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


def _downloads(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_story_shows_the_bundled_measurement_and_opens_gradient_flow(open_page) -> None:
    from resviz.demo_results import STORY_INIT_KEY, bundled

    at = open_page(PAGE, **FAST)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Why it works"
    init = bundled("story_init", STORY_INIT_KEY).result
    chart = next(c for c in _charts(at) if "at initialization" in c["layout"]["title"]["text"])
    shown = {(t["name"], t["xaxis"]): t["y"] for t in chart["data"]}
    # The first panel is the activation gradient per element: BN on, then off, one value a seed.
    plain = next(m for m in init.models if m.startswith("plain"))
    expected = (
        init.values(plain, True, "activation").tolist() + init.values(plain, False, "activation").tolist()
    )
    assert shown[(plain, "x")] == pytest.approx(expected)
    words = " ".join(md.value for md in at.markdown)
    assert "unlikely to be caused by vanishing gradients" in words and "*explodes* toward the input" in words
    assert "Precomputed" in " ".join(c.value for c in at.caption)
    at.button(key=state.WHY_STORY_OPEN_NOBN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Gradient Flow"
    assert at.session_state[state.GRAD_BN] is False and at.session_state[state.GRAD_DEPTH_CIFAR] == 20
    assert any("grow toward the input rather than vanish" in c.value for c in at.caption)


def test_story_sweep_runs_on_request(open_page) -> None:
    at = open_page(PAGE, **FAST)
    assert not any(c["layout"]["title"]["text"].startswith("BatchNorm on") for c in _charts(at))
    at.button(key=state.WHY_STORY_RUN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    assert any(t.startswith("BatchNorm on") for t in titles) and any(
        t.startswith("BatchNorm off") for t in titles
    )


def test_shattered_toy_sweep_shows_the_plain_net_shattering(open_page) -> None:
    at = open_page(PAGE, **FAST, **{state.SHAT_DEPTHS: [1, 10], state.SHAT_WIDTH: 50, state.SHAT_REPEATS: 1})
    assert not at.exception, [e.value for e in at.exception]
    at.button(key=state.SHAT_RUN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    lag = next(c for c in _charts(at) if "Lag-1" in c["layout"]["title"]["text"])
    series = {t["name"]: t for t in lag["data"] if t.get("name") in ("plain", "residual")}
    assert series["plain"]["x"] == series["residual"]["x"] == [1, 10]
    plain, residual = series["plain"]["y"], series["residual"]["y"]
    # Balduzzi et al.'s finding, on the chart itself: one layer is one and the same net either way;
    # ten layers shatter the plain net's gradient (lag-1 about 0.5-0.6 for seeds 0-3 here) and
    # barely touch the residual one's (about 0.9).
    assert plain[0] == pytest.approx(residual[0]) and plain[0] > 0.95
    assert plain[1] < 0.75 < residual[1] and plain[1] < plain[0]
    labels = _downloads(at)
    assert "Data (CSV)" in labels and "Figure (HTML)" in labels and "Data (npz)" in labels


def test_shattered_line_and_erf_of_the_sidebar_model(open_page) -> None:
    at = open_page(PAGE, **FAST, **{state.SHAT_LINE_POINTS: 64, state.ERF_N: 8, state.ERF_LAYER: "layer1"})
    at.button(key=state.SHAT_LINE_RUN).click().run()
    at.button(key=state.ERF_RUN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert "resnet8: lag-1 autocorrelation" in metrics and "plain8: lag-1 autocorrelation" in metrics
    assert (
        metrics["Theoretical receptive field"] == "7 px"
    )  # layer1 of resnet8: 3x3 stem + one block of two 3x3
    assert "resnet8: ERF (95%)" in metrics
    heat = [c for c in _charts(at) if any(t["type"] == "heatmap" for t in c["data"])]
    assert len(heat) == 1


def test_erf_sweep_against_depth(open_page) -> None:
    at = open_page(PAGE, **FAST, **{state.ERF_SWEEP_DEPTHS: [8, 14]})
    at.button(key=state.ERF_SWEEP_RUN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    size = next(c for c in _charts(at) if "against depth" in c["layout"]["title"]["text"])
    assert size["data"][0]["y"] == [7, 11]


def test_an_unusable_sidebar_model_is_one_sentence_per_section(open_page) -> None:
    at = open_page(PAGE, **FAST, **{state.MODEL_WEIGHTS: "checkpoint"})
    assert not at.exception, [e.value for e in at.exception]
    assert sum("Upload a checkpoint file" in e.value for e in at.error) >= 2


@pytest.mark.demo_default
def test_the_bundled_demo_pair_on_a_line_between_held_out_images(open_page) -> None:
    at = open_page(PAGE, **{state.SHAT_LINE_POINTS: 64})
    at.button(key=state.SHAT_LINE_RUN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert "resnet56: lag-1 autocorrelation" in metrics and "plain56: lag-1 autocorrelation" in metrics
    measured = next(c.value for c in at.caption if c.value.startswith("Measured:"))
    assert "plain56 trained in the same session" in measured and "held-out shapes images" in measured
