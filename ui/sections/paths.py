"""Why it works: paths (Veit et al. 2016): how many paths of each length, and the gradient they carry.

Widgets -> :func:`resviz.analysis.paths.path_study` behind a Run button (progress bar, Stop) ->
:func:`resviz.plots.paths.paths_figure`. Results are kept per model choice and settings.
"""

from __future__ import annotations

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.section_kit import kept_result
from ui.sections.lesion import MAX_KEPT, figure_downloads

INTRO = (
    "**Veit, Wilber & Belongie (NeurIPS 2016), section 5.** Unroll a ResNet of n blocks and it is "
    "2^n paths: each takes the residual branch of some blocks and the shortcut of the others, and its "
    "length (branches taken) follows a binomial distribution, mean n/2. But the gradient of a path "
    "shrinks exponentially with its length, so nearly all of the gradient comes from short paths "
    "(ResNet-110, 54 blocks: lengths 5 to 17). These *effective paths* are far shallower than the net."
)
HOW = (
    "Measured as in the paper: one forward pass, then for each sampled path a backward pass that goes "
    "through the residual branch of k random blocks and only the shortcut of the others; the norm of "
    "the gradient reaching the first block's input is that path's magnitude. The product with the "
    "number of paths is what each length contributes; the shaded range holds 90% of it. The untrained "
    "model is the same architecture freshly initialized, measured with batch statistics (as at the "
    "first step of training); a trained one in eval mode."
)


def render() -> None:
    """The paths tab: explanation, widgets, Run/Stop, the three-panel figure and its downloads."""
    from resviz.analysis.paths import PathSettings
    from resviz.errors import ResvizError
    from ui.models import current_choice, current_model

    st.markdown(INTRO)
    st.caption(HOW)
    try:
        loaded = current_model()
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return
    c1, c2 = st.columns(2)
    samples = c1.slider("Sampled paths per length", 1, 32, 8, key=state.PATHS_SAMPLES)
    batch = c2.slider("Images in the batch", 4, 64, 16, step=4, key=state.PATHS_BATCH)
    settings = PathSettings(samples=int(samples), batch_size=int(batch))
    n = sum(b.skip for _, b in loaded.model.named_blocks())
    parts = 2 if loaded.trained else 1
    b1, b2, b3 = st.columns([2, 1, 4], vertical_alignment="center")
    b1.button("Measure the paths", key=state.PATHS_RUN, type="primary", on_click=_set_pending, args=(True,))
    b2.button("Stop", key=state.PATHS_STOP, on_click=_set_pending, args=(False,))
    b3.caption(
        f"Cost: {parts} forward pass(es) and {parts * ((n + 1) * settings.samples + 1)} backward passes "
        f"of {loaded.name} on {settings.batch_size} images."
    )
    if not loaded.trained:
        st.info(
            "The sidebar's model is untrained: only the untrained profile is measured. "
            "Pick a trained run to compare."
        )
    key = (repr(current_choice()), settings)
    asked = st.session_state.pop(state.PATHS_PENDING, False)
    try:
        study = kept_result(
            state.PATHS_RESULTS, key, lambda: _run(loaded, settings), asked=asked, max_kept=MAX_KEPT
        )
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return
    if study is None:
        from resviz.demo_results import stored

        pre = stored("paths", loaded, settings)
        if pre is None:
            st.info("Press **Measure the paths**; results are kept for this model and these settings.")
            return
        st.caption(
            f"Precomputed with these settings when the demo group was bundled ({pre.seconds:.0f} s then); "
            "**Measure the paths** computes it again here."
        )
        study = pre.result
    _show(study)


def _set_pending(value: bool) -> None:
    st.session_state[state.PATHS_PENDING] = value


def _run(loaded, settings):  # type: ignore[no-untyped-def]
    from resviz.analysis.paths import path_study
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    bar = st.progress(0.0, text="Measuring paths…")

    def report(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0), text=f"Paths: {done} of {total} backward passes")

    try:
        return path_study(loaded, settings, progress=report)
    finally:
        bar.empty()


def _show(study) -> None:  # type: ignore[no-untyped-def]
    from resviz.analysis.paths import path_rows
    from resviz.plots.paths import paths_figure

    profiles = [p for p in (study.untrained, study.trained) if p is not None]
    st.caption(f"On {markdown_text(study.data)}.")
    cols = st.columns(len(profiles) + 1)
    first = profiles[0]
    cols[0].metric(
        "Paths", f"2^{first.n}", help=f"{first.n} residual blocks; mean path length {first.mean_length:g}"
    )
    for col, prof in zip(cols[1:], profiles, strict=True):
        lo, hi = prof.effective
        col.metric(
            f"Effective paths, {prof.label}",
            f"lengths {lo}-{hi}",
            help=f"{prof.coverage:.0%} of the gradient",
        )
    fig = paths_figure(study)
    st.plotly_chart(fig, key="paths_chart")
    figure_downloads(fig, path_rows(study), "paths_per_length", state.PATHS_DOWNLOAD)
