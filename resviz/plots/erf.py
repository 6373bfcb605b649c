"""Figures for the effective receptive field: results from :mod:`resviz.analysis.erf` in, ``go.Figure`` out.

No torch here. Residual is blue and plain orange, as on every resviz chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from resviz.plots.gradients import PLAIN_COLOR, RESIDUAL_COLOR

if TYPE_CHECKING:
    from resviz.analysis.erf import ErfMap, ErfSweep

DEFAULT_MASS = 0.95
THEORY_LINE = {"color": "white", "width": 2, "dash": "dash"}
MASS_LINE = {"color": "#ff4b4b", "width": 2}


def _square(
    fig: go.Figure, centre: tuple[int, int], side: int, line: dict[str, object], name: str, col: int
) -> None:
    """A square of ``side`` pixels around ``centre`` drawn as a closed line (heatmap coordinates)."""
    half = side / 2
    y0, x0 = centre[0] - half, centre[1] - half
    xs = [x0, x0 + side, x0 + side, x0, x0]
    ys = [y0, y0, y0 + side, y0 + side, y0]
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="lines", line=line, name=name, showlegend=col == 1),
        row=1,
        col=col,
    )


def heatmaps_figure(maps: Sequence[ErfMap], *, mass: float = DEFAULT_MASS) -> go.Figure:
    """The ERF maps side by side, one colour scale each, with the theoretical field (white dashed
    square, clipped to the image) and the square holding ``mass`` of the gradient (solid)."""
    from plotly.subplots import make_subplots

    titles = [f"{m.model}: ERF {m.size(mass)} px, RF {m.theoretical} px" for m in maps]
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=titles, horizontal_spacing=0.08)
    for i, m in enumerate(maps, start=1):
        fig.add_trace(
            go.Heatmap(
                z=m.map.tolist(),
                colorscale="Viridis",
                showscale=False,
                name=m.model,
                hovertemplate="row %{y}, col %{x}<br>share %{z:.2e}<extra>" + m.model + "</extra>",
            ),
            row=1,
            col=i,
        )
        _square(fig, m.centre, m.theoretical, THEORY_LINE, "theoretical receptive field", i)
        _square(fig, m.centre, m.size(mass), MASS_LINE, f"{mass:.0%} of the gradient", i)
        h, w = m.map.shape
        fig.update_xaxes(range=[-0.5, w - 0.5], constrain="domain", row=1, col=i)
        fig.update_yaxes(range=[h - 0.5, -0.5], scaleanchor=f"x{i if i > 1 else ''}", row=1, col=i)
    layer, n = (maps[0].layer, maps[0].inputs) if maps else ("", 0)
    fig.update_layout(
        title=f"Effective receptive field of the centre unit of {layer} (mean |gradient| over {n} inputs)",
        height=460,
        legend={"orientation": "h", "y": -0.12},
        margin={"t": 80, "l": 40, "r": 20, "b": 40},
    )
    return fig


def size_figure(sweep: ErfSweep, *, mass: float = DEFAULT_MASS) -> go.Figure:
    """ERF side against depth, plain and residual, with the theoretical receptive field's side."""
    plain, residual = sweep.sizes(mass)
    fig = go.Figure()
    for label, values, color, dash in (
        ("theoretical receptive field", sweep.theoretical, "gray", "dash"),
        (f"residual ERF ({mass:.0%} of the gradient)", residual, RESIDUAL_COLOR, None),
        (f"plain ERF ({mass:.0%} of the gradient)", plain, PLAIN_COLOR, None),
    ):
        fig.add_trace(
            go.Scatter(
                x=sweep.depths.tolist(),
                y=np.asarray(values, dtype=float).tolist(),
                name=label,
                mode="lines+markers",
                line={"color": color, "dash": dash},
                hovertemplate="depth %{x}<br>%{y} px<extra>" + label + "</extra>",
            )
        )
    return fig.update_layout(
        title="Receptive field of the first stage's centre unit against depth (side, pixels)",
        xaxis_title="depth (layers)",
        yaxis_title="side of the square (pixels)",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 60, "l": 60, "r": 20, "b": 40},
    )
