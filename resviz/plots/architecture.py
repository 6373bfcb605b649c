"""Figures of architectures: a residual block drawn, a whole network with its shortcuts, stage charts.

Inputs are configs, summaries and layouts (plain data); nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resviz.analysis.layout import BlockInfo
from resviz.plots.axes import log_axis, si_label

if TYPE_CHECKING:
    from resviz.analysis.summary import ModelSummary

RESIDUAL = "#1f77b4"
PLAIN = "#d62728"
# Stage colours stay clear of the shortcut colours (green, orange, cyan) so arcs read at a glance.
STAGE_COLORS = ["#4c72b0", "#8172b3", "#937860", "#7f7f7f", "#64b5cd", "#da8bc3", "#c44e52", "#55a868"]
SHORTCUT_STYLE = {
    "identity": dict(color="#2ca02c", dash="solid"),
    "projection": dict(color="#ff7f0e", dash="dash"),
    "padding": dict(color="#17becf", dash="dot"),
}


class _Canvas:
    """Collects traces, shapes and annotations for one ``go.Figure`` call at the end.

    plotly validates the whole figure again on every ``add_*`` call: drawing a block shape by shape
    into a ``go.Figure`` took 0.2 s, a third of a Home page run. The drawing helpers below take a
    canvas and call the same ``add_*`` methods on it.
    """

    def __init__(self) -> None:
        self.traces: list[go.Scatter] = []
        self.shapes: list[dict[str, object]] = []
        self.annotations: list[dict[str, object]] = []

    def add_trace(self, trace: go.Scatter) -> None:
        self.traces.append(trace)

    def add_shape(self, **shape: object) -> None:
        self.shapes.append(shape)

    def add_annotation(self, **annotation: object) -> None:
        self.annotations.append(annotation)

    def figure(self, **layout: object) -> go.Figure:
        return go.Figure(
            data=self.traces, layout=dict(shapes=self.shapes, annotations=self.annotations, **layout)
        )


def block_figure(
    kind: str = "basic",
    *,
    preact: bool = False,
    skip: bool = True,
    projection: bool = False,
    widths: tuple[int, ...] | None = None,
) -> go.Figure:
    """The layers of one residual block, top to bottom, with the shortcut around them.

    Args:
        kind: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1, 3x3, 1x1).
        preact: draw the pre-activation ordering (BN-ReLU before each conv, nothing after the sum).
        skip: draw the shortcut and the addition; False draws the plain twin's block.
        projection: the shortcut is a 1x1 convolution ``W_s x`` (option C: every block), not ``x``.
        widths: the convolutions' output channels in branch order (2 for basic, 3 for bottleneck);
            default: the first stage of ResNet-18 and ResNet-50 (64, 64 and 64, 64, 256).
    """
    layers = _block_layers(kind, preact, widths)
    n = len(layers)
    fig = _Canvas()
    top, step = n + 1.0, 1.0
    ys = [top - step * (i + 1) for i in range(n)]
    _draw_branch(fig, layers, ys, top)
    add_y = ys[-1] - step
    out_y = add_y - (0.0 if preact else step)
    if skip:
        last_y = _draw_shortcut(fig, ys, top, add_y, projection=projection)
    else:
        last_y = ys[-1] - 0.32
    if not preact:
        last_y = _draw_output_relu(fig, out_y, last_y)
    shortcut = ("W<sub>s</sub>x" if projection else "x") if skip else None
    _draw_result(fig, last_y, preact=preact, shortcut=shortcut)
    title = f"{'pre-activation ' if preact else ''}{kind} block{'' if skip else ' (plain: no shortcut)'}"
    return fig.figure(
        title=dict(text=title, x=0.5, xanchor="center"),
        xaxis=dict(visible=False, range=[-2.4, 3.6]),
        yaxis=dict(visible=False, range=[last_y - 1.1, top + 0.6], scaleanchor="x"),
        height=90 + 58 * (n + 3),
        margin=dict(l=10, r=10, t=50, b=10),
        plot_bgcolor="white",
        showlegend=False,
    )


def _block_layers(kind: str, preact: bool, widths: tuple[int, ...] | None = None) -> list[str]:
    """The labels of the residual branch's layers, in forward order."""
    if kind == "basic":
        w = widths or (64, 64)
        convs = [f"3x3 conv, {w[0]}", f"3x3 conv, {w[1]}"]
    else:
        w = widths or (64, 64, 256)
        convs = [f"1x1 conv, {w[0]}", f"3x3 conv, {w[1]}", f"1x1 conv, {w[2]}"]
    layers: list[str] = []
    for i, conv in enumerate(convs):
        last = i == len(convs) - 1
        if preact:
            layers += ["BN", "ReLU", conv]
        else:
            layers += [conv, "BN"] + ([] if last else ["ReLU"])
    return layers


