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


def _share(prof: PathProfile) -> np.ndarray:
    return prof.total / prof.total.sum() if prof.total.sum() > 0 else prof.total


def _log_safe_minus(mean: np.ndarray, std: np.ndarray) -> list[float]:
    """The lower error bar on a log axis: the std, but never below a tenth of the mean."""
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    return np.minimum(std, 0.9 * np.maximum(mean, 0.0)).tolist()


def paths_figure(study: PathStudy) -> go.Figure:
    """Three panels over path length: number of paths, gradient per path (log), and their product.

    The effective range (the shortest range of lengths carrying ``coverage`` of the product) is
    drawn above the product panel as one bar per profile, each in its colour and labelled, so that
    two ranges never read as one band. The gradient panel's error bars are one standard deviation
    over the sampled paths; on its log axis the lower bar stops at a tenth of the mean where the
    spread is larger than the mean (it would reach zero or below, off the axis).
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
    profiles = _profiles(study)
    top = max((float(np.nanmax(_share(p))) for p in profiles), default=1.0)
    for i, prof in enumerate(profiles):
        color = COLORS[prof.label]
        fig.add_trace(
            go.Scatter(
                x=k,
                y=_positive(prof.grad),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": prof.grad_std.tolist(),
                    "arrayminus": _log_safe_minus(prof.grad, prof.grad_std),
                    "visible": True,
                },
                mode="lines+markers",
                line={"color": color},
                name=f"{prof.model} {prof.label}: gradient per path",
            ),
            row=1,
            col=2,
        )
        share = _share(prof)
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
        y = top * (1.1 + 0.1 * i)  # one bar per profile, stacked above the curves
        fig.add_trace(
            go.Scatter(
                x=[lo - 0.4, hi + 0.4],
                y=[y, y],
                mode="lines+text",
                line={"color": color, "width": 6},
                text=["", f"{prof.label}: {lo}-{hi}"],
                textposition="middle right",
                textfont={"color": color},
                cliponaxis=False,
                showlegend=False,
                hovertemplate=f"{prof.label}: lengths {lo}-{hi} carry {prof.coverage:.0%}<extra></extra>",
            ),
            row=1,
            col=3,
        )
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
