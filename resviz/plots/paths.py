"""Figures of the paths analysis: :class:`resviz.analysis.paths.PathStudy` in, ``go.Figure`` out.

No torch here; every number a figure shows is in ``fig.data``, so tests read them without rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resviz.plots.gradients import RESIDUAL_COLOR

if TYPE_CHECKING:
    from resviz.analysis.paths import PathProfile, PathStudy

COLORS = {"trained": RESIDUAL_COLOR, "untrained": "#9467bd"}  # not orange: that is the plain twin elsewhere


def _profiles(study: PathStudy) -> list[PathProfile]:
    return [p for p in (study.untrained, study.trained) if p is not None]


def _positive(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) and v > 0 else None for v in np.asarray(values, dtype=float)]


def paths_figure(study: PathStudy) -> go.Figure:
    """Three panels over path length: number of paths, gradient per path (log), and their product.

    The effective range (the shortest range of lengths carrying ``coverage`` of the product) is
    shaded in the product panel for each profile.
    """
    first = study.untrained
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            f"paths of each length (n = {first.n}: 2^{first.n} paths)",
            "gradient magnitude of one path",
            "total gradient of each length",
        ),
    )
    k = first.lengths.tolist()
    fig.add_trace(
        go.Bar(x=k, y=first.counts.tolist(), name="number of paths C(n, k)", marker_color="#7f7f7f"),
        row=1,
        col=1,
    )
    for prof in _profiles(study):
        color = COLORS[prof.label]
        fig.add_trace(
            go.Scatter(
                x=k,
                y=_positive(prof.grad),
                error_y={"type": "data", "array": prof.grad_std.tolist(), "visible": True},
                mode="lines+markers",
                line={"color": color},
                name=f"{prof.model} {prof.label}: gradient per path",
            ),
            row=1,
            col=2,
        )
        share = prof.total / prof.total.sum() if prof.total.sum() > 0 else prof.total
        lo, hi = prof.effective
        fig.add_trace(
            go.Scatter(
                x=k,
                y=share.tolist(),
                mode="lines+markers",
                line={"color": color},
                name=f"{prof.model} {prof.label}: effective paths {lo}-{hi} ({prof.coverage:.0%})",
            ),
            row=1,
            col=3,
        )
        fig.add_vrect(x0=lo - 0.5, x1=hi + 0.5, fillcolor=color, opacity=0.12, line_width=0, row=1, col=3)
    fig.update_yaxes(type="log", exponentformat="power", row=1, col=2)
    fig.update_yaxes(title_text="share of the total gradient", row=1, col=3)
    fig.update_xaxes(title_text="path length k (residual branches on the path)")
    fig.update_layout(
        title="A ResNet as a collection of paths: short paths carry the gradient",
        legend={"orientation": "h", "y": -0.3},
        margin={"t": 80, "l": 60, "r": 20, "b": 40},
        height=430,
    )
    return fig
