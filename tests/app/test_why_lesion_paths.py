"""AppTest of the Why it works page's lesion and paths tabs: a sentence without data, charts with it."""

from __future__ import annotations

import json

import pytest

PAGE = "pages/why_it_works.py"


def _titles(at) -> list[str]:
    out = []
    for node in at.get("plotly_chart"):
        title = json.loads(node.proto.spec)["layout"].get("title", {})
        out.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return out


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """plain8 and resnet8 trained together for a few steps on 16x16 shapes, saved as runs."""
    from resviz.runs import save_run
    from resviz.training import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        dataset="shapes",
        models=("plain8", "resnet8"),
        steps=3,
        widths=(4, 8, 8),
        n_train=64,
        batch_size=16,
        device="cpu",
    )
    paths = {r.name: save_run(r, root) for r in train(cfg)}
    return root, paths["resnet8"]


def test_random_weights_get_a_sentence_and_paths_still_measure(open_page):
    at = open_page(PAGE, model_name="resnet8", paths_samples=2, paths_batch=4)
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert any("random weights" in w and "demo pair" in w for w in warnings)
    # Only the story's two bundled charts (they do not depend on the sidebar's model): no lesion chart.
    assert [c.key for c in at.get("plotly_chart")] == [
        "why_story_chart_init_chart",
        "why_story_chart_training_chart",
    ]
    at.button(key="paths_run").click().run()
    assert not at.exception and not at.error
    (title,) = [t for t in _titles(at) if "at initialization" not in t and "Through training" not in t]
    assert "collection of paths" in title
    assert any(m.label == "Effective paths, untrained" for m in at.metric)
    labels = [b.label for b in at.get("download_button")]
    assert "Data (CSV)" in labels and "Figure (HTML)" in labels


def test_a_trained_run_is_lesioned_with_its_twin(shapes_run, open_page, monkeypatch):
    root, run = shapes_run
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(root))
    at = open_page(
        PAGE,
        model_weights="run",
        train_run=str(run),
        lesion_images=50,
        lesion_ks=[1, 2],
        lesion_swaps=[1],
        lesion_draws=1,
        paths_samples=2,
        paths_batch=4,
    )
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    # A run of a few steps never left chance: the page says so above the comparisons.
    assert at.warning and all("has not learned anything yet" in w.value for w in at.warning)
    assert any("Cost: about" in c.value for c in at.caption)
    at.button(key="lesion_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = _titles(at)
    assert any(t.startswith("Error after deleting one block") for t in titles)
    assert any("deleted blocks" in t for t in titles) and any("swapped pairs" in t for t in titles)
    metrics = {m.label: m.value for m in at.metric}
    assert "resnet8: intact error" in metrics and "plain8: intact error" in metrics
    assert any("layer2.0 cannot be removed" in c.value for c in at.caption)
    # Kept: a rerun without pressing Run shows the same charts, and the paths compare both profiles.
    at.button(key="paths_run").click().run()
    story = {"why_story_chart_init_chart", "why_story_chart_training_chart"}
    assert not at.exception and len([c for c in at.get("plotly_chart") if c.key not in story]) == 4
    assert {"Effective paths, untrained", "Effective paths, trained"} <= {m.label for m in at.metric}
