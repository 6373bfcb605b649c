"""Attribution page: the Faithfulness section. Which map can be trusted, with and without shortcuts?

Widgets -> :func:`resviz.analysis.faithfulness.evaluate` for the sidebar's model and its plain (or
residual) twin -> a table, two figures, downloads. The evaluation runs on a button press, with a
progress bar; Stop (or any other widget) interrupts it at the next progress update, and the model is
left as it was (the analysis holds its lock and restores it on the way out). Reports are kept in
session state, so changing a chart or leaving the page does not recompute them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import streamlit as st

from ui import state

if TYPE_CHECKING:
    from resviz.analysis.faithfulness_report import FaithfulnessReport
    from resviz.analysis.pairs import ModelPair
    from resviz.images import LoadedImage
    from resviz.models.weights import LoadedModel

HELD_OUT, IMAGES = "held-out", "images"
SIZES = (16, 32, 64, 128, 256)
QUICK_SECONDS = 30.0  # above this the estimate is shown as a warning before the button
MAX_REPORTS = 4  # reports kept per session


@st.cache_resource(show_spinner=False, max_entries=2)
def _pair(model_key: str, _loaded: LoadedModel) -> ModelPair:
    """The model and its twin, built (or loaded) once per model and shared read-only."""
    from resviz.analysis.pairs import model_pair

    return model_pair(_loaded)


def _inputs(loaded: LoadedModel, source: str, n: int, images: Sequence[LoadedImage]):
    """``(x, targets, masks, what)`` for the chosen source: labels and masks only for held-out data."""
    if source == IMAGES:
        x = loaded.preprocessing.tensor([im.image for im in images])
        return x, None, None, f"{len(images)} picked image(s), each net explaining its own prediction"
    from resviz.analysis.pairs import held_out

    data = held_out(loaded, n)
    masks = data.masks_test.numpy() if data.masks_test is not None else None
    return data.normalize(data.x_test), data.y_test, masks, f"{len(data.y_test)} held-out {data.name} images"


@st.cache_data(show_spinner=False, max_entries=64)
def _estimate(request: tuple, percentiles: tuple, _loaded: LoadedModel, _make_x) -> tuple[float, int]:
    """``(seconds, images)`` of one request, from a timed probe; shared by every session (the
    request names the model, the source, the methods and the images)."""
    from resviz.analysis.faithfulness import estimate_seconds

    x = _make_x()
    methods, steps = request[3], request[4]
    return estimate_seconds(_loaded.model, x, methods, steps=steps, percentiles=percentiles), len(x)


def render(loaded: LoadedModel, images: Sequence[LoadedImage] = (), *, model_key: str) -> None:
    """The section: settings and cost, the Evaluate/Stop buttons, then the table, figures and downloads.

    Args:
        loaded: the sidebar's model.
        images: the images picked on the page (a source besides the run's held-out set).
        model_key: identifies ``loaded`` across reruns and sessions (the page's ``repr(choice)``):
            the twin is cached under it.
    """
    from resviz.analysis.pairs import counterpart_name, held_out, twin_run_path
    from resviz.analysis.road import ALL_PERCENTILES, PERCENTILES

    st.subheader("Faithfulness")
    st.caption(
        "Does the map point at what the network uses? Deletion (RISE) removes the most relevant pixels "
        "first and watches the class's probability fall; insertion puts them back onto a blurred copy; "
        "ROAD imputes them from their neighbours so the hole itself is no evidence; the pointing game "
        "asks whether the map's peak lies on the object. A random map is the chance reference. "
        f"Each row is computed for this model and for its "
        f"**{counterpart_name(bool(loaded.config.skip), twin_run_path(loaded) is not None)}**."
    )
    sources = ([HELD_OUT] if held_out(loaded, 1) is not None else []) + ([IMAGES] if images else [])
    if not sources:
        st.info(
            "Load a saved run on shapes or digits in the sidebar (held-out images), or pick images above."
        )
        return
    settings = _settings(sources)
    if settings is None:
        return
    source, n, methods, steps, road = settings
    percentiles = PERCENTILES if road == "4" else ALL_PERCENTILES
    digests = tuple(im.digest for im in images) if source == IMAGES else ()
    request = (model_key, source, int(n), tuple(methods), int(steps), road, digests)
    reports: dict = st.session_state.setdefault(state.FAITH_REPORTS, {})
    if request not in reports:
        # The inputs, the twin and the timed probe are made once per request, not on every rerun
        # of the page (an opacity change above must not redo them).
        make_x = lambda: _inputs(loaded, source, int(n), images)[0]  # noqa: E731
        _ask(request, *_estimate(request, tuple(percentiles), loaded, make_x))
        if request not in st.session_state.get(state.FAITH_ASKED, set()):
            partial = st.session_state.get(state.FAITH_PARTIAL)
            if partial is not None and partial[0] == request:  # a stopped evaluation's rows
                st.info("Stopped: the rows measured so far are below (blank where not reached).")
                _show(partial[1])
            return
        x, targets, masks, what = _inputs(loaded, source, int(n), images)
        pair = _pair(model_key, loaded)
        report = _evaluate(pair, x, targets, masks, methods, steps, percentiles, what, request)
        reports[request] = report
        while len(reports) > MAX_REPORTS:
            reports.pop(next(iter(reports)))
    _show(reports[request])


def _settings(sources: list[str]) -> tuple | None:
    """The section's widgets: ``(source, n, methods, steps, road)``, or None until a method is picked."""
    from resviz.analysis.attribution import METHODS
    from resviz.analysis.faithfulness import REFERENCE, default_methods

    labels = {HELD_OUT: "held-out images of the run's dataset", IMAGES: "the images picked above"}
    c1, c2 = st.columns(2)
    source = c1.radio(
        "Images", sources, key=state.FAITH_SOURCE, format_func=labels.__getitem__, horizontal=True
    )
    n = c2.select_slider("Held-out images", SIZES, value=64, key=state.FAITH_N, disabled=source != HELD_OUT)
    choices = [*METHODS, REFERENCE]
    if any(m not in choices for m in st.session_state.get(state.FAITH_METHODS, ())):
        del st.session_state[state.FAITH_METHODS]  # a method the table no longer has
    methods = st.multiselect(
        "Methods",
        choices,
        default=list(default_methods()),
        key=state.FAITH_METHODS,
        format_func=lambda m: "random map (chance)" if m == REFERENCE else METHODS[m],
    )
    c3, c4 = st.columns(2)
    steps = c3.select_slider("Deletion / insertion steps", (5, 10, 20), value=10, key=state.FAITH_STEPS)
    road = c4.radio(
        "ROAD thresholds",
        ("4", "9"),
        key=state.FAITH_ROAD,
        horizontal=True,
        format_func=lambda v: "4 (20-80 %)" if v == "4" else "9 (10-90 %, as pytorch-grad-cam)",
    )
    if not methods:
        st.info("Pick at least one method.")
        return None
    return source, n, methods, steps, road


def _ask(request: tuple, seconds: float, n: int) -> None:
    """Say the cost, and offer Evaluate (and Stop, which only matters while a run is going)."""
    asked: set = st.session_state.setdefault(state.FAITH_ASKED, set())
    text = f"About {seconds:.0f} s here for {n} image{'s' if n != 1 else ''} on both networks (an estimate)."
    if seconds > QUICK_SECONDS:
        st.warning(f"{text} Fewer images, methods or steps make it quicker.")
    else:
        st.caption(text)
    b1, b2 = st.columns([1, 5])
    # Clicks act in callbacks: they run before the script, so a rerun cannot drop them, and Stop's
    # rerun interrupts a running evaluation at its next progress update.
    b1.button("Evaluate", key=state.FAITH_RUN, type="primary", on_click=asked.add, args=(request,))
    b2.button("Stop", key=state.FAITH_STOP, on_click=asked.discard, args=(request,))
    if request not in asked:
        st.info("Press **Evaluate** to score each method on both networks; results are kept.")


def _evaluate(pair, x, targets, masks, methods, steps, percentiles, what, request) -> FaithfulnessReport:
    from resviz.analysis.faithfulness import evaluate
    from ui.section_kit import StopOnRerun

    bar = st.progress(0.0, text="Evaluating…")
    stop = StopOnRerun()  # a click on Stop ends the evaluation with the rows done so far

    def progress(done: int, total: int, text: str) -> None:
        bar.progress(done / total, text=f"{text} done ({done} of {total})")

    try:
        report = evaluate(
            [(pair.residual.name, pair.residual.model), (pair.plain.name, pair.plain.model)],
            x,
            targets=targets,
            masks=masks,
            methods=methods,
            steps=steps,
            percentiles=percentiles,
            how=pair.how,
            source=what,
            progress=stop.progress(progress),
            should_stop=stop.should_stop,
        )
    finally:
        st.session_state.get(state.FAITH_ASKED, set()).discard(request)
    bar.empty()
    if stop.should_stop():  # keep the partial report for the rerun that Stop asked for
        st.session_state[state.FAITH_PARTIAL] = (request, report)
        stop.resume()
    st.session_state.pop(state.FAITH_PARTIAL, None)
    return report


def _labelled(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The table's rows with each metric's label and which way is better as the column name."""
    from resviz.analysis.faithfulness_report import METRICS, RELATIVE

    def name(key: str) -> str:
        metric = METRICS.get(key) or RELATIVE.get(key)
        if metric is None:
            return key
        return f"{metric.label} {'↑' if metric.higher_is_better else '↓'}"

    return [{name(k): v for k, v in row.items()} for row in rows]


def _show(report: FaithfulnessReport) -> None:
    from resviz.plots.faithfulness import curves_figure, metrics_figure

    st.caption(f"{report.source}. {report.how}.")
    st.dataframe(_labelled(report.rows()), hide_index=True)
    st.caption(
        "**/ start**: the deletion and insertion areas divided by each network's probability for the "
        "class on the intact image. A network that is less sure starts lower, so its areas are smaller "
        "whatever its maps; only these ratios compare the two networks with each other."
    )
    metrics_fig, curves_fig = metrics_figure(report), curves_figure(report)
    st.plotly_chart(metrics_fig, key=state.FAITH_METRICS_CHART)
    st.plotly_chart(curves_fig, key=state.FAITH_CURVES_CHART)
    name = "_vs_".join(report.nets)
    d1, d2, d3, d4 = st.columns(4)
    d1.download_button(
        "Table (CSV)",
        report.to_csv(),
        f"faithfulness_{name}.csv",
        "text/csv",
        key=f"{state.FAITH_DOWNLOAD}_csv",
    )
    d2.download_button(
        "Per image (npz)",
        report.to_npz(),
        f"faithfulness_{name}.npz",
        "application/octet-stream",
        key=f"{state.FAITH_DOWNLOAD}_npz",
    )
    d3.download_button(
        "Metrics chart (HTML)",
        metrics_fig.to_html(include_plotlyjs=True),
        f"faithfulness_{name}.html",
        "text/html",
        key=f"{state.FAITH_DOWNLOAD}_html",
    )
    d4.download_button(
        "Curves (HTML)",
        curves_fig.to_html(include_plotlyjs=True),
        f"faithfulness_curves_{name}.html",
        "text/html",
        key=f"{state.FAITH_DOWNLOAD}_curves",
    )
    st.caption("PNG: the camera icon on each chart. `python -m resviz faithfulness` gives the same table.")
