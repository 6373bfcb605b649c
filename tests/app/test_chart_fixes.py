"""Issue 21, section 4, charts: the top-5 labels stay level and outside thin bars, the grid's row
titles sit on the left (not by the colour bar), the shattered trace's title fits and names the
class, and the peers' axes say they are logarithmic next to a linear top-1 panel."""

from __future__ import annotations

import numpy as np


def test_top_k_labels_are_level_and_outside_the_bars():
    from resviz.plots.attribution import top_k_figure

    fig = top_k_figure(["cat", "dog", "fox"], [0.9, 0.054, 0.046], target="cat")
    bar = fig.data[0]
    assert bar.textposition == "outside" and bar.textangle == 0 and bar.cliponaxis is False
    assert fig.layout.xaxis.range[1] >= 0.9 * 1.25  # room for the longest bar's label


def test_grid_row_titles_are_on_the_left():
    from resviz.plots.attribution import comparison_grid

    image = np.zeros((8, 8, 3), np.uint8)
    rows, cols = ["layer1", "layer2"], ["Grad-CAM", "LayerCAM"]
    cells = {(r, c): np.random.default_rng(0).random((8, 8)) for r in rows for c in cols}
    fig = comparison_grid(image, cells, rows, cols)
    notes = {a.text: a for a in fig.layout.annotations}
    for row in rows:
        assert notes[row].x == 0.0 and notes[row].xanchor == "right" and notes[row].textangle == -90
    assert all(notes[c].y > 0.9 for c in cols)  # column titles stay on top
    assert fig.layout.margin.l > 0


def test_shattered_trace_title_is_two_short_lines_and_names_the_class():
    from resviz.analysis.shattered import GradientLine, LinePair
    from resviz.plots.shattered import trace_figure
    from ui.sections.shattered import _named

    def line(model, residual):
        t = np.linspace(0, 1, 8)
        return GradientLine(model, residual, t, np.sin(t), np.ones(8), "logit 2")

    pair = LinePair(line("resnet8", True), line("plain8", False), "source")
    loaded = type("L", (), {"class_name": lambda self, i: ("circle", "ring", "square")[i]})()
    named = _named(pair, loaded)
    assert named.residual.output == named.plain.output == "the logit of square"
    title = trace_figure((named.residual, named.plain)).layout.title.text
    first, second = title.split("<br>")
    assert first == "Gradient of the logit of square along the line" and len(first) < 60
    assert "white noise (shattered)" in second


def test_peer_axes_say_log_scale_and_top1_is_linear():
    import math

    from resviz.analysis.summary import ModelSummary, published_top1
    from resviz.plots.architecture import comparison_figure

    rows = [("resnet18", 18, 11_689_512, 1_814_073_344), ("vgg16", 16, 138_357_544, 15_470_264_320)]
    summaries = [
        ModelSummary(n, (3, 224, 224), (), (), params=p, macs=m, adds=0, depth=d) for n, d, p, m in rows
    ]
    top1 = [published_top1(n) for n, *_ in rows]
    assert top1 == [69.758, 71.592]  # torchvision's IMAGENET1K_V1 metadata, no download
    fig = comparison_figure(summaries, highlight=("resnet18",), top1=top1)
    for axis in (fig.layout.xaxis, fig.layout.xaxis2, fig.layout.xaxis3):
        assert axis.type == "log" and axis.title.text == "log scale"
    assert fig.layout.xaxis4.type != "log" and "linear" in fig.layout.xaxis4.title.text
    assert list(fig.data[3].text) == ["69.8%", "71.6%"]
    assert not math.isnan(fig.data[3].x[0])
    assert published_top1("resnet56") is None  # not a torchvision model: no number invented
