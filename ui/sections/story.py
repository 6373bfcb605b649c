"""Why it works, opening section: the story people tell about skip connections, against the measurement.

The common story says shortcuts fix vanishing gradients. He et al. (2015, section 4.1) say their
BatchNorm-trained plain nets do not suffer from vanishing gradients; we measure it live here with
:mod:`resviz.analysis.gradients` (cached), link to the Gradient Flow page with the same settings,
then point to the explanations the other tabs measure.
"""

from __future__ import annotations

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.section_kit import chart, run_controls, run_points

GRAD_PAGE = "pages/gradient_flow.py"
DEPTH = 56
SWEEP_DEPTHS = (20, 32, 44, 56, 110)
HE_2015 = "[He, Zhang, Ren and Sun 2015](https://arxiv.org/abs/1512.03385), section 4.1"
# The Gradient Flow page's widgets for the measurement quoted here (its defaults, made explicit so a
# user who changed them gets exactly this view back).
GRAD_SETTINGS = {
    state.GRAD_MODEL_SOURCE: "seed",
    state.GRAD_FAMILY: "cifar",
    state.GRAD_DEPTH_CIFAR: DEPTH,
    state.GRAD_STAGES: "",
    state.GRAD_INIT: "kaiming",
    state.GRAD_ZERO_INIT: False,
    state.GRAD_BRANCH_SCALE: 1.0,
    state.GRAD_SOURCE: "random",
    state.GRAD_LABELS: "random",
    state.GRAD_BATCH: 32,
    state.GRAD_SIZE: 32,
    state.GRAD_SEED: 0,
}
EXPLANATIONS = (
    (
        "Lesion study",
        "Veit, Wilber and Belongie 2016",
        "https://arxiv.org/abs/1605.06431",
        "delete one block of a trained ResNet and it barely notices; delete one layer of a plain net and it "
        "collapses: the residual net behaves like an ensemble of many paths.",
    ),
    (
        "Paths",
        "Veit et al. 2016",
        "https://arxiv.org/abs/1605.06431",
        "most of those paths are short, and the gradient during training comes mostly from paths far "
        "shallower than the network.",
    ),
    (
        "Loss landscape",
        "Li, Xu, Taylor, Studer and Goldstein 2018",
        "https://arxiv.org/abs/1712.09913",
        "around trained weights the residual net's loss is a smooth bowl, the plain net's is chaotic.",
    ),
    (
        "Shattered gradients",
        "Balduzzi et al. 2017",
        "https://arxiv.org/abs/1702.08591",
        "along a line of inputs a deep plain net's gradient looks like white noise; a residual net's stays "
        "correlated.",
    ),
    (
        "Receptive field",
        "Luo, Li, Urtasun and Zemel 2016",
        "https://arxiv.org/abs/1701.04128",
        "how much of the input a unit really uses, and how skips change it.",
    ),
)


def render() -> None:
    st.subheader("The story, and what we measure")
    from resviz.errors import ResvizError

    try:
        on, off = _measure()
        _side_by_side(on, off)
        _links()
        st.divider()
        _sweep()
        st.divider()
        _pointers()
    except ResvizError as exc:
        st.error(markdown_text(exc))


@st.cache_data(show_spinner=False, max_entries=32)
def _profile(depth: int, batchnorm: bool, device: str):  # type: ignore[no-untyped-def]
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.gradients import twin_profile
    from resviz.analysis.twins import TwinSettings
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    return twin_profile(
        TwinSettings(depth=depth, batchnorm=batchnorm), BatchSettings(), device=device, split=False
    )


def _measure():  # type: ignore[no-untyped-def]
    device = st.session_state.get(state.DEVICE, "auto")
    with st.spinner(f"One forward and backward pass of each {DEPTH}-layer twin, with and without BatchNorm…"):
        return _profile(DEPTH, True, device), _profile(DEPTH, False, device)


