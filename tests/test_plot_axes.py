"""Log axes labelled for people, and the architecture figures' polish (issue 11, items 3 and 4)."""

from __future__ import annotations

import math
import re
from itertools import pairwise

import numpy as np
import pytest

from resviz.analysis.layout import block_layout
from resviz.models import get_config
from resviz.plots.architecture import block_figure, comparison_figure, network_figure
from resviz.plots.axes import log_axis, log_ticks, si_label, tick_label


def _value(label: str) -> float:
    """A tick label read back as a number: "2×10<sup>-5</sup>", "10<sup>3</sup>", "0.02", "11.7M"."""
    m = re.fullmatch(r"(?:([\d.]+)×)?10<sup>(-?\d+)</sup>", label)
    if m:
        return float(m.group(1) or 1) * 10.0 ** int(m.group(2))
    m = re.fullmatch(r"([\d.]+)([KMG]?)", label)
    assert m, label
    return float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (1e-3, 10.0, [1e-3, 1e-2, 0.1, 1.0, 10.0]),  # several decades: powers of ten
        (0.3, 40.0, [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]),  # two decades: 1-2-5
        (0.42, 0.88, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),  # under one decade: every digit
        (0.6, 1.4, [0.6, 0.8, 1.0, 1.2, 1.4]),  # digits would leave 1..1.4 bare: evenly spaced
        (2.2, 2.4, [2.2, 2.25, 2.3, 2.35, 2.4]),  # a sliver: evenly spaced round values
    ],
)
def test_log_ticks_are_round_values_inside_the_data(lo, hi, expected):
    assert log_ticks(lo, hi) == pytest.approx(expected)


def test_many_decades_get_at_most_eight_ticks_a_whole_number_of_decades_apart():
    ticks = log_ticks(1e-30, 1e30)
    (step,) = {round(math.log10(b) - math.log10(a), 9) for a, b in pairwise(ticks)}
    assert len(ticks) <= 8 and step == int(step) >= 1 and ticks[0] == 1e-30


@pytest.mark.parametrize(
    "values", [[1e-7, 3e-2, None, float("nan"), 0.0], [2.3, 2.31, 2.4], [0.02, 2000], [8, 152], [5.0]]
)
def test_every_log_tick_label_is_the_whole_value(values):
    """The bug: plotly's own log ticks label 20, 30, ... 90 as bare "2", "3", ... "9"."""
    axis = log_axis(values)
    assert axis["type"] == "log" and axis["tickmode"] == "array"
    for v, text in zip(axis["tickvals"], axis["ticktext"]):
        assert _value(text) == pytest.approx(v, rel=1e-3), (v, text)


def test_one_notation_per_axis_and_nothing_to_show_is_just_log():
    assert log_axis([1e-6, 1.0])["ticktext"][-1] == "1"
    assert all("<sup>" in t for t in log_axis([1e-6, 1e-2])["ticktext"])
    assert log_axis([None, -1.0, 0.0, float("inf")]) == {"type": "log"}
    assert tick_label(0.02) == "0.02" and tick_label(2e-5) == "2×10<sup>-5</sup>"
    assert [si_label(v) for v in (11_689_512, 1.814e9, 50, 138_357_544)] == ["11.7M", "1.81G", "50", "138M"]


def _summary(label, depth, params, macs):
    from resviz.analysis.summary import ModelSummary

    return ModelSummary(label, (3, 224, 224), (), (), params=params, macs=macs, adds=0, depth=depth)


def test_peer_bars_are_horizontal_with_readable_labels_and_labelled_log_axes():
    rows = [("resnet18", 18, 11_689_512, 1_814_073_344), ("vgg16", 16, 138_357_544, 15_470_264_320)]
    fig = comparison_figure([_summary(*r) for r in rows], highlight=("resnet18",))
    assert [t.orientation for t in fig.data] == ["h"] * 3
    assert list(fig.data[1].text) == ["11.7M", "138M"] and list(fig.data[0].text) == ["18", "16"]
    assert fig.layout.uniformtext.minsize >= 10 and fig.layout.uniformtext.mode == "show"
    for axis in (fig.layout.xaxis, fig.layout.xaxis2, fig.layout.xaxis3):
        assert axis.type == "log" and axis.ticktext
        assert math.log10(max(axis.tickvals)) <= axis.range[1]  # the ticks are inside the drawn range
    assert fig.layout.yaxis.type == "category"


def test_block_figure_names_the_shortcut_it_draws():
    def texts(fig):
        return " ".join(a.text or "" for a in fig.layout.annotations)

    identity, projection = block_figure("basic"), block_figure("basic", projection=True)
    assert "identity" in texts(identity) and "relu(F(x) + x)" in texts(identity)
    assert "identity" not in texts(projection) and "1x1 conv" in texts(projection)
    assert "relu(F(x) + W<sub>s</sub>x)" in texts(projection)
    assert "shortcut" not in texts(block_figure("basic", skip=False))


@pytest.mark.parametrize(
    ("name", "knobs", "legend"),
    [
        ("resnet18", {}, ["identity shortcut", "projection shortcut"]),
        ("resnet20", {}, ["identity shortcut", "padding shortcut"]),
        ("resnet20", {"shortcut": "C"}, ["projection shortcut"]),
        ("plain20", {}, []),
    ],
)
def test_network_legend_lists_only_the_shortcuts_drawn(name, knobs, legend):
    fig = network_figure(block_layout(get_config(name, **knobs)))
    assert [t.name for t in fig.data if t.name] == legend
    plain_note = any("no shortcuts" in (a.text or "") for a in fig.layout.annotations)
    assert plain_note == (not legend)


def test_gradient_figures_label_every_log_tick_and_reach_their_ratio_line():
    import plotly.graph_objects as go

    from resviz.plots.gradients import _layout

    fig = go.Figure(go.Scatter(y=[3e-4, 2e-2, np.nan]))
    fig.add_hline(y=1.0)  # sweep_figure's "ratio 1" line
    axis = _layout(fig, "t", "x", "y").layout.yaxis
    assert axis.type == "log" and max(axis.tickvals) == 1.0
    assert all(_value(t) == pytest.approx(v) for v, t in zip(axis.tickvals, axis.ticktext))
