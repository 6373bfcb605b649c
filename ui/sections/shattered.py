"""Why it works: shattered gradients (Balduzzi et al. 2017), plain against residual.

Two parts: their 1D toy setting at initialization, depth by depth (fast, kept per depth), and the
sidebar's model with its counterpart on a line between two images (trained runs use two held-out
images of their dataset).
"""

from __future__ import annotations

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.section_kit import chart, cost, run_controls, run_points

PAPER = (
    "Balduzzi, Frean, Leary, Lewis, Ma and McWilliams, *The Shattered Gradients Problem: If resnets "
    "are the answer, then what is the question?*, ICML 2017 ([arXiv:1702.08591](https://arxiv.org/abs/1702.08591))"
)
EXPLANATION = (
    "Walk along a line of inputs and watch the gradient of the output with respect to the input. "
    "In a shallow network it changes smoothly. Balduzzi et al. found that in a deep *plain* network it "
    "**shatters**: neighbouring inputs get unrelated gradients, like white noise, so a gradient step "
    "says little about nearby inputs. In a residual network it stays correlated (brown noise), decaying "
    "far more slowly with depth. The measure is the autocorrelation of the gradient along the line: "
    "its value at lag 1 (neighbouring points) is near 1 for smooth gradients and near 0 for white noise."
)
TOY_DEPTHS = [1, 2, 3, 5, 10, 20, 30, 50, 75, 100, 150, 200]
SECONDS_PER_LAYER = 0.01  # toy nets, width 200, 256 points, one network: measured on a 2-core CPU


def render() -> None:
    st.subheader("Shattered gradients")
    st.markdown(EXPLANATION)
    st.caption(f"Paper: {PAPER}.")
    from resviz.errors import ResvizError

    try:
        _toy()
        st.divider()
        _sidebar_line()
    except ResvizError as exc:
        st.error(markdown_text(exc))


# --------------------------------------------------------------------------------------------------
# The 1D toy setting


@st.cache_data(show_spinner=False, max_entries=128)
def _toy_depth(settings, depth: int):  # type: ignore[no-untyped-def]
    from resviz.analysis.shattered import toy_depth

    return toy_depth(depth, settings)


def _toy_settings():  # type: ignore[no-untyped-def]
    from resviz.analysis.shattered import ToySettings

    st.markdown("**At initialization, in their 1D setting**")
    c1, c2, c3, c4, c5 = st.columns([3, 1, 1, 1, 1])
    depths = c1.multiselect(
        "Depths (hidden layers)", TOY_DEPTHS, default=[2, 5, 10, 20, 50], key=state.SHAT_DEPTHS
    )
    width = c2.selectbox("Width", [50, 100, 200, 400], index=2, key=state.SHAT_WIDTH)
    repeats = c3.number_input("Nets per depth", 1, 16, 3, key=state.SHAT_REPEATS)
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key=state.SHAT_SEED)
    bn = c5.toggle("BatchNorm", value=True, key=state.SHAT_BN)
    st.caption(
        "Fully connected ReLU networks with He weights on 256 inputs evenly spaced in [-2, 2]; the "
        "residual net adds `h +` around each layer, `h + W relu(BN(h))`, and its plain twin has the "
        "same weights without it. BatchNorm uses the statistics of the line, frozen, so that each "
        "point's gradient is the derivative of one fixed function."
    )
    return ToySettings(width=int(width), batchnorm=bool(bn), repeats=int(repeats), seed=int(seed)), depths


def _toy() -> None:
    from resviz.analysis.shattered import sweep_from_points, sweep_rows, toy_setting

    settings, depths = _toy_settings()
    if not depths:
        st.info("Pick at least one depth.")
        return
    depths = sorted(depths)
    est = SECONDS_PER_LAYER * 2 * sum(depths) * settings.repeats * (settings.width / 200) ** 2
    st.caption(f"Cost: {2 * settings.repeats * len(depths)} networks, roughly {est:.0f} s on a 2-core CPU.")
    go = run_controls(state.SHAT_RUN, state.SHAT_STOP, state.SHAT_PENDING)
    done, missing = run_points(
        [(settings, d) for d in depths],
        lambda item: _toy_depth(*item),
        store_key=state.SHAT_POINTS,
        go=go,
        describe=lambda item: f"depth {item[1]}",
    )
    if not done:
        st.info("Press **Run**: each depth is kept, so adding one later computes only that one.")
        return
    if missing:
        st.info(f"{missing} of {len(depths)} depths still to compute: press **Run** to continue.")
    sweep = sweep_from_points([r for _, r in done], [d for (_, d), _ in done], toy_setting(settings))
    _sweep_charts(sweep, sweep_rows(sweep))


