"""A Stop on a landscape or faithfulness run shows the partial result the library returns.

A click on Stop reruns the script; Streamlit interrupts the running one by raising from its next
``st`` call. :class:`ui.section_kit.StopOnRerun` holds that interruption until the analysis has
returned what it measured, then raises it, so the rerun still happens and the points are kept.
"""

from __future__ import annotations

import pytest
import torch
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException

from ui.section_kit import StopOnRerun


def test_the_interruption_is_held_then_raised_once_the_result_is_kept():
    calls = []

    def bar(done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise RerunException(None)  # what Streamlit raises from st.progress after a click

    stop = StopOnRerun()
    update = stop.progress(bar)
    update(1, 5)
    assert not stop.should_stop()
    update(2, 5)  # held, not raised: the analysis goes on to return its partial result
    assert stop.should_stop()
    update(3, 5)  # no more st calls once interrupted
    assert calls == [1, 2]
    with pytest.raises(RerunException):
        stop.resume()


def test_a_stopped_landscape_returns_partial_points_the_page_can_draw():
    from resviz.analysis.landscape import shape_summary, twin_landscape
    from resviz.analysis.landscape_eval import EvalOptions
    from resviz.models import create_model
    from resviz.plots import landscape as lp

    a, b = create_model("resnet8", num_classes=3, seed=0), create_model("plain8", num_classes=3, seed=0)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    stop = StopOnRerun()
    seen = []

    def bar(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise RerunException(None)

    result = twin_landscape(
        a,
        b,
        x,
        y,
        grid=5,
        span=0.5,
        options=EvalOptions(progress=stop.progress(bar), should_stop=stop.should_stop),
    )
    assert stop.should_stop() and not result.residual.complete
    assert torch.isnan(torch.as_tensor(result.plain.loss)).all()  # not reached: blank, not zero
    shape_summary(result.residual)
    for fig in (lp.contour_figure([result.residual, result.plain]), lp.slice_figure(result.slices)):
        assert fig.data  # the page's charts draw from a partial result
