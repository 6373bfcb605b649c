"""Figures for attribution: top-k bars, map overlays, and the layers x methods comparison grid.

No torch here: inputs are the numpy arrays of :mod:`resviz.analysis.attribution`. Overlays are
composed in numpy and sent to the browser as one PNG each (a ``go.Image`` with a data-URI source):
a 224x224 overlay is about 100 KB that way, against about 1.5 MB as a JSON array of pixels.
Changing the opacity or the colormap recomposes the overlay from a cached map in a few ms.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from plotly.colors import get_colorscale, sample_colorscale
from plotly.subplots import make_subplots

from resviz.text import plot_text

COLORMAPS: tuple[str, ...] = ("Jet", "Turbo", "Inferno", "Viridis", "Hot", "RdBu_r", "Greys")


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """``(256, 3)`` uint8 colors of a plotly colorscale name (``"Viridis"``, ``"RdBu_r"``...)."""
    try:
        scale = get_colorscale(name)
    except Exception as exc:  # plotly raises PlotlyError with a long list of names
        raise ValueError(f"Unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}.") from exc
    colors = sample_colorscale(scale, np.linspace(0.0, 1.0, 256).tolist(), colortype="tuple")
    return np.clip(np.rint(np.asarray(colors, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3].astype(np.uint8)


def overlay(
    image: np.ndarray, heat: np.ndarray, *, opacity: float = 0.5, colormap: str = "Jet"
) -> np.ndarray:
    """Blend a ``[0, 1]`` map over an image.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` uint8, the image as the network saw it.
        heat: ``(H, W)`` float in ``[0, 1]``.
        opacity: 0 shows only the image, 1 only the colored map.
        colormap: a plotly colorscale name.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    rgb = _as_rgb(image)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != rgb.shape[:2]:
        raise ValueError(f"Map {heat.shape} and image {rgb.shape[:2]} differ in size.")
    lut = colormap_lut(colormap)
    idx = np.clip(np.nan_to_num(heat) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    a = float(np.clip(opacity, 0.0, 1.0))
    out = (1.0 - a) * rgb.astype(np.float32) + a * lut[idx].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_as_rgb(rgb)).save(buf, format="PNG", compress_level=1)  # speed over size
    return buf.getvalue()


def _data_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def _hide_axes(fig: go.Figure) -> None:
    fig.update_xaxes(visible=False, showgrid=False)
    fig.update_yaxes(visible=False, showgrid=False, scaleanchor="x")


def overlay_figure(
    image: np.ndarray,
    heat: np.ndarray,
    *,
    opacity: float = 0.5,
    colormap: str = "Jet",
    title: str | None = None,
    height: int = 340,
) -> go.Figure:
    """One overlay as a figure: the PNG of :func:`overlay`.

    Args:
        image: ``(H, W, 3)`` uint8.
        heat: ``(H, W)`` in ``[0, 1]``.
        opacity: of the map.
        colormap: a plotly colorscale name.
        title: shown above the image.
        height: figure height in pixels.
    """
    rgb = overlay(image, heat, opacity=opacity, colormap=colormap)
    # Built in one call: plotly's update_* methods validate again on each call (5x the time).
    layout = dict(
        title=title,
        height=height,
        margin=dict(l=0, r=0, t=36 if title else 0, b=0),
        showlegend=False,
        meta={"kind": "attribution_overlay"},
        xaxis=dict(visible=False, showgrid=False),
        yaxis=dict(visible=False, showgrid=False, scaleanchor="x"),
    )
    image_trace = go.Image(source=_data_uri(rgb), hoverinfo="skip", name="overlay")
    return go.Figure(data=[image_trace, color_scale_trace(colormap)], layout=layout)


def color_scale_trace(colormap: str = "Jet") -> go.Scatter:
    """An invisible trace whose colour bar says what the overlay's colours mean: each map is scaled
    to ``[0, 1]`` per image, so 0 is the image's least and 1 its most attributed pixel."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        name="colour scale",
        hoverinfo="skip",
        marker=dict(
            color=[0.0],
            cmin=0.0,
            cmax=1.0,
            colorscale=colormap,
            showscale=True,
            colorbar=dict(
                title=dict(text="per image", side="right"),
                tickvals=[0.0, 0.5, 1.0],
                ticktext=["0 least", "0.5", "1 most"],
                thickness=12,
                len=0.9,
            ),
        ),
    )


def signed_map(raw: np.ndarray) -> np.ndarray | None:
    """``(H, W)`` the signed attribution of one image (``(C, H, W)`` summed over channels), or
    None when it has no negative value (an absolute-value method: nothing signed to show)."""
    signed = np.asarray(raw, dtype=np.float64)
    signed = signed.sum(axis=0) if signed.ndim == 3 else signed
    return signed if (signed < 0).any() else None


def signed_figure(signed: np.ndarray, target: str, *, height: int = 340) -> go.Figure:
    """A signed attribution on a diverging scale centred on zero: red raises ``target``'s score,
    blue lowers it, white is neither. The scale is symmetric (+-the largest magnitude), so equal
    shades mean equal amounts of either sign."""
    signed = np.asarray(signed, dtype=np.float64)
    top = float(np.abs(signed).max()) or 1.0
    heat = go.Heatmap(
        z=signed[::-1].tolist(),  # row 0 at the top, as in the image
        colorscale="RdBu_r",
        zmid=0.0,
        zmin=-top,
        zmax=top,
        colorbar=dict(
            title=dict(text="signed", side="right"),
            tickvals=[-top, 0.0, top],
            ticktext=["lowers", "0", "raises"],
            thickness=12,
            len=0.9,
        ),
        hovertemplate="%{z:.3g}<extra></extra>",
    )
    layout = dict(
        title=dict(text=f"Signed: red raises {target}, blue lowers it", font=dict(size=13)),
        height=height,
        margin=dict(l=0, r=0, t=36, b=0),
        meta={"kind": "attribution_signed"},
        xaxis=dict(visible=False, showgrid=False),
        yaxis=dict(visible=False, showgrid=False, scaleanchor="x"),
    )
    return go.Figure(data=[heat], layout=layout)


def top_k_figure(
    labels: Sequence[str], probs: Sequence[float], *, target: str | None = None, height: int = 260
) -> go.Figure:
    """Horizontal bars of the top-k classes, most probable on top; the explained class highlighted.

    Args:
        labels: ``k`` class names, most probable first.
        probs: ``k`` probabilities in ``[0, 1]``.
        target: the class the map explains, drawn in a second color when it is among them.
        height: figure height in pixels.
    """
    labels = [str(s) for s in labels]
    probs = [float(p) for p in probs]
    colors = ["#d62728" if lab == target else "#1f77b4" for lab in labels]
    fig = go.Figure(
        go.Bar(
            x=probs[::-1],
            y=[plot_text(lab) for lab in labels[::-1]],  # class names from a file: text, not markup
            orientation="h",
            marker_color=colors[::-1],
            text=[f"{p:.1%}" for p in probs[::-1]],
            # Outside and level: "auto" put a thin bar's label inside it, turned on its side.
            textposition="outside",
            textangle=0,
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=10, t=30, b=0),
        title="Top classes",
        # Up to the largest bar, not to 100%: an untrained net's 2% top class stays readable.
        # Whole percents repeat ("1% 1% 2%") when an untrained net's top class has 2%: show a decimal.
        xaxis=dict(
            range=[0, max([*probs, 0.01]) * 1.3], tickformat=".0%" if max([*probs, 0.0]) > 0.1 else ".1%"
        ),
        # Class names like "0".."9" must not become a numeric axis with ticks between the bars.
        yaxis=dict(automargin=True, type="category"),
    )
    return fig


def comparison_grid(
    image: np.ndarray,
    cells: Mapping[tuple[str, str], np.ndarray],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    opacity: float = 0.5,
    colormap: str = "Jet",
    cell_px: int = 170,
) -> go.Figure:
    """A grid of overlays on one image: ``rows`` (layers) by ``columns`` (methods or models).

    Args:
        image: ``(H, W, 3)`` uint8, the image as the network saw it.
        cells: ``(row, column)`` -> ``(H, W)`` map in ``[0, 1]``; a missing cell stays blank.
        rows: row titles, top to bottom.
        columns: column titles, left to right.
        opacity: of the maps.
        colormap: a plotly colorscale name.
        cell_px: height of one cell in pixels.
    """
    fig = make_subplots(
        rows=len(rows),
        cols=len(columns),
        column_titles=list(columns),
        row_titles=list(rows),
        horizontal_spacing=0.01,
        vertical_spacing=0.02,
    )
    for r, row in enumerate(rows, start=1):
        for c, col in enumerate(columns, start=1):
            heat = cells.get((row, col))
            if heat is None:
                continue
            rgb = overlay(image, heat, opacity=opacity, colormap=colormap)
            fig.add_trace(
                go.Image(source=_data_uri(rgb), hoverinfo="skip", name=f"{row} · {col}"), row=r, col=c
            )
    if rows and columns:
        fig.add_trace(color_scale_trace(colormap), row=1, col=1)  # one scale: every cell is per image
    # Row titles on the left, read upward: plotly puts them at the far right, by the colour bar.
    names = set(rows)
    for note in fig.layout.annotations:
        if note.text in names and note.textangle == 90:
            note.update(x=0.0, xanchor="right", xshift=-4, textangle=-90)
    _hide_axes(fig)
    fig.update_yaxes(scaleanchor=None)
    fig.update_layout(
        height=max(1, len(rows)) * cell_px + 40,
        margin=dict(l=28, r=30, t=40, b=0),
        showlegend=False,
        meta={"kind": "attribution_grid"},
    )
    return fig


def grid_image(
    image: np.ndarray,
    cells: Mapping[tuple[str, str], np.ndarray],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    opacity: float = 0.5,
    colormap: str = "Jet",
    gap: int = 4,
) -> np.ndarray:
    """The comparison grid as one ``(rows*H + gaps, columns*W + gaps, 3)`` uint8 image (white gaps,
    blank missing cells), for files: the same cells as :func:`comparison_grid`, without titles."""
    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    out = np.full((len(rows) * (h + gap) - gap, len(columns) * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, col in enumerate(columns):
            heat = cells.get((row, col))
            if heat is not None:
                y, x = r * (h + gap), c * (w + gap)
                out[y : y + h, x : x + w] = overlay(rgb, heat, opacity=opacity, colormap=colormap)
    return out
