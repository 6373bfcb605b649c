"""AppTest of the loss-landscape section of "Why it works": messages, a run, its cache and downloads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ui import state

PAGE = "pages/why_it_works.py"


@pytest.fixture
def tiny_runs() -> Path:
    """plain8 and resnet8 trained together for 2 steps on digits, saved where the app looks."""
    from resviz.runs import save_run
    from resviz.training import TrainConfig, train

    cfg = TrainConfig(models=("plain8", "resnet8"), dataset="digits", steps=2, eval_every=2, n_train=64,
                      batch_size=16, widths=(4, 8, 8), device="cpu")  # fmt: skip
    results = train(cfg)
    root = Path(os.environ["RESVIZ_RUNS_DIR"])
    paths = {r.name: save_run(r, root) for r in results}
    return paths["resnet8"]


def _charts(at) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


def test_random_weights_get_a_message_and_no_run_button_does_anything(open_page):
    at = open_page(PAGE, model_name="resnet_tiny")
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(i.value for i in at.info)
    assert "random weights" in text and "Saved training run" in text
    assert not at.get("plotly_chart") or all("Loss" not in str(c) for c in _charts(at))


def test_a_run_shows_charts_downloads_and_is_kept(open_page, tiny_runs):
    at = open_page(PAGE, **{state.MODEL_WEIGHTS: "run", state.TRAIN_RUN: str(tiny_runs),
                            state.LAND_GRID: 5, state.LAND_N: 20})  # fmt: skip
    assert not at.exception, [e.value for e in at.exception]
    assert any("Press **Run**" in i.value for i in at.info)
    assert any("forward passes" in c.value for c in at.caption)  # the cost, said before running
    at.button(key=state.LAND_RUN).click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    assert any("one random direction" in t for t in titles) and any("same colour scale" in t for t in titles)
    contours = [t for c in _charts(at) for t in c["data"] if t["type"] == "contour"]
    assert [t["name"] for t in contours] == ["resnet8", "plain8"]
    assert contours[0]["zmin"] == contours[1]["zmin"] and contours[0]["zmax"] == contours[1]["zmax"]
    keys = {b.proto.id for b in at.get("download_button")}
    assert len(keys) >= 7  # npz, 2 CSV, PNG, an HTML per chart
    results = at.session_state[state.LAND_RESULTS]
    assert len(results) == 1 and next(iter(results.values())).complete
    # Back on the page (another rerun): from the cache, no new computation.
    at.run()
    assert len(_charts(at)) == len(titles) and len(at.session_state[state.LAND_RESULTS]) == 1
