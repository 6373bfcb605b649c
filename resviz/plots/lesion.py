"""Figures of the lesion study: :class:`resviz.analysis.lesion.LesionStudy` in, ``go.Figure`` out.

No torch here; every number a figure shows is in ``fig.data``, so tests read them without rendering.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import plotly.graph_objects as go

from resviz.plots.gradients import PLAIN_COLOR, RESIDUAL_COLOR

if TYPE_CHECKING:
    from resviz.analysis.lesion import LesionResult, LesionStudy

DOWNSAMPLE_COLOR = "#d62728"


def _pct(values: np.ndarray) -> list[float | None]:
    """Errors as percentages; NaN (not possible) becomes a gap."""
    return [float(v) * 100 if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _layout(fig: go.Figure, title: str, x: str, study: LesionStudy) -> go.Figure:
    fig.add_hline(
        y=study.chance * 100,
        line_dash="dot",
        line_color="gray",
        annotation_text=f"chance ({study.chance:.0%})",
        annotation_position="top left",
    )
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title="error on held-out images (%)",
        yaxis_range=[0, 100],
        hovermode="closest",
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 60, "l": 60, "r": 20, "b": 40},
    )
    return fig


def single_figure(study: LesionStudy) -> go.Figure:
    """Error after deleting each single block: bars per block, both networks, downsampling marked.

    Bars of downsampling blocks have a red outline; a plain block that cannot be removed has no bar
    and a marker saying so. Dashed lines are the intact errors. Whiskers are the 95% interval of the
    error, taken from the paired interval of its change from the intact network on the same images;
    a deletion whose interval includes no change is drawn pale ("no measurable change").
    """
    fig = go.Figure()
    for res, color in ((study.residual, RESIDUAL_COLOR), (study.plain, PLAIN_COLOR)):
        names = [b.name for b in res.blocks]
        down = [b.downsamples for b in res.blocks]
        sig = res.single_significant
        ci = res.single_change_ci
        error_y = _whiskers(res) if ci is not None else None
        words = [
            "" if not np.isfinite(e) else ("changed" if s else "no measurable change")
            for e, s in zip(res.single_error, sig)
        ]
        fig.add_trace(
            go.Bar(
                x=names,
                y=_pct(res.single_error),
                name=f"{res.model} (intact {res.intact_error:.1%}, n = {res.n_images})",
                error_y=error_y,
                marker={
                    "color": color,
                    "opacity": [1.0 if s else 0.45 for s in sig] if ci is not None else 1.0,
                    "line": {"color": [DOWNSAMPLE_COLOR if d else color for d in down], "width": 3},
                },
                customdata=[[b.how, w] for b, w in zip(res.blocks, words)],
                hovertemplate="%{x}: %{y:.1f}% (%{customdata[1]})<br>%{customdata[0]}<extra>"
                + res.model
                + "</extra>",
            )
        )
        fig.add_hline(y=res.intact_error * 100, line_dash="dash", line_color=color, line_width=1)
        impossible = [b.name for b in res.blocks if not b.deletable]
        if impossible:
            fig.add_trace(
                go.Scatter(
                    x=impossible,
                    y=[2.0] * len(impossible),
                    mode="markers",
                    marker={"symbol": "x", "size": 10, "color": color},
                    name=f"{res.model}: cannot be removed (changes the shape)",
                    hoverinfo="name",
                )
            )
    downs = [b.name for b in study.residual.blocks if b.downsamples]
    fig.update_xaxes(
        tickmode="array",
        tickvals=[b.name for b in study.residual.blocks],
        ticktext=[f"<b>{n} ↓</b>" if n in downs else n for n in (b.name for b in study.residual.blocks)],
    )
    fig.update_layout(barmode="group")
    return _layout(
        fig,
        "Error after deleting one block, with 95% intervals (pale: no measurable change; ↓, red "
        "outline: downsamples; dashed: intact)",
        "deleted block",
        study,
    )


def _whiskers(res: LesionResult) -> dict[str, object]:
    """Plotly error bars from the interval of each deletion's change: intact + interval, around the bar."""
    assert res.single_change_ci is not None
    bar = _pct(res.single_error)
    low = _pct(res.intact_error + res.single_change_ci[:, 0])
    high = _pct(res.intact_error + res.single_change_ci[:, 1])

    def gap(a: list[float | None], b: list[float | None]) -> list[float | None]:
        return [None if x is None or y is None else max(0.0, x - y) for x, y in zip(a, b)]

    return {"type": "data", "symmetric": False, "array": gap(high, bar), "arrayminus": gap(bar, low)}


def curve_figure(study: LesionStudy, kind: Literal["delete", "swap"] = "delete") -> go.Figure:
    """Error against the number of deleted blocks (or swapped pairs): mean and spread over draws."""
    fig = go.Figure()
    for res, color in ((study.residual, RESIDUAL_COLOR), (study.plain, PLAIN_COLOR)):
        ks, err = _curve(res, kind)
        mean, lo, hi = draw_stats(err)
        ks_all = [0, *ks.tolist()]
        fig.add_trace(
            go.Scatter(
                x=ks_all + ks_all[::-1],
                y=_pct(np.r_[res.intact_error, hi]) + _pct(np.r_[res.intact_error, lo])[::-1],
                fill="toself",
                fillcolor=color,
                opacity=0.2,
                line={"width": 0},
                hoverinfo="skip",
                name=f"{res.model}: min-max over draws",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=ks_all,
                y=_pct(np.r_[res.intact_error, mean]),
                mode="lines+markers",
                line={"color": color},
                name=f"{res.model}: mean",
                hovertemplate="k = %{x}: %{y:.1f}%<extra>" + res.model + "</extra>",
            )
        )
    what = "deleted blocks" if kind == "delete" else "swapped pairs of blocks (within a stage)"
    title = "Error against the number of " + what + " (k = 0: intact)"
    return _layout(fig, title, f"k, number of {what}", study)


def draw_stats(err: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over draws (axis 1); NaN where no draw was possible."""
    if not err.size:
        return np.array([]), np.array([]), np.array([])
    with warnings.catch_warnings():  # an all-NaN row (k beyond the deletable blocks) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(err, axis=1), np.nanmin(err, axis=1), np.nanmax(err, axis=1)


def _curve(res: LesionResult, kind: str) -> tuple[np.ndarray, np.ndarray]:
    return (res.ks, res.k_error) if kind == "delete" else (res.swap_ks, res.swap_error)
