"""Figures for feature maps: numpy in, ``go.Figure`` (or PNG bytes) out; no torch here.

Many channels are tiled into *one* uint8 mosaic shown as a single heatmap, which draws in far less
time and JSON than one heatmap subplot per channel. The
channel number under the pointer (and a click) comes from an invisible marker at each tile's centre
(a few hundred bytes), not from a per-pixel ``customdata`` array that would double the payload.
Value 255 of the mosaic is the white padding between tiles; data use 0..254 on a shared scale.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from resviz.plots.axes import log_axis

PAD = 255  # mosaic value of the padding between tiles (drawn white)
TOP = 254  # data are quantized to 0..TOP
BLOCK_COLUMNS = ("F(x) (branch)", "shortcut x", "output")
PLAIN_BLOCK_COLUMNS = ("F(x) (branch)", "no shortcut (plain block)", "output")


@dataclass(frozen=True)
class Mosaic:
    """Tiles of 2-D maps in one uint8 image.

    Attributes:
        z: ``(rows * (H + pad) - pad, cols * (W + pad) - pad)`` uint8; 0..254 data, 255 padding.
        labels: per tile, row-major, its label (e.g. the channel number); ``""`` for empty tiles.
        rows, cols: the grid; tile: ``(H, W)``; pad: pixels between tiles.
        vmin, vmax: activation values of z=0 and z=254.
    """

    z: np.ndarray
    labels: tuple[str, ...]
    rows: int
    cols: int
    tile: tuple[int, int]
    pad: int
    vmin: float
    vmax: float


def tile_maps(
    maps: np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    cols: int | None = None,
    pad: int = 1,
    vmin: float | None = None,
    vmax: float | None = None,
    symmetric: bool = False,
) -> Mosaic:
    """Tile ``maps`` ``(K, H, W)`` into a mosaic with one shared color scale.

    Args:
        maps: K maps; NaN pixels (e.g. a missing shortcut) are drawn as padding.
        labels: one per map (default: its index).
        cols: tiles per row (default: about square).
        vmin, vmax: the scale (default: the maps' finite min and max).
        symmetric: center the scale on zero (for signed signals such as F(x)).
    """
    maps = np.asarray(maps, dtype=np.float32)
    k, h, w = maps.shape
    cols = int(cols or max(1, int(np.ceil(np.sqrt(k)))))
    rows = int(np.ceil(k / cols))
    finite = maps[np.isfinite(maps)]
    lo = float(finite.min()) if vmin is None and finite.size else float(vmin or 0.0)
    hi = float(finite.max()) if vmax is None and finite.size else float(vmax if vmax is not None else 1.0)
    if symmetric:
        hi = max(abs(lo), abs(hi))
        lo = -hi
    scale = TOP / (hi - lo) if hi > lo else 0.0
    q = np.clip(np.rint((maps - lo) * scale), 0, TOP)
    q = np.where(np.isfinite(maps), q, PAD).astype(np.uint8)
    z = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), PAD, np.uint8)
    for i in range(k):
        r, c = divmod(i, cols)
        z[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = q[i]
    labels = [str(i) for i in range(k)] if labels is None else [str(s) for s in labels]
    labels += [""] * (rows * cols - k)
    return Mosaic(z, tuple(labels), rows, cols, (h, w), pad, lo, hi)


@lru_cache(maxsize=8)
def _lut(name: str) -> np.ndarray:
    """``(256, 3)`` uint8 colors: 0..254 along the plotly colorscale ``name``, 255 white."""
    colors = sample_colorscale(name, np.linspace(0.0, 1.0, TOP + 1).tolist(), colortype="tuple")
    lut = np.full((256, 3), 255, np.uint8)
    lut[: TOP + 1] = np.rint(np.asarray(colors) * (255 if max(map(max, colors)) <= 1 else 1))
    return lut


def label_colors(mosaic: Mosaic, colorscale: str, tiles: Sequence[int]) -> list[str]:
    """Black or white per tile, whichever reads better on the corner where its label is drawn.

    One fixed colour fails somewhere: white vanishes on the near-white middle of a diverging scale
    (and on Viridis' yellow), black on its dark ends. The corner's mean colour decides, by its
    luminance (ITU-R BT.601 weights).
    """
    h, w = mosaic.tile
    step_y, step_x = h + mosaic.pad, w + mosaic.pad
    lut = _lut(colorscale).astype(np.float32)
    colors = []
    for i in tiles:
        r, c = divmod(int(i), mosaic.cols)
        corner = mosaic.z[r * step_y : r * step_y + max(1, h // 4), c * step_x : c * step_x + max(1, w // 3)]
        rgb = lut[corner].reshape(-1, 3).mean(axis=0)
        colors.append("black" if float(rgb @ np.array([0.299, 0.587, 0.114])) > 150 else "white")
    return colors


def _colorscale(name: str) -> list[list[object]]:
    stops = np.linspace(0.0, 1.0, 11)
    colors = sample_colorscale(name, stops.tolist())
    scale: list[list[object]] = [[float(s) * TOP / PAD, c] for s, c in zip(stops, colors)]
    return [*scale, [1.0, "white"]]


def mosaic_figure(
    mosaic: Mosaic,
    *,
    title: str = "",
    colorscale: str = "Viridis",
    hover_prefix: str = "channel ",
    tile_values: np.ndarray | None = None,
    column_titles: Sequence[str] | None = None,
    label_texts: Sequence[str] | None = None,
    extra_traces: Sequence[go.Scatter] = (),
) -> go.Figure:
    """One heatmap of the mosaic, channel numbers on the tiles and in the hover.

    Built in one ``go.Figure`` call: plotly validates the whole figure again on every ``add_*`` and
    ``update_*`` call, which made building the figure most of a layer switch's server time.

    Args:
        mosaic: from :func:`tile_maps`.
        tile_values: optional ``(K,)`` number per tile shown in the hover (e.g. the mean activation).
        column_titles: text above each tile column (the block comparison's "F(x)", "shortcut"...).
        label_texts: what is written on each labelled tile (default: its label).
        extra_traces: drawn on top (e.g. a note in empty tiles).
    """
    ticks = [0, TOP // 2, TOP]
    values = [mosaic.vmin + (mosaic.vmax - mosaic.vmin) * t / TOP for t in ticks]
    heatmap = go.Heatmap(
        z=mosaic.z,
        zmin=0,
        zmax=PAD,
        colorscale=_colorscale(colorscale),
        hoverinfo="skip",
        colorbar=dict(tickvals=ticks, ticktext=[f"{v:.3g}" for v in values], thickness=12),
        name="maps",
    )
    traces = [
        heatmap,
        *_tile_traces(mosaic, colorscale, hover_prefix, tile_values, label_texts),
        *extra_traces,
    ]
    aspect = mosaic.z.shape[0] / mosaic.z.shape[1]
    height, width = mosaic.z.shape
    layout = dict(
        title=title or None,
        height=int(min(1000, max(260, 720 * aspect + (60 if title else 30)))),
        margin=dict(l=10, r=10, t=50 if (title or column_titles) else 20, b=10),
        plot_bgcolor="white",
        hoverdistance=-1,
        hovermode="closest",
        annotations=_column_titles(mosaic, column_titles or ()),
        # Fixed ranges: autorange would pad for the (invisible) markers and shrink the mosaic.
        xaxis=dict(visible=False, constrain="domain", range=[-0.5, width - 0.5]),
        yaxis=dict(visible=False, range=[height - 0.5, -0.5], scaleanchor="x", constrain="domain"),
    )
    return go.Figure(data=traces, layout=layout)


def _tile_traces(
    mosaic: Mosaic,
    colorscale: str,
    hover_prefix: str,
    tile_values: np.ndarray | None,
    label_texts: Sequence[str] | None,
) -> list[go.Scatter]:
    """An invisible marker per tile centre (hover and click) and the channel number on each tile.

    A marker, not the heatmap, answers the pointer: plotly's click-to-select skips heatmap traces
    (no selectPoints), and with no hover cut-off the nearest centre wins, i.e. the tile under it.
    """
    h, w = mosaic.tile
    step_y, step_x = h + mosaic.pad, w + mosaic.pad
    r, c = np.divmod(np.arange(mosaic.rows * mosaic.cols), mosaic.cols)
    show = [i for i, s in enumerate(mosaic.labels) if s]
    hover = "%{text}"
    custom = None
    if tile_values is not None:
        custom = np.asarray(tile_values, dtype=float)[: len(show)].tolist()
        hover += "<br>mean %{customdata:.3g}"
    invisible = dict(marker=dict(opacity=0))
    markers = go.Scatter(
        x=(c[show] * step_x + (w - 1) / 2).tolist(),
        y=(r[show] * step_y + (h - 1) / 2).tolist(),
        text=[f"{hover_prefix}{mosaic.labels[i]}" for i in show],
        customdata=custom,
        mode="markers",
        marker=dict(size=max(8, min(60, 600 // max(mosaic.cols, 1))), opacity=0, color="black"),
        selected=invisible,
        unselected=invisible,
        hovertemplate=hover + "<extra></extra>",
        showlegend=False,
        name="tiles",
    )
    labels = go.Scatter(
        x=(c[show] * step_x).tolist(),
        y=(r[show] * step_y).tolist(),
        text=list(label_texts) if label_texts is not None else [mosaic.labels[i] for i in show],
        mode="text",
        textposition="bottom right",
        textfont=dict(color=label_colors(mosaic, colorscale, show), size=11),
        hoverinfo="skip",
        showlegend=False,
        name="labels",
    )
    return [markers, labels]


def _column_titles(mosaic: Mosaic, titles: Sequence[str]) -> list[dict[str, object]]:
    """Annotations above each tile column, at paper y = 1: an annotation at a data y outside the
    axis range is not drawn."""
    w = mosaic.tile[1]
    return [
        dict(
            x=j * (w + mosaic.pad) + (w - 1) / 2,
            y=1,
            xref="x",
            yref="paper",
            text=label,
            showarrow=False,
            yanchor="bottom",
            font=dict(size=13),
            name="column title",
        )
        for j, label in enumerate(titles)
    ]


def grid_figure(
    maps: np.ndarray, channels: Sequence[int], *, title: str = "", cols: int | None = None
) -> go.Figure:
    """The channel grid of one image: ``maps`` ``(C, H, W)``, the chosen ``channels`` in order."""
    channels = [int(c) for c in channels]
    chosen = maps[channels]
    mosaic = tile_maps(chosen, [str(c) for c in channels], cols=cols)
    return mosaic_figure(mosaic, title=title, tile_values=chosen.mean(axis=(1, 2)))


def block_figure(
    branch: np.ndarray,
    shortcut: np.ndarray | None,
    output: np.ndarray,
    channels: Sequence[int],
    *,
    title: str = "",
) -> go.Figure:
    """F(x), shortcut and output side by side (columns) for the same channels (rows), one scale.

    Args:
        branch, shortcut, output: ``(C, H, W)`` maps of one image; ``shortcut`` None in a plain block.
        channels: the channels to show, one row each.
    """
    channels = [int(c) for c in channels]
    missing = np.full_like(branch[channels[0]], np.nan)
    tiles, labels = [], []
    for ch in channels:
        for kind, maps in (("F(x)", branch), ("shortcut", shortcut), ("output", output)):
            tiles.append(maps[ch] if maps is not None else missing)
            labels.append(f"{kind} · channel {ch}" if maps is not None else "")
    mosaic = tile_maps(np.stack(tiles), labels, cols=3, symmetric=True)
    # The label trace has a point per labelled tile (a plain block's empty shortcut tiles have none):
    # each row's channel goes on its first tile only.
    shown = [i for i, label in enumerate(mosaic.labels) if label]
    texts = [f"ch {channels[i // 3]}" if i % 3 == 0 else "" for i in shown]
    extra = []
    if shortcut is None:  # say why the middle column is empty, on every row
        h, w = mosaic.tile
        extra.append(
            go.Scatter(
                x=[(w + mosaic.pad) + (w - 1) / 2] * len(channels),
                y=[k * (h + mosaic.pad) + (h - 1) / 2 for k in range(len(channels))],
                text=["no shortcut:<br>nothing added"] * len(channels),
                mode="text",
                textfont=dict(color="#555", size=11),
                hoverinfo="skip",
                showlegend=False,
                name="missing",
            )
        )
    return mosaic_figure(
        mosaic,
        title=title,
        colorscale="RdBu_r",
        hover_prefix="",
        column_titles=list(BLOCK_COLUMNS if shortcut is not None else PLAIN_BLOCK_COLUMNS),
        label_texts=texts,
        extra_traces=extra,
    )


def channel_figure(
    view: np.ndarray, channel_map: np.ndarray, channel: int, *, alpha: float = 0.55
) -> go.Figure:
    """One channel large (left) and overlaid on the input as the network sees it (right).

    Args:
        view: ``(H, W, 3)`` uint8 input image after resize and crop.
        channel_map: ``(h, w)`` activation of the channel; upsampled to ``(H, W)`` for the overlay.
    """
    # Two panels laid out by hand in one go.Figure call: make_subplots and the update_* calls took
    # several times as long as the figure itself.
    left, right = [0.0, 0.42], [0.54, 1.0]
    titles = [
        dict(text=text, x=sum(dom) / 2, y=1.0, xref="paper", yref="paper", xanchor="center",
             yanchor="bottom", showarrow=False, font=dict(size=16))
        for text, dom in ((f"channel {channel}", left), ("over the input", right))
    ]  # fmt: skip
    heatmap = go.Heatmap(
        z=channel_map,
        colorscale="Viridis",
        colorbar=dict(thickness=12, x=0.46),
        hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>",
    )
    picture = go.Image(
        source=_png_uri(overlay(view, channel_map, alpha=alpha)), hoverinfo="skip", xaxis="x2", yaxis="y2"
    )
    hidden = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain")
    layout = dict(
        height=380,
        margin=dict(l=10, r=10, t=40, b=10),
        annotations=titles,
        xaxis=dict(domain=left, **hidden),
        yaxis=dict(autorange="reversed", scaleanchor="x", **hidden),
        xaxis2=dict(domain=right, **hidden),
        yaxis2=dict(scaleanchor="x2", **hidden),
    )
    return go.Figure(data=[heatmap, picture], layout=layout)


def _png_uri(rgb: np.ndarray) -> str:
    """A ``data:`` URI of an RGB uint8 array: a few tens of KB instead of a 150,000-number array."""
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def overlay(view: np.ndarray, channel_map: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """``(H, W, 3)`` uint8: the map, min-max scaled, upsampled bilinearly and colored, over ``view``."""
    from PIL import Image

    m = np.asarray(channel_map, np.float32)
    lo, hi = float(m.min()), float(m.max())
    q = np.zeros(m.shape, np.uint8) if hi <= lo else np.rint((m - lo) * (TOP / (hi - lo))).astype(np.uint8)
    big = np.asarray(Image.fromarray(q).resize((view.shape[1], view.shape[0]), Image.Resampling.BILINEAR))
    colored = _lut("Viridis")[big].astype(np.float32)
    return np.rint(view.astype(np.float32) * (1 - alpha) + colored * alpha).astype(np.uint8)


def mosaic_png(mosaic: Mosaic, *, colorscale: str = "Viridis", min_tile: int = 64) -> bytes:
    """The mosaic as a PNG, colored like the figure, tiles upscaled to ``min_tile`` px, labelled."""
    from PIL import Image, ImageDraw

    rgb = _lut(colorscale)[mosaic.z]
    h, w = mosaic.tile
    factor = max(1, int(np.ceil(min_tile / max(1, min(h, w)))))
    im = Image.fromarray(rgb, "RGB")
    if factor > 1:
        im = im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(im)
    for i, label in enumerate(mosaic.labels):
        if label:
            r, c = divmod(i, mosaic.cols)
            x, y = c * (w + mosaic.pad) * factor + 2, r * (h + mosaic.pad) * factor + 1
            draw.text((x, y), label, fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)  # speed over size: this runs when the user clicks
    return buf.getvalue()


_STAT_PANELS = (
    ("mean", "mean of the block output"),
    ("std", "standard deviation"),
    ("zero_fraction", "fraction of zeros after ReLU"),
    ("branch_ratio", "||F(x)|| / ||x||"),
)


def depth_figure(*stats: object) -> go.Figure:
    """Block statistics along the depth, one line per network (residual and plain twin overlaid).

    Args:
        *stats: :class:`resviz.analysis.features.DepthStats` (or anything with the same attributes).
    """
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in _STAT_PANELS], shared_xaxes=True)
    colors = {False: "#1f77b4", True: "#d62728"}  # residual blue, plain red
    for s in stats:
        plain = bool(s.plain)  # type: ignore[attr-defined]
        name = s.label or ("plain" if plain else "residual")  # type: ignore[attr-defined]
        blocks = list(s.blocks)  # type: ignore[attr-defined]
        x = list(range(1, len(blocks) + 1))
        for i, (attr, _) in enumerate(_STAT_PANELS):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=np.asarray(getattr(s, attr), dtype=float).tolist(),
                    customdata=blocks,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=i == 0,
                    line=dict(color=colors[plain], dash="dot" if plain else "solid"),
                    marker=dict(size=4),
                    hovertemplate=f"%{{customdata}}<br>{attr}: %{{y:.3g}}<extra>{name}</extra>",
                ),
                row=i // 2 + 1,
                col=i % 2 + 1,
            )
    ratios = [v for s in stats for v in np.asarray(s.branch_ratio, float)]  # type: ignore[attr-defined]
    if ratios and min(ratios) > 0:
        fig.update_yaxes(**log_axis(ratios), row=2, col=2)
    fig.update_xaxes(title_text="block (input to output)", row=2)
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    return fig