def _layer_box(fig: _Canvas, label: str, y: float, fillcolor: str) -> None:
    """One layer as a labelled box centred at height ``y``."""
    fig.add_shape(
        type="rect",
        x0=-1.2,
        x1=1.2,
        y0=y - 0.32,
        y1=y + 0.32,
        fillcolor=fillcolor,
        line=dict(color="#555", width=1),
    )
    fig.add_annotation(x=0, y=y, text=label, showarrow=False, font=dict(size=13))


def _draw_branch(fig: _Canvas, layers: list[str], ys: list[float], top: float) -> None:
    """The residual branch: a box per layer, arrows between them, and the input ``x`` above."""
    for label, y in zip(layers, ys):
        _layer_box(fig, label, y, "#dbe9f6" if "conv" in label else "#f2f2f2")
    # Arrows between layers, from the input above the first to the output below the sum.
    points = [top, *ys]
    for a, b in pairwise(points):
        _arrow(fig, 0, a - (0.32 if a != top else 0), 0, b + 0.32)
    fig.add_annotation(x=0, y=top + 0.25, text="<b>x</b>", showarrow=False, font=dict(size=15))


def _draw_shortcut(fig: _Canvas, ys: list[float], top: float, add_y: float, *, projection: bool) -> float:
    """The addition and the shortcut into it (identity, or a 1x1 projection drawn as a box on it);
    returns the height just below the sum."""
    _arrow(fig, 0, ys[-1] - 0.32, 0, add_y + 0.22)
    fig.add_shape(
        type="circle",
        x0=-0.22,
        x1=0.22,
        y0=add_y - 0.22,
        y1=add_y + 0.22,
        line=dict(color=RESIDUAL, width=2),
    )
    fig.add_annotation(x=0, y=add_y, text="<b>+</b>", showarrow=False, font=dict(size=16, color=RESIDUAL))
    # The shortcut: out to the right, down, and into the addition.
    fig.add_shape(
        type="path",
        path=f"M 0 {top - 0.1} L 2.1 {top - 0.1} L 2.1 {add_y} L 0.24 {add_y}",
        line=dict(color=RESIDUAL, width=2.5),
    )
    mid = (top + add_y) / 2
    if projection:
        fig.add_shape(
            type="rect",
            x0=1.55,
            x1=2.65,
            y0=mid - 0.45,
            y1=mid + 0.45,
            fillcolor="#fde9d9",
            line=dict(color=SHORTCUT_STYLE["projection"]["color"], width=1.5),
        )
        fig.add_annotation(x=2.1, y=mid, text="1x1 conv<br>BN", showarrow=False, font=dict(size=11))
    fig.add_annotation(
        x=2.7 if projection else 2.15,
        y=mid,
        text="projection<br>shortcut W<sub>s</sub>x" if projection else "identity<br>shortcut x",
        showarrow=False,
        xanchor="left",
        font=dict(color=RESIDUAL, size=12),
    )
    fig.add_annotation(
        x=-1.35,
        y=(ys[0] + ys[-1]) / 2,
        text="F(x)",
        showarrow=False,
        xanchor="right",
        font=dict(size=15, color="#333"),
    )
    return add_y - 0.22


def _draw_output_relu(fig: _Canvas, out_y: float, last_y: float) -> float:
    """The ReLU after the sum (post-activation blocks only); returns the height below it."""
    _layer_box(fig, "ReLU", out_y, "#f2f2f2")
    _arrow(fig, 0, last_y, 0, out_y + 0.32)
    return out_y - 0.32


def _draw_result(fig: _Canvas, last_y: float, *, preact: bool, shortcut: str | None) -> None:
    """The final arrow and the formula of what the block outputs (``shortcut``: its term, or None)."""
    result = f"F(x) + {shortcut}" if shortcut else "F(x)"
    _arrow(fig, 0, last_y, 0, last_y - 0.55)
    fig.add_annotation(
        x=0,
        y=last_y - 0.75,
        text=f"<b>{'relu(' + result + ')' if not preact else result}</b>",
        showarrow=False,
        font=dict(size=14),
    )