def _sweep_charts(sweep, rows) -> None:  # type: ignore[no-untyped-def]
    from resviz.analysis.shattered import acf_rows
    from resviz.plots import shattered as sp

    c1, c2 = st.columns(2)
    with c1:
        chart(sp.lag1_figure(sweep), f"{state.SHAT_CHART}_lag1", "shattered_lag1_vs_depth", rows=rows)
    depths = [int(d) for d in sweep.depths]
    with c2:
        show = st.selectbox("Traces at depth", depths, index=len(depths) - 1, key=state.SHAT_SHOW)
        i = depths.index(show)
        lines = (sweep.residual[i], sweep.plain[i])
        chart(
            sp.acf_figure(lines),
            f"{state.SHAT_CHART}_acf",
            f"shattered_acf_depth{show}",
            rows=acf_rows(lines),
        )
    chart(
        sp.trace_figure(lines, x_title="input x"),
        f"{state.SHAT_CHART}_trace",
        f"shattered_gradient_depth{show}",
        arrays=lambda: {"x": lines[0].t, "residual": lines[0].trace, "plain": lines[1].trace},
    )
    r, p = sweep.residual_lag1[-1], sweep.plain_lag1[-1]
    st.caption(
        f"At depth {depths[-1]}: lag-1 autocorrelation {r:.2f} residual, {p:.2f} plain (the mean over "
        "the networks of each depth; error bars show their spread). "
        "The paper: plain nets decorrelate exponentially with depth, residual nets with BatchNorm "
        "only like a power of it."
    )


# --------------------------------------------------------------------------------------------------
# The sidebar's model on a line between two images


@st.cache_data(show_spinner=False, max_entries=8)
def _line(choice_key: str, points: int, _loaded):  # type: ignore[no-untyped-def]
    """Cached per sidebar choice (``choice_key``); ``_loaded`` is the shared model, not hashed."""
    from resviz.analysis.shattered import line_pair

    return line_pair(_loaded, points=points)


def _sidebar_line() -> None:
    from resviz.analysis.pairs import counterpart_name, twin_run_path
    from resviz.analysis.shattered import acf_rows, line_rows
    from resviz.plots import shattered as sp
    from ui.models import current_choice, current_model, show_model_banner

    loaded = current_model()
    other = counterpart_name(bool(loaded.config.skip), twin_run_path(loaded) is not None)
    st.markdown(f"**The sidebar's model and its {other}, on a line between two images**")
    show_model_banner(loaded)
    points = st.selectbox("Points along the line", [64, 128, 256], index=2, key=state.SHAT_LINE_POINTS)
    st.caption(_line_cost(loaded, int(points)))
    go = run_controls(state.SHAT_LINE_RUN, state.SHAT_LINE_STOP, state.SHAT_LINE_PENDING)
    choice = current_choice()
    done, _ = run_points(
        [(choice, int(points))],
        lambda item: _line(repr(item[0]), item[1], loaded),
        store_key=state.SHAT_LINES,
        go=go,
        describe=lambda item: f"{loaded.name} and its counterpart",
    )
    if not done:
        st.info("Press **Run** to measure this model and its counterpart.")
        return
    pair = _named(done[0][1], loaded)
    st.caption(f"Measured: {markdown_text(pair.source)}; the gradient of {pair.residual.output}.")
    m1, m2 = st.columns(2)
    m1.metric(f"{pair.residual.model}: lag-1 autocorrelation", f"{pair.residual.lag1:.3f}")
    m2.metric(f"{pair.plain.model}: lag-1 autocorrelation", f"{pair.plain.lag1:.3f}")
    lines = (pair.residual, pair.plain)
    c1, c2 = st.columns(2)
    with c1:
        fig = sp.trace_figure(lines, x_title="from image a (0) to image b (1)")
        chart(fig, f"{state.SHAT_CHART}_line_trace", "shattered_line_gradient", rows=line_rows(pair))
    with c2:
        chart(
            sp.acf_figure(lines), f"{state.SHAT_CHART}_line_acf", "shattered_line_acf", rows=acf_rows(lines)
        )
    st.caption(
        "The traces show one coordinate of the gradient (the centre pixel of the first channel); the "
        "autocorrelation uses every coordinate. BatchNorm runs in eval mode with each model's own "
        "running statistics."
    )


def _named(pair, loaded):  # type: ignore[no-untyped-def]
    """The pair with its output named by class ("the logit of square"), not by index ("logit 2")."""
    import dataclasses

    words = pair.residual.output.split()
    if len(words) != 2 or words[0] != "logit" or not words[1].isdigit():
        return pair
    output = f"the logit of {loaded.class_name(int(words[1]))}"
    return dataclasses.replace(
        pair,
        residual=dataclasses.replace(pair.residual, output=output),
        plain=dataclasses.replace(pair.plain, output=output),
    )


def _line_cost(loaded, points: int) -> str:  # type: ignore[no-untyped-def]
    from resviz.analysis.shattered import RANDOM_IMAGE_SIZE
    from resviz.analysis.summary import summarize

    size = (
        loaded.preprocessing.crop
        if loaded.weights == "run"
        else min(loaded.preprocessing.crop, RANDOM_IMAGE_SIZE)
    )
    from resviz.errors import ResvizError

    try:
        macs = summarize(loaded.config, size).macs
    except ResvizError:  # the summary is only for the estimate; the analysis itself may still run
        return f"Cost: {points} forward and backward passes of each network."
    total = 3 * macs * points * 2  # forward + backward (about twice the forward), two networks
    return f"Cost: {points} forward and backward passes of each network at {size}x{size}, {cost(total)}."
