"""Why it works: the effective receptive field (Luo et al. 2016), plain against residual.

Two parts: the sidebar's model and its counterpart at a chosen layer (heatmaps side by side), and
fresh CIFAR twins at initialization against depth (ERF size with the theoretical field).
"""

from __future__ import annotations

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.section_kit import chart, cost, run_controls, run_points

PAPER = (
    "Luo, Li, Urtasun and Zemel, *Understanding the Effective Receptive Field in Deep Convolutional "
    "Neural Networks*, NeurIPS 2016 ([arXiv:1701.04128](https://arxiv.org/abs/1701.04128))"
)
EXPLANATION = (
    "A unit deep in a network can *see* a large square of the input: its theoretical receptive field, "
    "which grows linearly with depth. Luo et al. measured how much of it the unit actually uses: the "
    "gradient of the unit with respect to the input, its magnitude averaged over inputs. The result, "
    "the **effective receptive field**, is a roughly Gaussian bump that fills only a fraction of the "
    "square, grows like the square root of the depth, and is *smaller* with skip connections: a "
    "residual net is in part an ensemble of shallower paths (Veit et al. 2016, the Paths tab), and "
    "shallow paths see less. The size below is the side of the smallest square around the unit's "
    "centre that holds the chosen share of the gradient."
)
SWEEP_DEPTHS = [8, 14, 20, 32, 44, 56, 110]


def render() -> None:
    st.subheader("Effective receptive field")
    st.markdown(EXPLANATION)
    st.caption(f"Paper: {PAPER}.")
    from resviz.errors import ResvizError

    try:
        mass = st.slider(
            "Share of the gradient the ERF square holds",
            0.5,
            0.99,
            0.95,
            0.01,
            key=state.ERF_MASS,
            help="Changes the sizes and squares only; nothing is recomputed.",
        )
        _sidebar_pair(float(mass))
        st.divider()
        _sweep(float(mass))
    except ResvizError as exc:
        st.error(markdown_text(exc))


# --------------------------------------------------------------------------------------------------
# The sidebar's model and its counterpart


@st.cache_data(show_spinner=False, max_entries=16)
def _pair(choice_key: str, layer: str, n: int, _loaded):  # type: ignore[no-untyped-def]
    """Cached per sidebar choice (``choice_key``); ``_loaded`` is the shared model, not hashed."""
    from resviz.analysis.erf import erf_pair

    return erf_pair(_loaded, layer, n=n)


def _layers(loaded) -> list[str]:  # type: ignore[no-untyped-def]
    """The stem, every stage and every block: the names both twins share."""
    names = ["conv1"]
    for stage in loaded.model.feature_info:
        names += [stage.name, *stage.blocks]
    return names


def _default_layer(loaded, layers: list[str]) -> str:  # type: ignore[no-untyped-def]
    """The deepest layer whose theoretical field fits the model's input (no clipped squares)."""
    from resviz.analysis.erf import MAX_RANDOM_SIZE, theoretical_field

    # The inputs erf_inputs will use: the run's own images, else random ones of at most this size.
    size = (
        loaded.preprocessing.crop
        if loaded.weights == "run"
        else min(loaded.preprocessing.crop, MAX_RANDOM_SIZE)
    )
    fitting = [name for name in layers if theoretical_field(loaded.model, name).size <= size]
    return fitting[-1] if fitting else layers[0]