def _arrow(fig: _Canvas, x0: float, y0: float, x1: float, y1: float, color: str = "#555") -> None:
    fig.add_annotation(
        x=x1,
        y=y1,
        ax=x0,
        ay=y0,
        xref="x",
        yref="y",
        axref="x",
        ayref="y",
        showarrow=True,
        arrowhead=2,
        arrowsize=1,
        arrowwidth=1.5,
        arrowcolor=color,
        text="",
    )


def network_figure(blocks: Sequence[BlockInfo], title: str = "", max_blocks: int = 60) -> go.Figure:
    """Every block of a network left to right, coloured by stage, with each shortcut drawn as an arc.

    Solid green arcs are identity shortcuts, dashed orange ones projections, dotted ones option-A
    zero-padding; a block without an arc has no shortcut. Deep stages are folded to keep it legible.
    """
    shown = _fold(list(blocks), max_blocks)
    fig = _Canvas()
    stages = list(dict.fromkeys(b.stage for b, _ in shown))
    for i, (b, folded) in enumerate(shown):
        _draw_network_block(fig, i, b, folded, STAGE_COLORS[stages.index(b.stage) % len(STAGE_COLORS)])
    fig.add_trace(_network_hover(shown))
    _draw_stage_labels(fig, shown, stages)
    drawn = {b.shortcut for b, _ in shown}
    for kind, style in SHORTCUT_STYLE.items():
        if kind not in drawn:  # a legend for arcs that are not there (a plain net has none) misleads
            continue
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=f"{kind} shortcut",
                line=dict(color=style["color"], dash=style["dash"], width=2),
            )
        )
    if drawn <= {"none"}:
        fig.add_annotation(
            x=len(shown) / 2,
            y=1.45,
            text="no shortcuts: a plain network",
            showarrow=False,
            font=dict(color=PLAIN),
        )
    return fig.figure(
        title=title,
        height=230,
        margin=dict(l=10, r=10, t=40, b=10),
        plot_bgcolor="white",
        xaxis=dict(visible=False, range=[-0.2, len(shown) + 0.2]),
        yaxis=dict(visible=False, range=[-0.6, 2.0]),
        legend=dict(orientation="h", y=-0.05, x=0.5, xanchor="center"),
    )


def _draw_network_block(fig: _Canvas, i: int, b: BlockInfo, folded: int, color: str) -> None:
    """Block ``i`` as a box (marked ``×n`` when folded) with its shortcut arc above, if it has one."""
    label = f"×{folded}" if folded > 1 else ""
    fig.add_shape(
        type="rect",
        x0=i + 0.1,
        x1=i + 0.9,
        y0=0,
        y1=1,
        fillcolor=color,
        opacity=0.85,
        line=dict(color="white", width=1),
    )
    if label:
        fig.add_annotation(x=i + 0.5, y=0.5, text=label, showarrow=False, font=dict(color="white", size=11))
    if b.shortcut != "none":
        style = SHORTCUT_STYLE[b.shortcut]
        fig.add_shape(
            type="path",
            path=f"M {i + 0.12} 1.02 Q {i + 0.5} 1.9 {i + 0.88} 1.02",
            line=dict(color=style["color"], dash=style["dash"], width=2),
        )


def _network_hover(shown: list[tuple[BlockInfo, int]]) -> go.Scatter:
    """Invisible markers over the blocks that carry each block's name, channels, stride and shortcut."""
    hover_text = [
        f"{b.name}{f' (+{folded - 1} like it)' if folded > 1 else ''}<br>"
        f"{b.in_channels}→{b.out_channels} channels, stride {b.stride}<br>shortcut: {b.shortcut}"
        for b, folded in shown
    ]
    return go.Scatter(
        x=[i + 0.5 for i in range(len(shown))],
        y=[0.5] * len(shown),
        mode="markers",
        marker=dict(size=18, opacity=0),
        hovertext=hover_text,
        hoverinfo="text",
        showlegend=False,
    )


def _draw_stage_labels(fig: _Canvas, shown: list[tuple[BlockInfo, int]], stages: list[str]) -> None:
    """Each stage's name under the middle of its blocks, in the stage's colour."""
    for s, stage in enumerate(stages):
        xs = [i for i, (b, _) in enumerate(shown) if b.stage == stage]
        fig.add_annotation(
            x=(xs[0] + xs[-1] + 1) / 2,
            y=-0.35,
            text=stage,
            showarrow=False,
            font=dict(color=STAGE_COLORS[s % len(STAGE_COLORS)], size=13),
        )


