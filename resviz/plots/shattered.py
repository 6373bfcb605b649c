"""Figures for shattered gradients: results from :mod:`resviz.analysis.shattered` in, ``go.Figure`` out.

No torch here. Residual is blue and plain orange, as on every resviz chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from resviz.plots.gradients import PLAIN_COLOR, RESIDUAL_COLOR

if TYPE_CHECKING:
    from resviz.analysis.shattered import GradientLine, ShatteredSweep


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    return fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 60, "l": 60, "r": 20, "b": 40},
    )


def _color(line: GradientLine) -> str:
    return RESIDUAL_COLOR if line.residual else PLAIN_COLOR


def trace_figure(lines: Sequence[GradientLine], *, x_title: str = "position along the line") -> go.Figure:
    """The gradient along the line, one panel per network (their scales differ by orders of magnitude).

    Args:
        lines: e.g. ``(residual, plain)`` of one depth.
        x_title: what the line's coordinate is (the scalar input, or 0..1 from image a to image b).
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(lines), cols=1, shared_xaxes=True, subplot_titles=[ln.model for ln in lines])
    for i, line in enumerate(lines, start=1):
        fig.add_trace(
            go.Scatter(
                x=line.t.tolist(),
                y=line.trace.tolist(),
                name=line.model,
                mode="lines",
                line={"color": _color(line), "width": 1.5},
            ),
            row=i,
            col=1,
        )
        fig.update_yaxes(title_text="gradient", row=i, col=1, exponentformat="power")
    fig.update_xaxes(title_text=x_title, row=len(lines), col=1)
    out = lines[0].output if lines else ""
    fig.update_layout(
        # Two short lines: in a half-width column one long title was cut off ("...or white n").
        title=(
            f"Gradient of {out} along the line"
            "<br><sup>brown noise (correlated) or white noise (shattered)</sup>"
        ),
        showlegend=False,
        height=220 + 160 * len(lines),
        margin={"t": 90, "l": 60, "r": 20, "b": 40},
    )
    return fig


def acf_figure(lines: Sequence[GradientLine], *, max_lag: int = 64) -> go.Figure:
    """Autocorrelation of the gradient against lag, one line per network; lag 1 marked."""
    fig = go.Figure()
    for line in lines:
        k = min(max_lag, len(line.acf) - 1)
        fig.add_trace(
            go.Scatter(
                x=list(range(k + 1)),
                y=line.acf[: k + 1].tolist(),
                name=f"{line.model} (lag 1: {line.lag1:.2f})",
                mode="lines+markers",
                marker={"size": 4},
                line={"color": _color(line)},
            )
        )
    fig.add_hline(y=0.0, line_dash="dot", line_color="gray")
    fig.add_vline(x=1, line_dash="dot", line_color="gray")
    return _layout(fig, "Autocorrelation of the gradient along the line", "lag (points)", "autocorrelation")


def lag1_figure(sweep: ShatteredSweep) -> go.Figure:
    """Lag-1 autocorrelation against depth, plain and residual on one chart (spread as error bars)."""
    fig = go.Figure()
    for label, mean, std, color in (
        ("residual", sweep.residual_lag1, sweep.residual_lag1_std, RESIDUAL_COLOR),
        ("plain", sweep.plain_lag1, sweep.plain_lag1_std, PLAIN_COLOR),
    ):
        fig.add_trace(
            go.Scatter(
                x=sweep.depths.tolist(),
                y=np.asarray(mean, dtype=float).tolist(),
                error_y={
                    "type": "data",
                    "array": np.asarray(std, dtype=float).tolist(),
                    "visible": bool(np.any(std)),
                },
                name=label,
                mode="lines+markers",
                line={"color": color},
                hovertemplate="depth %{x}<br>lag-1 %{y:.3f}<extra>" + label + "</extra>",
            )
        )
    fig.add_hline(y=0.0, line_dash="dot", line_color="gray")
    fig = _layout(
        fig,
        "Lag-1 autocorrelation of the gradient against depth",
        "depth (hidden layers or blocks)",
        "lag-1 autocorrelation",
    )
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(range=[-0.2, 1.05])
    return fig
