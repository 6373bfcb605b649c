"""Why it works: the loss landscape around trained weights, residual against plain (Li et al. 2018)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import streamlit as st

from resviz.errors import ResvizError
from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.section_kit import StopOnRerun, kept_result

if TYPE_CHECKING:
    from resviz.analysis.landscape import TwinLandscape
    from resviz.models.weights import LoadedModel

PAPER_URL = "https://arxiv.org/abs/1712.09913"
SEEDS = (0, 1)
MAX_RESULTS = 4  # landscapes kept per session (a 21x21 pair is a few kB)
EXPLANATION = f"""
Around the trained weights θ, the loss is measured at θ + αδ + βη for two random directions δ, η
in weight space. Each direction is **filter-normalized**: every filter is rescaled to the norm of
the same filter of θ, so that directions mean the same thing for every layer; BatchNorm parameters
and biases stay put. Li, Xu, Taylor, Studer and Goldstein ([Visualizing the Loss Landscape of
Neural Nets]({PAPER_URL}), NeurIPS 2018) found ResNet-56 in a smooth, nearly convex basin and
the same net without shortcuts in a chaotic one, the more so the deeper it is.

Here both nets of the pair see the same directions' seeds, the same grid and the same held-out
images. **BatchNorm runs in eval mode with each model's running statistics** (nothing is
recomputed for a perturbed θ, as in the paper).
"""


def render() -> None:
    """The section: explanation, options with their cost, Run/Stop, then charts and downloads."""
    st.markdown(EXPLANATION)
    from ui.models import current_choice, current_model

    try:
        loaded = current_model()
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return
    if not _usable(loaded):
        return
    grid, span, n, interp = _options(loaded)
    request = (repr(current_choice()), SEEDS, grid, span, n, interp)
    _cost(loaded, grid, n, interp)
    c1, c2, _ = st.columns([1, 1, 4])
    c1.button("Run", key=state.LAND_RUN, type="primary", on_click=_set_pending, args=(request,))
    # A click on Stop reruns the script: the run in progress is interrupted at its next progress
    # update, and the analysis puts the model's weights back on its way out.
    c2.button("Stop", key=state.LAND_STOP, on_click=_stop, args=(request,))
    asked = st.session_state.pop(state.LAND_PENDING, None) == request
    try:
        result = kept_result(
            state.LAND_RESULTS,
            request,
            lambda: _compute(loaded, grid, span, n, interp, request),
            asked=asked,
            max_kept=MAX_RESULTS,
        )
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return
    if result is None:
        partial = st.session_state.get(state.LAND_PARTIAL)
        if st.session_state.pop(state.LAND_STOPPED, None) == request and partial and partial[0] == request:
            st.info(
                "Stopped: the points measured so far are below (the rest are blank). Press **Run** to redo."
            )
            _show(partial[1])
        elif partial is not None and partial[0] == request:
            st.info("Stopped earlier: the points measured so far are below. Press **Run** to redo.")
            _show(partial[1])
        else:
            from resviz.demo_results import stored

            pre = stored("landscape", loaded, (grid, span, n, interp))
            if pre is None:
                st.info("Press **Run**: the result is kept for these settings while you visit other pages.")
                return
            st.caption(
                f"Precomputed with these settings when the demo group was bundled ({pre.seconds:.0f} s "
                "then); **Run** computes it again here."
            )
            _show(pre.result)
        return
    _show(result)


def _usable(loaded: LoadedModel) -> bool:
    """Trained weights with a held-out set, or a message that says what to pick instead."""
    demo = (
        "Pick **Saved training run** in the sidebar (the bundled demo pair: plain-56 and ResNet-56 "
        "trained on the shapes dataset), or train one in the Training Lab."
    )
    if not loaded.trained:
        st.info(
            f"**{loaded.name}** has random weights: a landscape around them says nothing about "
            f"training. {demo}"
        )
        return False
    if loaded.weights != "run":
        st.info(
            f"{markdown_text(loaded.name)} ({markdown_text(loaded.source)}) comes with no held-out set "
            f"to measure its loss on. {demo}"
        )
        return False
    return True


def _options(loaded: LoadedModel) -> tuple[int, float, int, bool]:
    c1, c2, c3 = st.columns(3)
    grid = c1.select_slider("Grid (points a side)", [5, 7, 11, 15, 21, 31, 41], value=21, key=state.LAND_GRID)
    span = c2.select_slider(
        "Range of α and β", [0.1, 0.25, 0.5, 1.0, 1.5, 2.0], value=1.0, key=state.LAND_RANGE
    )
    # 100 images: the 21 x 21 default then takes about 70 s for the pair on 2 CPU cores (README).
    n = int(c3.number_input("Held-out images", 10, 2000, 100, step=50, key=state.LAND_N))
    interp = st.checkbox(
        "Also the line from each run's initial weights to its trained ones (t = 0 to 1.25)",
        key=state.LAND_INTERP,
        help="The initial weights are rebuilt from the run's seed (runs do not store them).",
    )
    return int(grid), float(span), n, bool(interp)


@st.cache_data(show_spinner=False, max_entries=16)
def _seconds_per_image(choice: str, _loaded: LoadedModel, size: int, channels: int) -> float:
    """One timed forward pass of 64 images, for the estimate shown before a run."""
    import torch

    from resviz.device import model_device
    from resviz.hooks import preserve_model_state

    x = torch.zeros(64, channels, size, size, device=model_device(_loaded.model))
    with preserve_model_state(_loaded.model), torch.no_grad():
        _loaded.model(x)  # warm-up: first calls allocate
        start = time.perf_counter()
        _loaded.model(x)
    return (time.perf_counter() - start) / 64


def _cost(loaded: LoadedModel, grid: int, n: int, interp: bool) -> None:
    from resviz.analysis.pairs import held_out

    data = held_out(loaded, 1)
    size, channels = (data.size, data.channels) if data is not None else (32, 3)
    points = 2 * (grid * grid + grid + (grid if interp else 0))
    per_image = _seconds_per_image(repr(loaded.source), loaded, size, channels)
    st.caption(
        f"Cost: {points:,} points (both nets) x {n} images = {points * n:,} forward passes; "
        f"about {points * n * per_image:,.0f} s on this machine, from one timed pass of {loaded.name} "
        "(more while other work shares the processor)."
    )


def _set_pending(request: tuple) -> None:
    st.session_state[state.LAND_PENDING] = request


def _stop(request: tuple) -> None:
    st.session_state.pop(state.LAND_PENDING, None)
    st.session_state[state.LAND_STOPPED] = request


def _compute(
    loaded: LoadedModel, grid: int, span: float, n: int, interp: bool, request: tuple
) -> TwinLandscape:
    from resviz.analysis.landscape_eval import EvalOptions
    from resviz.analysis.pairs import model_pair
    from resviz.demo_results import compute_landscape

    pair = model_pair(loaded)
    st.caption(f"Counterpart: {pair.how}.")
    bar = st.progress(0.0, text="Measuring the loss…")
    stop = StopOnRerun()

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"{done:,} of {total:,} points")

    result = compute_landscape(
        loaded,
        (grid, span, n, interp),
        options=EvalOptions(progress=stop.progress(progress), should_stop=stop.should_stop),
        pair=pair,
    )
    bar.empty()
    if stop.should_stop():  # Stop was clicked: keep what the library measured, then let the rerun go
        st.session_state[state.LAND_PARTIAL] = (request, result)
        stop.resume()
    st.session_state.pop(state.LAND_PARTIAL, None)
    return result


def _show(result: TwinLandscape) -> None:
    from resviz.analysis.landscape import MINIMUM_TOLERANCE, shape_summary

    st.caption(f"Measured in {result.seconds:.0f} s on {result.residual.n_images} held-out images.")
    rows = []
    for s in (result.residual, result.plain):
        shape = shape_summary(s)
        rows.append(
            {
                "model": s.model,
                "loss at θ": shape.centre,
                "mean loss on the border": shape.edge_mean,
                "border / centre": shape.edge_ratio,
                f"local minima (at least {shape.tolerance:.0%} deep)": shape.local_minima,
                "trained weights are the lowest point": "yes" if shape.centre_is_lowest else "no",
            }
        )
    st.dataframe(rows, hide_index=True)
    st.caption(
        "A grid point counts as a local minimum only when its loss lies at least "
        f"{MINIMUM_TOLERANCE:.0%} below each of its neighbours: smaller dips on a flat plateau are "
        "rounding, not valleys."
    )
    _charts(result)


def _charts(result: TwinLandscape) -> None:
    from resviz.plots import landscape as lp

    figs = {
        "slice": lp.slice_figure(result.slices),
        "contours": lp.contour_figure([result.residual, result.plain]),
    }
    if result.interpolations:
        figs["interpolation"] = lp.slice_figure(result.interpolations)
    figs["surface"] = lp.surface_figure([result.residual, result.plain])
    for name, fig in figs.items():
        st.plotly_chart(fig, key=f"land_chart_{name}")
    _downloads(result, figs)


def _downloads(result: TwinLandscape, figs: dict) -> None:
    from resviz.analysis.landscape import slice_rows, surface_rows, twin_npz
    from resviz.export import to_csv
    from resviz.plots.landscape import heatmap_png

    stem = f"landscape_{result.residual.model}_{result.plain.model}"
    rows = surface_rows(result.residual) + surface_rows(result.plain)
    lines = [r for s in (*result.slices, *result.interpolations) for r in slice_rows(s)]
    files = [
        ("All arrays (.npz)", lambda: twin_npz(result), f"{stem}.npz", "application/octet-stream", "npz"),
        ("Grids (CSV)", to_csv(rows), f"{stem}_grid.csv", "text/csv", "csv"),
        ("Slices (CSV)", to_csv(lines), f"{stem}_slices.csv", "text/csv", "slices_csv"),
        (
            "Grids (PNG)",
            lambda: heatmap_png([result.residual, result.plain]),
            f"{stem}.png",
            "image/png",
            "png",
        ),
    ]
    files += [
        (
            f"{name.capitalize()} chart (HTML)",
            lambda fig=fig: fig.to_html(include_plotlyjs=True),
            f"{stem}_{name}.html",
            "text/html",
            f"html_{name}",
        )
        for name, fig in figs.items()
    ]
    cols = st.columns(4)
    for i, (label, data, file_name, mime, key) in enumerate(files):
        cols[i % 4].download_button(
            label,
            data,
            file_name=file_name,
            mime=mime,
            key=f"{state.LAND_DOWNLOAD}_{key}",
            on_click="ignore",
            icon=":material/download:",
        )