def _fold(blocks: list[BlockInfo], max_blocks: int) -> list[tuple[BlockInfo, int]]:
    """Keep all blocks if few; else show each stage's first block and one folded '×n' box."""
    if len(blocks) <= max_blocks:
        return [(b, 1) for b in blocks]
    out: list[tuple[BlockInfo, int]] = []
    for stage in dict.fromkeys(b.stage for b in blocks):
        members = [b for b in blocks if b.stage == stage]
        out.append((members[0], 1))
        if len(members) > 1:
            out.append((members[1], len(members) - 1))
    return out


def stage_figure(summaries: Sequence[ModelSummary]) -> go.Figure:
    """Parameters and multiply-accumulates per stage, one bar group per model."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Parameters per stage", "Multiply-accumulates per stage")
    )
    for k, s in enumerate(summaries):
        color = STAGE_COLORS[(k * 3 + 1) % len(STAGE_COLORS)]
        names = [st.name for st in s.stages]
        for col, values in ((1, [st.params for st in s.stages]), (2, [st.macs for st in s.stages])):
            fig.add_trace(
                go.Bar(
                    x=names,
                    y=values,
                    name=s.label,
                    marker_color=color,
                    legendgroup=s.label,
                    showlegend=col == 1,
                    # Labels on grouped bars collide; one model's bars have room for them.
                    text=[si_label(v) for v in values] if len(summaries) == 1 else None,
                    textposition="outside",
                    hovertemplate="%{x}: %{y:,}<extra>" + s.label + "</extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        barmode="group",
        height=380,
        margin=dict(l=10, r=10, t=60, b=10),
        legend=dict(orientation="h", y=1.15, x=0.5, xanchor="center"),
    )
    fig.update_xaxes(type="category")  # stage names, in network order
    fig.update_yaxes(rangemode="tozero")
    return fig


def comparison_figure(
    summaries: Sequence[ModelSummary],
    highlight: Sequence[str] = (),
    top1: Sequence[float | None] | None = None,
) -> go.Figure:
    """Depth, parameters and multiply-accumulates of several architectures, one row of bars each,
    and their published ImageNet top-1 accuracy when ``top1`` gives it (one per summary).

    Horizontal bars on log axes (each axis says so): the model names read across, and each value
    label has room at the end of its bar at a readable size (labels on narrow upright bars get
    shrunk by plotly). The accuracy panel is linear, from 0 to 100 %.
    """
    labels = [s.label for s in summaries]
    colors = [RESIDUAL if s.label in highlight else "#9a9a9a" for s in summaries]
    titles = ["Depth (weighted layers)", "Parameters", "Multiply-accumulates per image"]
    if top1 is not None:
        titles.append("ImageNet top-1 (torchvision)")
    fig = make_subplots(
        rows=1,
        cols=len(titles),
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=titles,
    )
    panels = (
        (1, [s.depth for s in summaries], lambda v: f"{v:g}"),
        (2, [s.params for s in summaries], si_label),
        (3, [s.macs for s in summaries], si_label),
    )
    for col, values, fmt in panels:
        fig.add_trace(
            go.Bar(
                x=values,
                y=labels,
                orientation="h",
                marker_color=colors,
                showlegend=False,
                text=[fmt(v) for v in values],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{y}: %{x:,}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        axis = log_axis(values, fmt=fmt, max_ticks=5)
        if "tickvals" in axis:  # room left of the shortest bar and right of the longest's label
            lo, hi = math.log10(min(v for v in values if v > 0)), math.log10(max(values))
            axis["range"] = [lo - 0.25, hi + 0.1 + 0.25 * max(hi - lo, 1.0)]
        fig.update_xaxes(**axis, title_text="log scale", row=1, col=col)
    if top1 is not None:
        acc = [float("nan") if v is None else float(v) for v in top1]
        fig.add_trace(
            go.Bar(
                x=acc,
                y=labels,
                orientation="h",
                marker_color=colors,
                showlegend=False,
                text=["n/a" if v is None else f"{v:.1f}%" for v in top1],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{y}: %{x:.2f}% top-1<extra></extra>",
            ),
            row=1,
            col=4,
        )
        fig.update_xaxes(range=[0, 118], tickvals=[0, 25, 50, 75, 100], title_text="% (linear)", row=1, col=4)
    fig.update_yaxes(type="category", autorange="reversed")  # the first model on top
    fig.update_layout(
        height=120 + 30 * len(labels),
        margin=dict(l=10, r=10, t=50, b=10),
        uniformtext=dict(minsize=11, mode="show"),  # never shrink a label below a readable size
        bargap=0.25,
    )
    return fig
