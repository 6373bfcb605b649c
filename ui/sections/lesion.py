"""Why it works: the lesion study (Veit et al. 2016) on the sidebar's model and its plain twin.

Widgets -> :func:`resviz.analysis.lesion.lesion_study` behind a Run button (progress bar, Stop) ->
:mod:`resviz.plots.lesion`. Results are kept per model choice and settings in session state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.section_kit import kept_result

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from resviz.models.weights import LoadedModel

MAX_KEPT = 4  # studies kept per session
INTRO = (
    "**Veit, Wilber & Belongie (NeurIPS 2016), "
    "[Residual Networks Behave Like Ensembles of Relatively Shallow Networks]"
    "(https://arxiv.org/abs/1605.06431).** "
    "Delete one block of a trained ResNet at test time and its error barely moves, except at the few "
    "blocks that downsample; remove one block (two conv layers) of a plain network and it falls "
    "toward chance. Deleting several blocks, or swapping their order, degrades a ResNet smoothly. A "
    "ResNet does not depend on one long chain: it behaves like an ensemble of many paths, most of "
    "them short."
)
HOW = (
    "Deleting a residual block keeps its shortcut alone (y = x; where the shortcut projects or pads, "
    "the projection or padding alone). Deleting a plain block removes its two conv layers (y = x), "
    "which only works where its input and output shapes match: the first block of a later stage "
    "cannot be removed, and the chart says so rather than fake it. Swaps exchange two blocks of the "
    "same shapes within a stage. Whiskers are 95% intervals of each deletion's change, paired over "
    "the same images; a pale bar's change cannot be told from none."
)


def render() -> None:
    """The lesion tab: explanation, widgets, Run/Stop, and the three charts with their downloads."""
    from resviz.errors import ResvizError
    from ui.models import current_choice, current_model

    st.markdown(INTRO)
    st.caption(HOW)
    try:
        loaded = current_model()
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return
    missing = no_data_message(loaded)
    if missing:
        st.warning(missing)
        return
    settings = _settings(loaded)
    key = (repr(current_choice()), settings)
    _buttons(settings, loaded)
    asked = st.session_state.pop(state.LESION_PENDING, False)
    try:
        study = kept_result(
            state.LESION_RESULTS, key, lambda: _run(loaded, settings), asked=asked, max_kept=MAX_KEPT
        )
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return
    if study is None:
        from resviz.demo_results import stored

        pre = stored("lesion", loaded, settings)
        if pre is None:
            st.info("Press **Run the lesion study**; results are kept for this model and these settings.")
            return
        st.caption(
            f"Precomputed with these settings when the demo group was bundled ({pre.seconds:.0f} s then); "
            "**Run the lesion study** computes it again here."
        )
        study = pre.result
    show(study)


def no_data_message(loaded: LoadedModel) -> str | None:
    """Why ``loaded`` cannot be lesioned here (no held-out set), or None when it can."""
    dataset = loaded.metadata.get("dataset") if loaded.weights == "run" else None
    if dataset in ("shapes", "digits"):
        return None
    if not loaded.trained:
        return (
            f"**{loaded.name}** has random weights: deleting a block of an untrained network tells "
            "nothing, and there is no held-out set to measure errors on. Pick a trained run in the "
            "sidebar (Weights: *Saved training run*, e.g. the bundled demo pair resnet56/plain56 on "
            "shapes, or a run you train in the Training Lab)."
        )
    if loaded.trained and loaded.class_names and len(loaded.class_names) == 1000:
        return None  # ImageNet weights: agreement with the intact model's top-1 on the sample photos
    if loaded.weights == "run":
        return (
            f"This run was trained on {dataset}, whose held-out set is not built in: "
            "pick a shapes or digits run."
        )
    return (
        f"{markdown_text(loaded.source)} comes without a held-out set: "
        "pick a saved training run (shapes or digits)."
    )


def _settings(loaded: LoadedModel):
    from resviz.analysis.lesion import LesionSettings
    from resviz.demo_results import lesion_settings

    n = len(loaded.model.named_blocks())
    c1, c2, c3, c4 = st.columns(4)
    default = lesion_settings()  # the whole demo held-out set; what the bundled results used
    images = c1.number_input("Held-out images", 50, 2000, default.n_images, step=50, key=state.LESION_IMAGES)
    k_options = list(range(1, n + 1))
    default_k = [k for k in default.ks if k <= n]
    ks = c2.multiselect("Delete k blocks", k_options, default=default_k, key=state.LESION_KS)
    swaps = c3.multiselect(
        "Swap k pairs", list(range(1, 17)), default=list(default.swap_ks), key=state.LESION_SWAPS
    )
    draws = c4.slider("Random draws per k", 1, 10, default.draws, key=state.LESION_DRAWS)
    return LesionSettings(n_images=int(images), ks=tuple(ks), swap_ks=tuple(swaps), draws=int(draws))


def _set_pending(value: bool) -> None:
    st.session_state[state.LESION_PENDING] = value


def _buttons(settings, loaded: LoadedModel) -> None:
    n = len(loaded.model.named_blocks())
    passes = 2 * (n / 2 + 1 + settings.draws * (len(settings.ks) + len(settings.swap_ks)))
    c1, c2, c3 = st.columns([2, 1, 4], vertical_alignment="center")
    c1.button(
        "Run the lesion study", key=state.LESION_RUN, type="primary", on_click=_set_pending, args=(True,)
    )
    # A click on Stop interrupts the running loop at its next progress update.
    c2.button("Stop", key=state.LESION_STOP, on_click=_set_pending, args=(False,))
    c3.caption(
        f"Cost: about {passes:.0f} forward passes over {settings.n_images} images ({n} blocks, two "
        "networks); the single-block sweep reuses the intact activations: about half a pass per block."
    )


def _run(loaded: LoadedModel, settings):
    from resviz.analysis.lesion import lesion_study
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    bar = st.progress(0.0, text="Lesioning…")

    def report(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0), text=f"Lesion study: {done} of {total} steps")

    try:
        return lesion_study(loaded, settings, progress=report)
    finally:
        bar.empty()


def show(study) -> None:
    """Metrics, the three charts and their downloads."""
    from resviz.analysis.lesion import curve_rows, single_rows
    from resviz.plots import lesion as lp
    from resviz.stats import rate_of

    res, plain = study.residual, study.plain
    st.caption(f"On {markdown_text(study.data)}. Plain counterpart: {study.how}.")
    m1, m2, m3 = st.columns(3)
    for col, r in ((m1, res), (m2, plain)):
        err = rate_of(r.intact_error, r.n_images)
        col.metric(f"{r.model}: intact error", f"{r.intact_error:.1%}")
        col.caption(f"95% interval {err.low:.1%} to {err.high:.1%}, {r.n_images:,} images")
    m3.metric("Chance", f"{study.chance:.1%}")
    fig = lp.single_figure(study)
    st.plotly_chart(fig, key="lesion_chart_single")
    figure_downloads(fig, single_rows(study), "lesion_single_block", state.LESION_DOWNLOAD)
    for kind, name in (("delete", "lesion_k_deletions"), ("swap", "lesion_k_swaps")):
        fig = lp.curve_figure(study, kind)  # type: ignore[arg-type]
        st.plotly_chart(fig, key=f"lesion_chart_{kind}")
        figure_downloads(fig, curve_rows(study, kind), name, state.LESION_DOWNLOAD)
    for note in study.notes:
        st.caption(note)


def figure_downloads(fig: go.Figure, rows: list[dict[str, object]], name: str, prefix: str) -> None:
    """CSV of the numbers and a self-contained HTML of the figure (for PNG: the chart's camera icon)."""
    from resviz.export import to_csv

    c1, c2 = st.columns(2)
    c1.download_button(
        "Data (CSV)",
        to_csv(rows),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"{prefix}_{name}_csv",
        on_click="ignore",
        icon=":material/download:",
    )
    # Built on click (a callable): the HTML carries plotly.js (3-4 MB), so it works offline.
    c2.download_button(
        "Figure (HTML)",
        lambda: fig.to_html(include_plotlyjs=True, full_html=True),
        file_name=f"{name}.html",
        mime="text/html",
        key=f"{prefix}_{name}_html",
        on_click="ignore",
        icon=":material/download:",
    )
