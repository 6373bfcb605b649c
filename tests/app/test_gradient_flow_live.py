"""Issue 21, Gradient Flow's Training tab: the charts are drawn while the steps run (not only at
the end), and the progress bar says how long is left."""

from __future__ import annotations

import resviz.plots.gradients as gp
from ui import state

PAGE = "pages/gradient_flow.py"


def test_the_training_charts_are_drawn_as_the_steps_come_in(app_test, monkeypatch):
    at = app_test
    at.session_state[state.GRAD_DEPTH_CIFAR] = 20
    at.session_state[state.GRAD_BATCH] = 4
    at.session_state[state.GRAD_SIZE] = 16
    at.switch_page(PAGE).run()
    drawn: list[int] = []
    bars: list[str] = []
    real_loss = gp.loss_figure
    monkeypatch.setattr(gp, "loss_figure", lambda run: drawn.append(run.steps) or real_loss(run))
    import streamlit.elements.progress as progress

    real_progress = progress.ProgressMixin.progress

    def seen(self, value, text=None):
        bars.append(text or "")
        return real_progress(self, value, text=text)

    monkeypatch.setattr(progress.ProgressMixin, "progress", seen)
    at.number_input(key=state.GRAD_STEPS).set_value(3).run()
    drawn.clear()
    at.button(key=state.GRAD_TRAIN).click().run()
    assert not at.exception, at.exception
    # At least one chart while training (the first step's, then at most one a second), and the last.
    assert drawn[0] < 3 and drawn[-1] == 3 and len(drawn) >= 2, drawn
    assert any("s a step, about" in b and "s left" in b for b in bars), bars
