"""Issue 21, section 2: one meaning of "plain twin". The twin trained beside a run is the
"plain twin (trained)"; the residual net's own weights with the shortcuts removed are
"shortcuts cut (same weights)". Each page says which one it shows, and offers both where both
make sense."""

from __future__ import annotations

import json

import pytest

from resviz.analysis.pairs import CUT_TWIN, TRAINED_TWIN
from ui import state

SHAPES = ("circle", "ring", "square", "frame", "triangle", "cross")


@pytest.fixture
def pair_runs(tmp_path, monkeypatch):
    """A resnet8 run and the plain8 twin trained in the same session (same group)."""
    from resviz.runs import save_run
    from tests.test_weights import fake_trained

    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(tmp_path / "runs"))  # no other test's runs

    residual = save_run(fake_trained("resnet8", classes=SHAPES, seed=1), group="g-twins")
    save_run(fake_trained("plain8", classes=SHAPES, seed=2), group="g-twins")
    return residual


@pytest.fixture
def lone_run(tmp_path, monkeypatch):
    from resviz.runs import save_run
    from tests.test_weights import fake_trained

    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(tmp_path / "runs"))

    return save_run(fake_trained("resnet8", classes=SHAPES, seed=1), group="g-alone")


def _texts(at) -> str:
    parts = [c.value for c in at.caption] + [m.value for m in at.markdown] + [s.value for s in at.subheader]
    return "\n".join(parts)


def _run(open_page, page, run, **extra):
    at = open_page(page, model_name="resnet8", model_weights="run", train_run=str(run), **extra)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_feature_maps_offers_both_and_names_the_one_it_draws(open_page, pair_runs):
    at = _run(open_page, "pages/feature_maps.py", pair_runs)
    radio = at.radio(key=state.FEAT_TWIN)
    assert radio.options == [CUT_TWIN, TRAINED_TWIN]  # AppTest gives the labels people see
    assert any(CUT_TWIN in s.value for s in at.subheader)
    depth = [json.loads(n.proto.spec) for n in at.get("plotly_chart")][-1]
    assert {t["name"] for t in depth["data"]} == {"with shortcuts", CUT_TWIN}
    radio.set_value("trained").run()
    assert not at.exception and not at.error
    assert any(TRAINED_TWIN in s.value for s in at.subheader)
    assert any("trained in the same session" in c.value for c in at.caption)
    depth = [json.loads(n.proto.spec) for n in at.get("plotly_chart")][-1]
    assert {t["name"] for t in depth["data"]} == {"with shortcuts", TRAINED_TWIN}


def test_feature_maps_without_a_trained_twin_says_shortcuts_cut(open_page, lone_run):
    at = _run(open_page, "pages/feature_maps.py", lone_run)
    assert not at.get("radio") or state.FEAT_TWIN not in [r.key for r in at.radio]
    assert any(CUT_TWIN in s.value for s in at.subheader)
    assert TRAINED_TWIN not in _texts(at)


def test_attribution_grid_lets_the_user_pick_the_counterpart(open_page, pair_runs):
    at = _run(open_page, "pages/attribution.py", pair_runs, **{state.ATTR_GRID: True})
    mode = at.radio(key=state.ATTR_GRID_MODE)
    assert mode.options == ["methods", f"vs {CUT_TWIN}", f"vs {TRAINED_TWIN}"]
    for value, name in (("twin", CUT_TWIN), ("trained", TRAINED_TWIN)):
        mode.set_value(value).run()
        assert not at.exception and not at.error, value
        grids = [json.loads(n.proto.spec) for n in at.get("plotly_chart")]
        grid = next(g for g in grids if g.get("layout", {}).get("meta", {}).get("kind") == "attribution_grid")
        titles = {a["text"] for a in grid["layout"]["annotations"]}
        assert {"with shortcuts", name} <= titles, value
        assert any(f"**{name}**" in c.value for c in at.caption), value
        mode = at.radio(key=state.ATTR_GRID_MODE)


def test_attribution_grid_without_a_trained_twin_offers_only_the_cut(open_page, lone_run):
    at = _run(open_page, "pages/attribution.py", lone_run, **{state.ATTR_GRID: True})
    assert at.radio(key=state.ATTR_GRID_MODE).options == ["methods", f"vs {CUT_TWIN}"]


def test_gradient_flow_and_faithfulness_name_their_counterpart(open_page, pair_runs):
    at = _run(open_page, "pages/gradient_flow.py", pair_runs, **{state.GRAD_MODEL_SOURCE: "sidebar"})
    said = _texts(at)
    assert f"**{TRAINED_TWIN}**" in said and f"plain8, its {TRAINED_TWIN}" in said
    # The sidebar's model brings its own images, loss and size: those controls are greyed out.
    assert at.selectbox(key=state.GRAD_SOURCE).disabled
    assert at.radio(key=state.GRAD_LABELS).disabled
    assert at.selectbox(key=state.GRAD_SIZE).disabled
    assert not at.selectbox(key=state.GRAD_BATCH).disabled
    at = _run(open_page, "pages/attribution.py", pair_runs)
    assert any(f"its **{TRAINED_TWIN}**" in c.value for c in at.caption)


def test_gradient_flow_without_a_trained_twin_says_shortcuts_cut(open_page, lone_run):
    at = _run(open_page, "pages/gradient_flow.py", lone_run, **{state.GRAD_MODEL_SOURCE: "sidebar"})
    said = _texts(at)
    assert f"**{CUT_TWIN}**" in said and TRAINED_TWIN not in said.replace("plain twin (trained) when", "")