def _sidebar_pair(mass: float) -> None:
    from resviz.analysis.erf import map_rows
    from resviz.plots import erf as ep
    from ui.models import current_choice, current_model, show_model_banner

    st.markdown("**The sidebar's model and its counterpart**")
    loaded = current_model()
    show_model_banner(loaded)
    layers = _layers(loaded)
    default = _default_layer(loaded, layers)
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox("Layer", layers, index=layers.index(default), key=state.ERF_LAYER)
    n = c2.selectbox("Inputs averaged", [8, 16, 32, 64], index=2, key=state.ERF_N)
    st.caption(
        f"Cost: {n} forward passes up to {layer} and {n} backward passes from its centre unit, for "
        "each network (a few seconds for small models on a CPU, longer for ImageNet-size ones)."
    )
    go = run_controls(state.ERF_RUN, state.ERF_STOP, state.ERF_PENDING)
    choice = current_choice()
    done, _ = run_points(
        [(choice, layer, int(n))],
        lambda item: _pair(repr(item[0]), item[1], item[2], loaded),
        store_key=state.ERF_PAIRS,
        go=go,
        describe=lambda item: f"{loaded.name} and its counterpart at {item[1]}",
    )
    if not done:
        st.info("Press **Run** to measure this model and its counterpart.")
        return
    pair = done[0][1]
    maps = (pair.residual, pair.plain)
    st.caption(
        f"Measured: {markdown_text(pair.source)}. "
        "BatchNorm in eval mode with each model's running statistics."
    )
    cols = st.columns(3)
    cols[0].metric("Theoretical receptive field", f"{pair.residual.theoretical} px")
    for col, m in zip(cols[1:], maps):
        col.metric(f"{m.model}: ERF ({mass:.0%})", f"{m.size(mass)} px")
    chart(
        ep.heatmaps_figure(maps, mass=mass),
        f"{state.ERF_CHART}_pair",
        f"erf_{layer}",
        rows=[*map_rows(pair.residual), *map_rows(pair.plain)],
        arrays=lambda: {m.model: m.map for m in maps},
    )
    if pair.residual.theoretical > max(pair.residual.map.shape):
        st.caption("The theoretical field is larger than the input here: the dashed square is clipped.")


# --------------------------------------------------------------------------------------------------
# CIFAR twins against depth


@st.cache_data(show_spinner=False, max_entries=64)
def _depth(depth: int, size: int, n: int):  # type: ignore[no-untyped-def]
    from resviz.analysis.erf import erf_depth

    return erf_depth(depth, size=size, n=n)


def _sweep_macs(depths: list[int], size: int, n: int) -> float:
    """Forward and backward (3x a forward) of stem + 2 convs a block, 16 channels, both twins."""
    convs = sum(1 + 2 * (d - 2) // 6 for d in depths)
    return 2 * n * 3 * convs * size * size * 16 * 16 * 9


def _sweep(mass: float) -> None:
    from resviz.analysis.erf import sweep_from_maps, sweep_rows, sweep_size
    from resviz.plots import erf as ep

    st.markdown("**Against depth, at initialization**")
    depths = st.multiselect("CIFAR depths", SWEEP_DEPTHS, default=[8, 20, 56], key=state.ERF_SWEEP_DEPTHS)
    if not depths:
        st.info("Pick at least one depth.")
        return
    depths = sorted(depths)
    size, n = sweep_size(depths), 16
    st.caption(
        f"Fresh CIFAR twins (Kaiming, BatchNorm with the inputs' statistics, seed 0), the centre unit "
        f"of the first stage's output, {n} random {size}x{size} inputs (large enough to hold the "
        f"deepest field). Cost: the first stage of {2 * len(depths)} networks, "
        f"{cost(_sweep_macs(depths, size, n))}."
    )
    go = run_controls(state.ERF_SWEEP_RUN, state.ERF_SWEEP_STOP, state.ERF_SWEEP_PENDING)
    done, missing = run_points(
        [(d, size, n) for d in depths],
        lambda item: _depth(*item),
        store_key=state.ERF_SWEEP_POINTS,
        go=go,
        describe=lambda item: f"depth {item[0]}",
    )
    if not done:
        st.info("Press **Run**: each depth is kept, so adding one later computes only the new ones.")
        return
    if missing:
        st.info(f"{missing} of {len(depths)} depths still to compute: press **Run** to continue.")
    sweep = sweep_from_maps(
        [d for (d, _, _), _ in done],
        [p for _, (p, _) in done],
        [r for _, (_, r) in done],
        size=size,
        n=n,
        seed=0,
    )
    chart(
        ep.size_figure(sweep, mass=mass),
        f"{state.ERF_CHART}_sweep",
        "erf_vs_depth",
        rows=sweep_rows(sweep, mass),
    )
    deepest = len(sweep.depths) - 1
    maps = (sweep.residual[deepest], sweep.plain[deepest])
    chart(
        ep.heatmaps_figure(maps, mass=mass),
        f"{state.ERF_CHART}_sweep_maps",
        f"erf_depth{int(sweep.depths[deepest])}",
        arrays=lambda: {m.model: m.map for m in maps},
    )
