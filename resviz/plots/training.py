"""Figures of the training lab: training curves as in the paper's Fig. 1 and Fig. 6.

Residual networks are drawn solid and plain networks dashed, one colour per depth, so a
plain/residual pair of the same depth shares its colour. Builders take
:class:`resviz.training.TrainingCurves` (numpy arrays) and return a ``go.Figure``; no torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from resviz.text import plot_text

if TYPE_CHECKING:
    from resviz.demo import SeedModel
    from resviz.training import TrainingCurves

METRICS: dict[str, str] = {
    "train_error": "training error (%)",
    "batch_error": "mini-batch training error (%, smoothed)",
    "test_error": "held-out error (%)",
    "loss": "training loss (smoothed)",
}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is so far)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def depth_colors(depths: Sequence[int]) -> dict[int, str]:
    return {d: _PALETTE[i % len(_PALETTE)] for i, d in enumerate(sorted(set(depths)))}


def training_curves_figure(
    curves: Mapping[str, TrainingCurves] | Sequence[TrainingCurves],
    metric: str = "train_error",
    *,
    total_steps: int | None = None,
    title: str | None = None,
    by_name: bool = False,
) -> go.Figure:
    """One line per model: solid residual, dashed plain, coloured by depth.

    Args:
        curves: per-model curves (live snapshots work: the arrays may be short or empty).
        metric: a key of :data:`METRICS`.
        total_steps: fixes the x range, so live curves grow into a steady frame.
        by_name: label lines by the curves' names (saved runs overlaid), not by depth alone.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, not {metric!r}")
    items = list(curves.values()) if isinstance(curves, Mapping) else list(curves)
    colors = depth_colors([c.depth for c in items])
    fig = go.Figure()
    for c in sorted(items, key=lambda c: (c.plain, c.depth)):
        if metric in ("train_error", "test_error"):
            x, y = c.eval_steps, 100 * np.asarray(getattr(c, metric))
        else:
            raw = np.asarray(getattr(c, metric))
            y = smooth(raw, max(1, len(raw) // 25)) * (100 if metric == "batch_error" else 1)
            x = c.steps
        # A run's name carries its user-given title: plotly would render its <a> tags as links.
        label = plot_text(c.name) if by_name else f"{'plain' if c.plain else 'ResNet'}-{c.depth}"
        fig.add_trace(
            go.Scatter(
                x=np.asarray(x).tolist(),
                y=np.asarray(y).tolist(),
                mode="lines",
                name=label,
                line={"color": colors[c.depth], "dash": "dash" if c.plain else "solid", "width": 2.5},
                hovertemplate=f"{label}<br>step %{{x}}<br>%{{y:.2f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or f"{METRICS[metric]}: dashed = plain, solid = residual",
        xaxis_title="step",
        yaxis_title=METRICS[metric],
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        height=420,
        uirevision="training",  # keep the user's zoom while live updates come in
    )
    if total_steps:
        fig.update_xaxes(range=[0, total_steps])
    if metric != "loss":
        fig.update_yaxes(rangemode="tozero")
        if not any(len(t.y) for t in fig.data):  # no point yet: a frame errors can grow into (0-100%),
            fig.update_yaxes(range=[0, 100])  # not plotly's empty 0-4 while errors start near 90%
    return fig


def final_errors_figure(curves: Mapping[str, TrainingCurves] | Sequence[TrainingCurves]) -> go.Figure:
    """Final training error per model as bars (plain hatched), the degradation at a glance."""
    items = list(curves.values()) if isinstance(curves, Mapping) else list(curves)
    items = sorted(items, key=lambda c: (c.plain, c.depth))
    colors = depth_colors([c.depth for c in items])
    fig = go.Figure(
        go.Bar(
            x=[f"{'plain' if c.plain else 'ResNet'}-{c.depth}" for c in items],
            y=[100 * c.final_train_error for c in items],
            marker={
                "color": [colors[c.depth] for c in items],
                "pattern": {"shape": ["/" if c.plain else "" for c in items]},
            },
            hovertemplate="%{x}: %{y:.2f}%<extra></extra>",
        )
    )
    fig.update_layout(
        title="final training error (ours)",
        xaxis_type="category",
        yaxis_title="training error (%)",
        height=320,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return fig


def pointing_game_figure(scores: Mapping[str, float]) -> go.Figure:
    """Grad-CAM pointing-game hit rate per model (percent of held-out images)."""
    names = list(scores)
    fig = go.Figure(
        go.Bar(x=names, y=[100 * scores[n] for n in names], hovertemplate="%{x}: %{y:.1f}%<extra></extra>")
    )
    fig.update_layout(
        title="Grad-CAM pointing game: peak inside the object",
        xaxis_type="category",  # run names, even one that reads as a number
        yaxis_title="hits (%)",
        yaxis_range=[0, 100],
        height=320,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return fig


def paper_reference_rows(reference: Mapping[str, float]) -> list[dict[str, object]]:
    """Rows of the paper's CIFAR-10 test errors; the column says whose they are."""
    return [
        {"model": name.replace("resnet", "ResNet-"), "paper's test error %": err}
        for name, err in reference.items()
    ]


def seed_band_figure(seeds: Mapping[int, Mapping[str, SeedModel]], metric: str = "train_error") -> go.Figure:
    """The demo group over seeds: per model, the median curve and a band from the lowest to the
    highest seed (``metric``: ``train_error`` or ``test_error``); dashed = plain, solid = residual."""
    if metric not in ("train_error", "test_error"):
        raise ValueError(f"metric must be train_error or test_error, not {metric!r}")
    names = sorted(
        {n for models in seeds.values() for n in models}, key=lambda n: (n.startswith("resnet"), n)
    )
    depths = {n: int("".join(ch for ch in n if ch.isdigit()) or 0) for n in names}
    colors = depth_colors(list(depths.values()))
    fig = go.Figure()
    for name in names:
        runs = [models[name] for _, models in sorted(seeds.items()) if name in models]
        steps = np.asarray(runs[0].eval_steps)
        curves = np.array(
            [getattr(r, "train_curve" if metric == "train_error" else "test_curve") for r in runs]
        )
        lo, mid, hi = (100 * np.percentile(curves, q, axis=0) for q in (0, 50, 100))
        plain = name.startswith("plain")
        label = f"{'plain' if plain else 'ResNet'}-{depths[name]}"
        color = colors[depths[name]]
        fig.add_trace(
            go.Scatter(
                x=np.r_[steps, steps[::-1]].tolist(),
                y=np.r_[hi, lo[::-1]].tolist(),
                fill="toself",
                fillcolor=color,
                opacity=0.18,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=label,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=steps.tolist(),
                y=mid.tolist(),
                mode="lines+markers",
                name=f"{label} (median of {len(runs)} seeds; band: lowest to highest)",
                legendgroup=label,
                line={"color": color, "dash": "dash" if plain else "solid", "width": 2.5},
                hovertemplate=f"{label}<br>step %{{x}}<br>%{{y:.1f}}%<extra></extra>",
            )
        )
    what = "training error" if metric == "train_error" else "held-out error"
    fig.update_layout(
        title=f"The bundled demo group, {what} over {len(seeds)} seeds: dashed = plain, solid = residual",
        xaxis_title="step",
        yaxis_title=f"{what} (%)",
        yaxis_range=[0, 100],
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        height=440,
    )
    return fig