def _side_by_side(on, off) -> None:  # type: ignore[no-untyped-def]
    c1, c2, c3 = st.columns(3)
    with c1, st.container(border=True):
        st.markdown("**The story**")
        st.markdown(
            "Most explainers: in a deep plain network the gradient *vanishes* on its way back to the "
            "first layers, so they stop learning; the shortcut gives the gradient a highway back."
        )
    with c2, st.container(border=True):
        st.markdown("**The paper**")
        st.markdown(
            f"{HE_2015}, on their plain nets trained with BatchNorm: the degradation problem "
            '"is unlikely to be caused by vanishing gradients"; the backward gradients "exhibit '
            'healthy norms". They suspect deep plain nets converge exponentially slowly instead.'
        )
    with c3, st.container(border=True):
        st.markdown("**Our measurement**")
        st.metric(
            f"{on.plain.model}, BatchNorm: first / last block gradient", f"{on.plain.first_last_ratio:.3g}"
        )
        st.metric(f"{off.plain.model}, no BatchNorm", f"{off.plain.first_last_ratio:.3g}")
        st.caption(
            f"Gradient norm at the first block's output over the last block's; above 1 it *grows* "
            f"toward the input. {on.residual.model} with BatchNorm: {on.residual.first_last_ratio:.3g}. "
            "CIFAR twins at initialization, Kaiming, seed 0, a batch of 32 random 32x32 images, train mode."
        )
    st.markdown(
        f"With BatchNorm the plain net's gradient does not vanish: it grows toward the input "
        f"(x{on.plain.first_last_ratio:.3g} over {DEPTH} layers). Only without BatchNorm does it shrink "
        f"(x{off.plain.first_last_ratio:.2g}). Vanishing gradients cannot be why BatchNorm-trained plain "
        "nets degrade; the other tabs measure explanations that survive."
    )


def _ask_gradient_flow(batchnorm: bool) -> None:
    """Button callback: set the Gradient Flow page's widgets (they are not on this page, so they
    take these values when it draws them) and ask the script to switch pages."""
    for key, value in GRAD_SETTINGS.items():
        st.session_state[key] = value
    st.session_state[state.GRAD_BN] = batchnorm
    st.session_state[state.WHY_STORY_SWITCH] = True


def _links() -> None:
    c1, c2, c3 = st.columns(3)
    for col, bn, key in ((c1, True, state.WHY_STORY_OPEN_BN), (c2, False, state.WHY_STORY_OPEN_NOBN)):
        col.button(
            f"Open Gradient Flow: {DEPTH} layers, {'BatchNorm' if bn else 'no BatchNorm'}",
            key=key,
            icon=":material/open_in_new:",
            on_click=_ask_gradient_flow,
            args=(bn,),
        )
    with c3:
        st.page_link(GRAD_PAGE, label="Gradient Flow as you left it", icon=":material/arrow_forward:")
    # switch_page is a no-op in a callback; the click's rerun comes here with the flag set.
    if st.session_state.pop(state.WHY_STORY_SWITCH, False):
        st.switch_page(GRAD_PAGE)


def _sweep() -> None:
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.depth_sweep import sweep_from_profiles, sweep_rows
    from resviz.analysis.twins import TwinSettings
    from resviz.plots import gradients as gp

    st.markdown(f"**Every depth, {SWEEP_DEPTHS[0]} to {SWEEP_DEPTHS[-1]} layers**")
    st.caption(
        f"{2 * len(SWEEP_DEPTHS)} twin pairs (BatchNorm on and off), one pass each: a few seconds on a "
        "CPU, most of it the 110-layer pairs. Kept once measured."
    )
    go = run_controls(state.WHY_STORY_RUN, state.WHY_STORY_STOP, state.WHY_STORY_PENDING)
    device = st.session_state.get(state.DEVICE, "auto")
    items = [(d, bn) for bn in (True, False) for d in SWEEP_DEPTHS]
    done, missing = run_points(
        items,
        lambda item: _profile(item[0], item[1], device),
        store_key=state.WHY_STORY_POINTS,
        go=go,
        describe=lambda item: f"{item[0]} layers, BatchNorm {'on' if item[1] else 'off'}",
    )
    if missing:
        more = f"{missing} of {len(items)} pairs still to measure: press **Run** to continue."
        st.info(more if done else "Press **Run** to measure every depth.")
        return
    batch = BatchSettings()
    cols = st.columns(2)
    for col, bn in zip(cols, (True, False)):
        pairs = [p for (_, b), p in done if b == bn]
        sweep = sweep_from_profiles(pairs, TwinSettings(batchnorm=bn), batch)
        fig = gp.sweep_figure(sweep)
        fig.update_layout(title=f"BatchNorm {'on' if bn else 'off'}: first / last block gradient norm")
        with col:
            name = f"story_gradient_ratio_{'bn' if bn else 'nobn'}"
            chart(fig, f"{state.WHY_STORY_CHART}_{'bn' if bn else 'nobn'}", name, rows=sweep_rows(sweep))


def _pointers() -> None:
    st.markdown("**What the measurements do support**")
    st.markdown(
        "He et al.'s own observation, the *degradation problem*, is real: a deeper plain net trains to a "
        "higher training error than a shallower one (watch it happen in the Training Lab). The tabs of "
        "this page test explanations of why shortcuts cure it:"
    )
    st.markdown("\n".join(f"- **{tab}** ([{who}]({url})): {what}" for tab, who, url, what in EXPLANATIONS))
    st.page_link(
        "pages/training_lab.py",
        label="Training Lab: the degradation problem, live",
        icon=":material/arrow_forward:",
    )
