"""Issue 21, Training Lab texts: the time estimate follows the steps and widths, and an empty
curve chart's y axis fits the errors to come (0-100 %), not plotly's empty 0-4."""

from __future__ import annotations

import pytest

PAGE = "pages/training_lab.py"


@pytest.fixture
def lab(tmp_path, monkeypatch, app_test):
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(tmp_path / "runs"))
    return app_test.switch_page(PAGE).run()


def _estimate(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("These settings ("))


def test_the_time_estimate_follows_steps_and_widths(lab):
    """The CPU default's label states no time that a change would make false; the estimate below
    the settings follows them."""
    assert "minutes" not in lab.selectbox(key="train_preset").options[0]
    assert "300 steps, 4 networks): about 1-2 minutes" in _estimate(lab)
    lab.number_input(key="train_steps").set_value(600).run()
    assert "600 steps, 4 networks): about 2-4 minutes" in _estimate(lab)
    lab.selectbox(key="train_widths").set_value("tiny").run()  # a sixteenth of the work
    assert "about 8-15 seconds" in _estimate(lab), _estimate(lab)
    assert not lab.exception


def test_an_empty_curve_chart_fits_the_errors_to_come():
    import numpy as np

    from resviz.plots.training import training_curves_figure
    from resviz.training import TrainingCurves

    arrays = ("steps", "loss", "batch_error", "seconds", "eval_steps", "train_error", "test_error")
    curves = TrainingCurves("resnet20", False, 20, *(np.zeros(0) for _ in arrays))
    fig = training_curves_figure([curves], "train_error", total_steps=300)
    assert list(fig.layout.yaxis.range) == [0, 100]
    fig = training_curves_figure([curves], "loss", total_steps=300)
    assert fig.layout.yaxis.range is None  # the loss has no natural frame
