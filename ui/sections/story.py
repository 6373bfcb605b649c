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
PHILIPP_2018 = "[Philipp, Song and Carbonell (2018)](https://arxiv.org/abs/1712.05577)"
YANG_2019 = "[Yang et al. (2019)](https://arxiv.org/abs/1902.08129)"
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
        init = _init_story()
        if init is not None:
            _side_by_side(init)
        _through_training()
        _links()
        st.divider()
        _sweep()
        st.divider()
        _pointers()
    except ResvizError as exc:
        st.error(markdown_text(exc))


@st.cache_data(show_spinner=False, max_entries=32)
def _profile(depth: int, batchnorm: bool, device: str):  # type: ignore[no-untyped-def]
    """One twin pair at initialization, for the depth sweep (kept across sessions)."""
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.gradients import twin_profile
    from resviz.analysis.twins import TwinSettings
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    return twin_profile(
        TwinSettings(depth=depth, batchnorm=batchnorm), BatchSettings(), device=device, split=False
    )


@st.cache_data(show_spinner=False, max_entries=4)
def _story_init(device: str):  # type: ignore[no-untyped-def]
    from resviz.demo_results import compute_story_init
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    return compute_story_init(device)


def _init_story():  # type: ignore[no-untyped-def]
    """The measurement at initialization: computed here once asked, else the bundled one."""
    from resviz.demo_results import STORY_INIT_KEY, bundled

    device = st.session_state.get(state.DEVICE, "auto")
    if st.session_state.get(state.WHY_STORY_INIT_ASKED):
        depth, seeds = STORY_INIT_KEY
        with st.spinner(f"Twelve passes: {depth}-layer twins, BatchNorm on and off, seeds {seeds}…"):
            return _story_init(device)
    pre = bundled("story_init", STORY_INIT_KEY)
    if pre is None:
        st.button("Measure the gradients at initialization", key=state.WHY_STORY_INIT_RUN, on_click=_ask_init)
        return None
    st.caption(
        f"Precomputed when the demo group was bundled ({pre.seconds:.0f} s then), the same code and "
        "seeds as below."
    )
    st.button("Measure again here", key=state.WHY_STORY_INIT_RUN, on_click=_ask_init)
    return pre.result


def _ask_init() -> None:
    st.session_state[state.WHY_STORY_INIT_ASKED] = True


def _spread(init, model: str, bn: bool, measure: str) -> str:  # type: ignore[no-untyped-def]
    v = init.values(model, bn, measure)
    return f"x{v.min():.3g}" if v.min() == v.max() else f"x{v.min():.3g} to x{v.max():.3g}"


def _side_by_side(init) -> None:  # type: ignore[no-untyped-def]
    from resviz.plots.story import init_figure

    plain, residual = (m for m in sorted(init.models, key=lambda m: not m.startswith("plain")))
    c1, c2 = st.columns(2)
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
    chart(init_figure(init), state.WHY_STORY_CHART + "_init", "story_at_init", rows=_init_rows(init))
    st.caption(
        f"Three measures, first layer over last: the activation gradient per element at the first and "
        f"last block outputs (per element, because the two tensors differ in size), the weight "
        f"gradient ||dW|| of the first and last conv, and ||dW|| / ||W||, the relative update SGD "
        f"makes. Sample: {init.batch}."
    )
    st.markdown(
        f"**What this measurement shows.** With BatchNorm, {plain}'s gradient does not vanish: it "
        f"*explodes* toward the input, by {_spread(init, plain, True, 'activation')} per element and "
        f"{_spread(init, plain, True, 'relative')} in relative update. This is the exploding gradient "
        f"that {PHILIPP_2018} describe for batch-normalized plain networks, and that {YANG_2019} prove "
        f"batch normalization itself causes at initialization in deep networks without skips. "
        f"{residual} with BatchNorm: {_spread(init, residual, True, 'activation')} per element. "
        f"Without BatchNorm, {plain}'s activation gradient shrinks toward the input "
        f"({_spread(init, plain, False, 'activation')}), but its first conv's weight gradient is "
        f"{_spread(init, plain, False, 'weight')} the last conv's, and its relative update "
        f"{_spread(init, plain, False, 'relative')}: the first layers' weights do not get vanishing "
        f"updates. These are {init.depth}-layer twins at initialization, on "
        f"{len(set(r.seed for r in init.rows))} seeds; how the ratios move during training is below."
    )


def _init_rows(init) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [
        {
            "model": r.model,
            "batchnorm": r.batchnorm,
            "seed": r.seed,
            "activation per element": r.activation,
            "weight gradient": r.weight,
            "relative update": r.relative,
        }
        for r in init.rows
    ]


def _through_training() -> None:
    from resviz.demo_results import bundled
    from resviz.plots.story import training_figure

    pre = bundled("story_training", "snapshots")
    if pre is None:
        return
    story = pre.result
    st.markdown("**Through training**")
    chart(
        training_figure(story),
        state.WHY_STORY_CHART + "_training",
        "story_through_training",
        rows=[
            {
                "model": r.model,
                "step": r.step,
                "activation per element": r.activation,
                "weight gradient": r.weight,
                "relative update": r.relative,
            }
            for r in story.rows
        ],
    )
    lines = []
    for model in story.models:
        steps, act = story.curve(model, "activation")
        _, rel = story.curve(model, "relative")
        lines.append(
            f"{model}: activation gradient x{act[0]:.3g} at step {steps[0]}, x{act[-1]:.3g} at step "
            f"{steps[-1]}; relative update x{rel[0]:.3g}, then x{rel[-1]:.3g}"
        )
    st.caption(
        "The bundled demo runs' weights at the steps they kept (precomputed), measured on "
        f"{story.sample}. " + "; ".join(lines) + "."
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
