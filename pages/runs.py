"""Runs: every saved and bundled training run in one table; overlay their curves, rename, delete.

Widgets -> :mod:`resviz.runs` (small JSON files, no torch) -> :mod:`resviz.plots.training`.
Bundled runs ship with resviz and are read-only; a run stopped before 10% of its steps is marked.
"""

from __future__ import annotations

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.shell import ensure_entry_point

ensure_entry_point()


def main() -> None:
    from resviz.runs import clean_partial_runs, default_runs_dir, scan_runs

    st.title("Runs")
    st.caption(
        "Every model the Training Lab (or `python -m resviz train`) saved, and the demo runs that ship "
        f"with resviz. Saved runs live in `{default_runs_dir()}` (`RESVIZ_RUNS_DIR`). Tick rows to "
        "overlay their curves; pick a run in the sidebar (*Weights: Saved training run*) to open it "
        "on every page."
    )
    clean_partial_runs()  # half-written folders a killed server left behind
    runs, unreadable = scan_runs()
    for path in unreadable:
        st.warning(f"{markdown_text(path)} is in the runs folder but is not a readable run (skipped).")
    picked = _table(runs)
    _curves(picked or [r for r in runs if r.bundled])
    _manage([r for r in picked if not r.bundled])


def _table_key(runs: list) -> str:
    """The table's widget key, new whenever the set of runs changes (a delete here or elsewhere).

    Row selection is by position: kept across a change of rows, a tick would jump to the run that
    moved into its row, and Streamlit then ignored new ticks until a reload. A new key starts clean.
    """
    import hashlib

    ids = "\n".join(r.id for r in runs).encode()
    return f"{state.RUNS_TABLE}{hashlib.sha256(ids).hexdigest()[:12]}"


def _table(runs: list) -> list:
    """The runs as a table with row selection; returns the runs ticked."""
    from resviz.export import to_csv
    from resviz.runs import run_rows

    rows = run_rows(runs)
    event = st.dataframe(
        rows,
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key=_table_key(runs),
        column_config={"id": st.column_config.TextColumn("id", width="large")},  # ids run to 30 characters
    )
    st.download_button(
        "Runs table (CSV)", to_csv(rows), "runs.csv", "text/csv", key=state.RUNS_CSV, on_click="ignore"
    )
    return [runs[i] for i in event.selection.rows if i < len(runs)]


def _curves(runs: list) -> None:
    from resviz.export import to_csv
    from resviz.plots.training import METRICS, training_curves_figure
    from resviz.runs import run_curves
    from resviz.training import curve_rows

    st.subheader("Curves")
    if not runs:
        st.info("No runs yet: train some in the Training Lab.")
        return
    c1, c2 = st.columns([3, 1])
    metric = c1.selectbox("Curve", list(METRICS), key=state.RUNS_METRIC, format_func=METRICS.get)
    log_y = c2.toggle(
        "Log scale", key=state.RUNS_LOG, help="Losses and small errors read better on a log axis."
    )
    curves = [run_curves(r) for r in runs]
    title = f"{METRICS[metric]}: " + (
        "the bundled demo runs (tick rows above to choose)"
        if all(r.bundled for r in runs)
        else f"{len(runs)} run(s)"
    )
    fig = training_curves_figure(curves, metric, title=title, by_name=True)
    if log_y:
        fig.update_yaxes(type="log", dtick=1, minor={"showgrid": False})
    st.plotly_chart(fig, key=state.RUNS_CHART)
    st.download_button(
        "These curves (CSV)",
        to_csv(curve_rows(curves)),
        "run_curves.csv",
        "text/csv",
        key=state.RUNS_CURVES_CSV,
        on_click="ignore",
    )


def _manage(runs: list) -> None:
    """Rename or delete the ticked saved runs this session may change; the others are read-only.

    A run belongs to the browser session that trained it (resviz.sharing); a shared server
    (RESVIZ_SHARED) changes none from the browser.
    """
    from resviz.sharing import may_change
    from ui.sharing import current, session_id

    if error := st.session_state.pop(state.RUNS_ERROR, None):
        st.error(markdown_text(error))
    if not runs:
        return
    sharing, me = current(), session_id()
    mine = [r for r in runs if may_change(r.owner, me, sharing)]
    st.subheader("Manage the ticked runs")
    if len(mine) < len(runs):
        why = "this server is shared" if sharing.shared else "they were trained in another browser session"
        others = ", ".join(markdown_text(r.title or r.id) for r in runs if r not in mine)
        st.caption(f"Read-only ({why}): {others}.")
    for run in mine:
        c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        c1.text_input(
            f"Title of {markdown_text(run.id)}",
            value=run.title or run.name,
            key=f"{state.RUNS_TITLE}{run.id}",
        )
        # Callbacks act before the script runs: the table below is drawn from the changed folder.
        c2.button("Rename", key=f"{state.RUNS_RENAME}{run.id}", on_click=_change, args=(run, "rename"))
        c3.button("Delete", key=f"{state.RUNS_DELETE}{run.id}", on_click=_ask_delete, args=(run,))
        if st.session_state.get(state.RUNS_CONFIRM) == run.id:
            _confirm_delete(run)


def _ask_delete(run) -> None:
    st.session_state[state.RUNS_CONFIRM] = run.id


def _confirm_delete(run) -> None:
    with st.container(border=True):
        st.warning(
            f"Delete **{markdown_text(run.title or run.name)}** ({markdown_text(run.id)}): its weights and "
            "curves go for good."
        )
        yes, no, _ = st.columns([1, 1, 3])
        yes.button(
            "Delete it",
            key=f"{state.RUNS_DELETE}{run.id}_yes",
            type="primary",
            on_click=_change,
            args=(run, "delete"),
        )
        no.button("Keep it", key=f"{state.RUNS_DELETE}{run.id}_no", on_click=_cancel_delete)


def _cancel_delete() -> None:
    st.session_state.pop(state.RUNS_CONFIRM, None)


def _change(run, action: str) -> None:
    from resviz.errors import ResvizError
    from resviz.runs import delete_run, rename_run
    from resviz.sharing import may_change
    from ui.sharing import current, session_id

    st.session_state.pop(state.RUNS_CONFIRM, None)
    try:
        if not may_change(run.owner, session_id(), current()):  # checked again: the click may be stale
            raise ResvizError("it belongs to another browser session, or this server is shared")
        if action == "rename":
            rename_run(run, st.session_state[f"{state.RUNS_TITLE}{run.id}"])
        else:
            delete_run(run)
    except (ResvizError, OSError) as exc:
        st.session_state[state.RUNS_ERROR] = f"Could not {action} {run.id}: {exc}"


main()
