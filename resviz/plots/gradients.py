"""Figures for the gradient-flow analysis: results from :mod:`resviz.analysis.gradients` in,
``go.Figure`` out. No torch here; every figure puts its numbers in ``fig.data`` so tests can read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import plotly.graph_objects as go

if TYPE_CHECKING:
    from resviz.analysis.depth_sweep import DepthSweep
    from resviz.analysis.gradients import TwinProfile
    from resviz.analysis.twin_training import TrainingRun

RESIDUAL_COLOR = "#1f77b4"
PLAIN_COLOR = "#ff7f0e"
Metric = Literal["grad_norm", "grad_weight_ratio"]
METRIC_LABELS: dict[str, str] = {
    "grad_norm": "‖∂L/∂W‖ (weight-gradient norm)",
    "grad_weight_ratio": "‖∂L/∂W‖ / ‖W‖ (gradient-to-weight ratio)",
}


def _finite(values: np.ndarray) -> list[float | None]:
    """Values for a log axis: NaN, infinities and non-positive numbers become gaps (None)."""
    return [float(v) if np.isfinite(v) and v > 0 else None for v in np.asarray(values, dtype=float)]


def _layout(fig: go.Figure, title: str, x: str, y: str, *, log_y: bool = True) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        hovermode="closest",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 60, "l": 60, "r": 20, "b": 40},
    )
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    return fig


def twin_figure(pair: TwinProfile, metric: Metric = "grad_norm") -> go.Figure:
    """Per-layer gradient norm vs depth, log scale, residual and plain twin overlaid.

    Main-path layers are lines; the residual net's shortcut projections (ImageNet-style nets only)
    are separate markers at the depth of the block they feed. Hovering shows the layer's name.
    """
    fig = go.Figure()
    for prof, color in ((pair.residual, RESIDUAL_COLOR), (pair.plain, PLAIN_COLOR)):
        values = getattr(prof, metric)
        names = np.array(prof.layer_names)
        for side, mask in (("", ~prof.layer_shortcut), (" shortcut projections", prof.layer_shortcut)):
            if not mask.any():
                continue
            fig.add_trace(
                go.Scatter(
                    x=prof.layer_depth[mask].tolist(),
                    y=_finite(values[mask]),
                    customdata=names[mask].tolist(),
                    name=f"{prof.model}{side}",
                    mode="markers" if side else "lines+markers",
                    marker={
                        "color": color,
                        "size": 9 if side else 5,
                        "symbol": "diamond" if side else "circle",
                    },
                    line={"color": color},
                    hovertemplate="%{customdata}<br>depth %{x}<br>%{y:.3e}<extra>" + prof.model + "</extra>",
                )
            )
    return _layout(
        fig,
        f"{METRIC_LABELS[metric].split(' (')[0]} per layer {pair.when} "
        f"(loss: {pair.residual.model} {pair.residual.loss:.3g}, {pair.plain.model} {pair.plain.loss:.3g})",
        "depth (layer, from input to classifier)",
        METRIC_LABELS[metric],
    )


def split_figure(pair: TwinProfile) -> go.Figure:
    """Per block: how much of the gradient reaching its input came through the shortcut and how much
    through the residual branch (norms, log scale); the plain twin has only its branch."""
    res, plain = pair.residual, pair.plain
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=list(res.block_names),
            y=_finite(res.block_shortcut_grad),
            name=f"{res.model}: via shortcut",
            marker_color=RESIDUAL_COLOR,
            customdata=np.round(res.shortcut_share * 100, 1).tolist(),
            hovertemplate="%{x}<br>via shortcut %{y:.3e}<br>%{customdata}% of the two<extra></extra>",
        )
    )
    fig.add_trace(
        go.Bar(
            x=list(res.block_names),
            y=_finite(res.block_branch_grad),
            name=f"{res.model}: via branch",
            marker_color="#aec7e8",
            hovertemplate="%{x}<br>via branch %{y:.3e}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=list(plain.block_names),
            y=_finite(plain.block_branch_grad),
            name=f"{plain.model}: via its only path",
            mode="lines+markers",
            line={"color": PLAIN_COLOR},
            hovertemplate="%{x}<br>%{y:.3e}<extra>" + plain.model + "</extra>",
        )
    )
    fig.update_layout(barmode="group")
    return _layout(
        fig, "Gradient reaching each block's input, by path", "block", "‖∂L/∂(block input)‖ through the path"
    )


def sweep_figure(sweep: DepthSweep) -> go.Figure:
    """First-block / last-block output gradient-norm ratio vs depth, plain and residual, log scale.

    A ratio of 1 (dotted line) means the first block gets as much gradient as the last; above it
    gradients grow toward the input, below it they vanish. A ratio a log axis cannot show (0: no
    gradient reaches the first block, as in a zero-initialized plain net; NaN) is named in a note
    under the chart rather than silently left out.
    """
    fig = go.Figure()
    missing: list[str] = []
    for label, ratio, loss, color in (
        ("residual", sweep.residual_ratio, sweep.residual_loss, RESIDUAL_COLOR),
        ("plain", sweep.plain_ratio, sweep.plain_loss, PLAIN_COLOR),
    ):
        fig.add_trace(
            go.Scatter(
                x=sweep.depths.tolist(),
                y=_finite(ratio),
                customdata=np.asarray(loss, dtype=float).tolist(),
                name=label,
                mode="lines+markers",
                line={"color": color},
                hovertemplate="depth %{x}<br>first/last %{y:.3g}<br>loss %{customdata:.3g}<extra>"
                + label
                + "</extra>",
            )
        )
        zero = [int(d) for d, r in zip(sweep.depths, ratio) if r == 0]
        bad = [int(d) for d, r in zip(sweep.depths, ratio) if not (np.isfinite(r) and r >= 0)]
        if zero:
            missing.append(f"{label}: no gradient reaches the first block at depth {_depths(zero)}")
        if bad:
            missing.append(f"{label}: no finite ratio at depth {_depths(bad)} (the loss overflowed)")
    fig.add_hline(y=1.0, line_dash="dot", line_color="gray")
    if missing:
        note = "; ".join(missing)
        if sweep.twins.zero_init_residual:
            note += ". Zero-init zeroes every plain block's output, so its only path carries nothing."
        fig.add_annotation(
            text=note,
            xref="paper",
            yref="paper",
            x=0.0,
            y=1.0,
            xanchor="left",
            yanchor="bottom",
            showarrow=False,
            font={"color": "#d62728"},
            name="not plotted",
        )
    bn = "with BatchNorm" if sweep.twins.batchnorm else "without BatchNorm"
    return _layout(
        fig,
        f"First/last block gradient-norm ratio at initialization, {bn}, {sweep.twins.init} init",
        "depth (layers)",
        "‖∂L/∂(first block out)‖ / ‖∂L/∂(last block out)‖",
    )


def _depths(depths: list[int]) -> str:
    return ", ".join(str(d) for d in depths)


def sweep_loss_figure(sweep: DepthSweep) -> go.Figure:
    """Initial loss vs depth, log scale: where the forward signal blows up (no BN, no taming)."""
    fig = go.Figure()
    for label, loss, color in (
        ("residual", sweep.residual_loss, RESIDUAL_COLOR),
        ("plain", sweep.plain_loss, PLAIN_COLOR),
    ):
        fig.add_trace(
            go.Scatter(
                x=sweep.depths.tolist(),
                y=_finite(loss),
                name=label,
                mode="lines+markers",
                line={"color": color},
                hovertemplate="depth %{x}<br>loss %{y:.3g}<extra>" + label + "</extra>",
            )
        )
    return _layout(fig, "Loss at initialization", "depth (layers)", "cross-entropy loss")


def training_heatmap(
    run: TrainingRun, which: Literal["residual", "plain"], *, zrange: tuple[float, float] | None = None
) -> go.Figure:
    """Layer-by-step heatmap of log10 weight-gradient norms for one twin.

    Args:
        run: the training record.
        which: "residual" or "plain".
        zrange: shared colour range (log10) so the two heatmaps compare; defaults to both models' range.
    """
    grid = run.residual_grad if which == "residual" else run.plain_grad  # (S, L)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(grid.T)  # (L, S): depth down the side, steps across
    z = np.where(np.isfinite(z), z, np.nan)
    if zrange is None:
        zrange = heatmap_range(run)
    fig = go.Figure(
        go.Heatmap(
            z=[[None if np.isnan(v) else float(v) for v in row] for row in z],
            x=list(range(1, run.steps + 1)),
            y=list(run.layer_names),
            zmin=zrange[0],
            zmax=zrange[1],
            colorscale="Viridis",
            colorbar={"title": "log10 ‖∂L/∂W‖"},
            hovertemplate="%{y}<br>step %{x}<br>log10 norm %{z:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")  # input at the top, classifier at the bottom
    return _layout(
        fig, f"{which.capitalize()} net: gradient norm per layer and step", "step", "layer", log_y=False
    )


def heatmap_range(run: TrainingRun) -> tuple[float, float]:
    """log10 range covering both models' finite, positive gradient norms (``(-8, 0)`` if none)."""
    both = np.concatenate([run.residual_grad.ravel(), run.plain_grad.ravel()])
    good = both[np.isfinite(both) & (both > 0)]
    if good.size == 0:
        return (-8.0, 0.0)
    lo, hi = float(np.log10(good.min())), float(np.log10(good.max()))
    return (lo, hi if hi > lo else lo + 1.0)


def loss_figure(run: TrainingRun) -> go.Figure:
    """Training loss of both twins per step (log scale; a diverged step shows as a gap)."""
    fig = go.Figure()
    steps = list(range(1, run.steps + 1))
    for label, loss, color in (
        ("residual", run.residual_loss, RESIDUAL_COLOR),
        ("plain", run.plain_loss, PLAIN_COLOR),
    ):
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=_finite(loss),
                name=label,
                mode="lines+markers" if run.steps < 60 else "lines",
                line={"color": color},
                hovertemplate="step %{x}<br>loss %{y:.4g}<extra>" + label + "</extra>",
            )
        )
    return _layout(
        fig,
        f"Training loss (SGD, lr {run.lr:g}, momentum {run.momentum:g}, weight decay {run.weight_decay:g})",
        "step",
        "cross-entropy loss",
    )
