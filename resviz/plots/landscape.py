"""Figures for loss landscapes: results from :mod:`resviz.analysis.landscape` in, ``go.Figure`` out.

Plain against residual always share one colour range (and one z range in 3D), or the eye compares
two scales instead of two surfaces. Losses span orders of magnitude (a chaotic plain net reaches
hundreds where the residual one stays near its minimum), so contours and surfaces show log10 of
the loss; hovering gives the loss itself. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resviz.plots.gradients import PLAIN_COLOR, RESIDUAL_COLOR

if TYPE_CHECKING:
    from resviz.analysis.landscape import LandscapeSlice, LandscapeSurface

PAPER = "Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, NeurIPS 2018"


def _is_plain(name: str) -> bool:
    return name.startswith("plain")


def _log10(loss: np.ndarray) -> np.ndarray:
    """log10 of the loss; NaN (not evaluated) stays NaN, a loss of 0 is floored at 1e-8."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log10(np.maximum(np.asarray(loss, dtype=float), 1e-8))


def shared_range(*surfaces: LandscapeSurface) -> tuple[float, float]:
    """(lowest, highest) finite log10 loss over every surface: one colour scale for all of them."""
    values = np.concatenate([_log10(s.loss).ravel() for s in surfaces])
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi if hi > lo else lo + 1.0)


def slice_figure(slices: Sequence[LandscapeSlice], *, title: str | None = None) -> go.Figure:
    """Loss along each slice on one chart (log scale): residual solid blue, plain dashed orange."""
    fig = go.Figure()
    for s in slices:
        plain = _is_plain(s.model)
        fig.add_trace(
            go.Scatter(
                x=s.coords.tolist(),
                y=[float(v) if np.isfinite(v) and v > 0 else None for v in s.loss],
                mode="lines+markers",
                name=s.model,
                line={
                    "color": PLAIN_COLOR if plain else RESIDUAL_COLOR,
                    "dash": "dash" if plain else "solid",
                },
                customdata=np.asarray(s.accuracy, dtype=float).tolist(),
                hovertemplate="%{x:.3g}: loss %{y:.4g}, accuracy %{customdata:.1%}<extra>"
                + s.model
                + "</extra>",
            )
        )
    kind = slices[0].kind if slices else "direction"
    x_title = "t (0 = start, 1 = end)" if kind == "interpolation" else "α (filter-normalized direction)"
    default = (
        "Loss between two sets of weights" if kind == "interpolation" else "Loss along one random direction"
    )
    fig.update_layout(
        title=title or default,
        xaxis_title=x_title,
        yaxis_title="loss (log scale)",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 60, "l": 60, "r": 20, "b": 40},
    )
    fig.update_yaxes(type="log", exponentformat="power")
    return fig


def _hover(s: LandscapeSurface) -> str:
    return "α %{x:.3g}, β %{y:.3g}<br>loss %{customdata:.4g}<extra>" + s.model + "</extra>"


def contour_figure(surfaces: Sequence[LandscapeSurface]) -> go.Figure:
    """2D contours of log10 loss side by side, one colour scale; the trained weights marked at (0, 0).

    ``z`` is indexed ``[β, α]`` (plotly's rows are y), the transpose of ``LandscapeSurface.loss``.
    """
    lo, hi = shared_range(*surfaces)
    fig = make_subplots(rows=1, cols=len(surfaces), subplot_titles=[s.model for s in surfaces])
    for col, s in enumerate(surfaces, start=1):
        fig.add_trace(
            go.Contour(
                x=s.alpha.tolist(),
                y=s.beta.tolist(),
                z=_log10(s.loss).T.tolist(),
                customdata=np.asarray(s.loss, dtype=float).T.tolist(),
                zmin=lo,
                zmax=hi,
                ncontours=20,
                colorscale="Viridis",
                showscale=col == len(surfaces),
                colorbar={"title": "log10 loss"},
                hovertemplate=_hover(s),
                name=s.model,
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(x=[0], y=[0], mode="markers", marker={"symbol": "x", "color": "white", "size": 9},
                       name="trained weights", showlegend=col == 1, hoverinfo="skip"),
            row=1, col=col,
        )  # fmt: skip
        fig.update_xaxes(title_text="α", row=1, col=col)
        fig.update_yaxes(title_text="β", row=1, col=col, scaleanchor=f"x{col if col > 1 else ''}")
    fig.update_layout(
        title="Loss around the trained weights (log10, same colour scale)",
        height=460,
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 80, "l": 50, "r": 20, "b": 40},
    )
    return fig


def surface_figure(surfaces: Sequence[LandscapeSurface]) -> go.Figure:
    """3D surfaces of log10 loss side by side, the same z range and colour scale for all."""
    lo, hi = shared_range(*surfaces)
    specs = [[{"type": "surface"} for _ in surfaces]]
    fig = make_subplots(rows=1, cols=len(surfaces), specs=specs, subplot_titles=[s.model for s in surfaces])
    for col, s in enumerate(surfaces, start=1):
        fig.add_trace(
            go.Surface(
                x=s.alpha.tolist(),
                y=s.beta.tolist(),
                z=_log10(s.loss).T.tolist(),
                customdata=np.asarray(s.loss, dtype=float).T.tolist(),
                cmin=lo,
                cmax=hi,
                colorscale="Viridis",
                showscale=col == len(surfaces),
                colorbar={"title": "log10 loss"},
                hovertemplate=_hover(s),
                name=s.model,
            ),
            row=1,
            col=col,
        )
    scene = {"xaxis_title": "α", "yaxis_title": "β", "zaxis": {"title": "log10 loss", "range": [lo, hi]}}
    fig.update_layout(
        title="Loss surface (log10, same scale)",
        height=520,
        margin={"t": 80, "l": 10, "r": 10, "b": 10},
        **{f"scene{i if i > 1 else ''}": scene for i in range(1, len(surfaces) + 1)},
    )
    return fig


def heatmap_png(surfaces: Sequence[LandscapeSurface], *, cell: int = 12, gap: int = 8) -> bytes:
    """The grids as one PNG, side by side, log10 loss on the same Viridis scale; NaN is grey.

    Each grid point is a ``cell`` x ``cell`` square; α runs left to right and β bottom to top, as
    in :func:`contour_figure`. Made with Pillow, so no browser or kaleido is needed.
    """
    import io

    from PIL import Image
    from plotly.colors import hex_to_rgb
    from plotly.colors import sequential as seq

    lo, hi = shared_range(*surfaces)
    palette = np.array([hex_to_rgb(c) for c in seq.Viridis], dtype=float)  # (K, 3)
    tiles = []
    for s in surfaces:
        z = (_log10(s.loss).T[::-1] - lo) / (hi - lo)  # rows: β from top (high) to bottom (low)
        pos = np.clip(np.nan_to_num(z, nan=0.0), 0, 1) * (len(palette) - 1)
        i0 = np.floor(pos).astype(int).clip(0, len(palette) - 2)
        frac = (pos - i0)[..., None]
        rgb = palette[i0] * (1 - frac) + palette[i0 + 1] * frac
        rgb[np.isnan(z)] = 128
        tiles.append(np.kron(rgb, np.ones((cell, cell, 1))))
    h = max(t.shape[0] for t in tiles)
    canvas = np.full((h, sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1), 3), 255.0)
    x = 0
    for t in tiles:
        canvas[: t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + gap
    buf = io.BytesIO()
    Image.fromarray(canvas.round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
