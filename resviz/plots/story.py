"""Figures of the story section: :mod:`resviz.analysis.story` results in, ``go.Figure`` out (no torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resviz.plots.gradients import PLAIN_COLOR, RESIDUAL_COLOR

if TYPE_CHECKING:
    from resviz.analysis.story import StoryAtInit, StoryThroughTraining

SHORT = {
    "activation": "activation gradient<br>per element",
    "weight": "weight gradient ||dW||",
    "relative": "relative update ||dW|| / ||W||",
}


def _color(model: str) -> str:
    return PLAIN_COLOR if model.startswith("plain") else RESIDUAL_COLOR


def init_figure(story: StoryAtInit) -> go.Figure:
    """One panel per measure: each configuration's first/last ratio, one marker per seed, log axis.

    Above the dotted line at 1 the gradient is larger at the first layer than at the last (it grows
    toward the input); below it, smaller (it shrinks).
    """
    from resviz.analysis.story import MEASURES

    fig = make_subplots(rows=1, cols=len(MEASURES), subplot_titles=[SHORT[m] for m in MEASURES])
    for col, measure in enumerate(MEASURES, start=1):
        for model in story.models:
            xs, ys = [], []
            for bn in (True, False):
                values = story.values(model, bn, measure)
                xs += [f"BN {'on' if bn else 'off'}"] * len(values)
                ys += values.tolist()
            fig.add_trace(
                go.Box(
                    x=xs,
                    y=ys,
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    boxpoints="all",
                    pointpos=0,
                    marker={"color": _color(model), "size": 7},
                    line={"color": _color(model), "width": 1},
                    fillcolor="rgba(0,0,0,0)",
                    hovertemplate="%{x}: %{y:.3g}<extra>" + model + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_hline(y=1, line_dash="dot", line_color="gray", row=1, col=col)
        fig.update_yaxes(
            type="log", row=1, col=col, title_text="first / last (log scale)" if col == 1 else None
        )
    fig.update_layout(
        boxmode="group",
        title=f"{story.depth}-layer twins at initialization: first layer over last (one dot a seed)",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 110, "l": 60, "r": 20, "b": 40},
        height=380,
    )
    return fig


def training_figure(story: StoryThroughTraining) -> go.Figure:
    """One panel per measure: the first/last ratio against the training step, per network."""
    from resviz.analysis.story import MEASURES

    fig = make_subplots(rows=1, cols=len(MEASURES), subplot_titles=[SHORT[m] for m in MEASURES])
    for col, measure in enumerate(MEASURES, start=1):
        for model in story.models:
            steps, values = story.curve(model, measure)
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=values,
                    mode="lines+markers",
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    line={"color": _color(model)},
                    hovertemplate="step %{x}: %{y:.3g}<extra>" + model + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_hline(y=1, line_dash="dot", line_color="gray", row=1, col=col)
        fig.update_yaxes(
            type="log", row=1, col=col, title_text="first / last (log scale)" if col == 1 else None
        )
        fig.update_xaxes(title_text="training step", row=1, col=col)
    fig.update_layout(
        title="Through training: the bundled demo's weights at the steps its run kept",
        legend={"orientation": "h", "y": -0.3},
        margin={"t": 110, "l": 60, "r": 20, "b": 40},
        height=380,
    )
    return fig
