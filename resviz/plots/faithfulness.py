"""Figures of a faithfulness evaluation: methods x metrics for a net and its twin, and the curves.

Builders take a :class:`resviz.analysis.faithfulness_report.FaithfulnessReport` (numpy arrays) and
return a ``go.Figure``; no torch here. The first network (the residual one) is drawn solid and in
full colour, the second (its plain twin) dashed or hatched, one colour per method throughout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resviz.analysis.faithfulness_report import METRICS

if TYPE_CHECKING:
    from resviz.analysis.faithfulness_report import FaithfulnessReport

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
REFERENCE_COLOR = "#7f7f7f"  # the random map: grey, whatever its place in the list
_DASH = ("solid", "dash", "dot", "dashdot")
_PATTERN = ("", "/", "x", ".")
CURVES: dict[str, tuple[str, str]] = {  # panel -> (title, x axis)
    "deletion": ("Deletion (lower is better)", "share of pixels deleted"),
    "insertion": ("Insertion (higher is better)", "share of pixels inserted"),
    "road_morf": ("ROAD, most relevant first (lower)", "threshold percentile"),
    "road_lerf": ("ROAD, least relevant first (higher)", "threshold percentile"),
}


def method_colors(methods: tuple[str, ...]) -> dict[str, str]:
    """One colour per method, grey for the random reference."""
    out, i = {}, 0
    for m in methods:
        if m == "random":
            out[m] = REFERENCE_COLOR
        else:
            out[m], i = _PALETTE[i % len(_PALETTE)], i + 1
    return out


def metrics_figure(report: FaithfulnessReport) -> go.Figure:
    """One panel per metric: a bar per method, grouped by network (the twin hatched).

    Each panel's title says whether higher or lower is better; hover shows the value and the
    number of images it averages.
    """
    keys = report.metrics
    table = report.table()
    colors = method_colors(report.methods)
    titles = [
        f"{METRICS[k].label} ({'higher' if METRICS[k].higher_is_better else 'lower'} is better)" for k in keys
    ]
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.18, horizontal_spacing=0.07
    )
    for k, key in enumerate(keys):
        r, c = divmod(k, cols)
        for b, method in enumerate(report.methods):
            fig.add_trace(
                go.Bar(
                    x=list(report.nets),
                    y=table[:, b, k],
                    name=method,
                    legendgroup=method,
                    showlegend=k == 0,
                    marker={
                        "color": colors[method],
                        "pattern": {"shape": [_PATTERN[a % 4] for a in range(len(report.nets))]},
                    },
                    hovertemplate=f"%{{x}}, {method}: %{{y:.4f}} ({METRICS[key].label}, "
                    f"{report.n_images} images)<extra></extra>",
                ),
                row=r + 1,
                col=c + 1,
            )
    source = report.source or f"{report.n_images} images"
    fig.update_layout(
        barmode="group",
        title=f"Faithfulness of each method on {' and '.join(report.nets)} ({source})",
        height=300 * rows + 80,
        margin={"l": 50, "r": 20, "t": 90, "b": 40},
        legend_title_text="method",
    )
    return fig


def curves_figure(report: FaithfulnessReport) -> go.Figure:
    """Mean deletion and insertion curves and ROAD per threshold: a line per method and network.

    The first network is drawn solid, the second dashed; the probability is of each image's target.
    """
    colors = method_colors(report.methods)
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for t, _ in CURVES.values()], vertical_spacing=0.16)
    series = {
        "deletion": (report.fractions, report.deletion),
        "insertion": (report.fractions, report.insertion),
        "road_morf": (report.percentiles, report.road_morf),
        "road_lerf": (report.percentiles, report.road_lerf),
    }
    for k, (panel, (x, values)) in enumerate(series.items()):
        r, c = divmod(k, 2)
        with np.errstate(invalid="ignore"):
            mean = _mean(values)  # (A, M, S)
        for a, net in enumerate(report.nets):
            for b, method in enumerate(report.methods):
                if np.isnan(mean[a, b]).all():
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=mean[a, b],
                        mode="lines+markers",
                        name=f"{net}: {method}",
                        legendgroup=f"{net}: {method}",
                        showlegend=k == 0,
                        line={"color": colors[method], "dash": _DASH[a % len(_DASH)]},
                        marker={"size": 4},
                        hovertemplate=f"{net}, {method}: %{{y:.3f}} at %{{x}}<extra></extra>",
                    ),
                    row=r + 1,
                    col=c + 1,
                )
        fig.update_xaxes(title_text=CURVES[panel][1], row=r + 1, col=c + 1)
        ytitle = "target probability" if k < 2 else "probability change"
        fig.update_yaxes(title_text=ytitle, row=r + 1, col=c + 1)
    nets = " solid, ".join(report.nets) + " dashed" if len(report.nets) > 1 else report.nets[0]
    fig.update_layout(
        title=f"Curves, mean over {report.n_images} images ({nets})",
        height=720,
        margin={"l": 60, "r": 20, "t": 90, "b": 50},
    )
    return fig


def _mean(values: np.ndarray) -> np.ndarray:
    """Mean over the image axis (the third of four) that leaves rows not reached as NaN, quietly."""
    count = (~np.isnan(values)).sum(2)
    return np.where(count > 0, np.nansum(values, 2) / np.maximum(count, 1), np.nan)
