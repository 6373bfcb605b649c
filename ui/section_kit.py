"""Small Streamlit helpers shared by the "Why it works" sections: charts with their downloads,
results kept per settings, and point-by-point work with a progress bar and a stop button whose
finished points are kept.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import streamlit as st

MAX_KEPT = 64  # finished points kept per store in a session (each holds a few small arrays)


def chart(
    fig: Any,
    key: str,
    name: str,
    *,
    rows: Sequence[dict[str, object]] | None = None,
    arrays: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """A plotly figure and its downloads: its data (CSV and/or npz) and the figure as HTML.

    The PNG comes from the chart's own camera button (plotly renders it in the browser at twice the
    size; no server-side image library is needed). HTML and npz are built only when clicked.

    Args:
        fig: a ``go.Figure``.
        key: the widget key prefix (from :mod:`ui.state`); buttons get ``_csv``, ``_npz``, ``_html``.
        name: file name stem, e.g. ``"shattered_lag1_vs_depth"``.
        rows: the figure's numbers as records, for a CSV.
        arrays: a callable returning named numpy arrays, for an npz.
    """
    st.plotly_chart(
        fig,
        key=f"{key}_chart",
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2},
        },
    )
    cols = st.columns(3)
    if rows is not None:
        from resviz.export import to_csv

        cols[0].download_button(
            "Data (CSV)",
            to_csv(rows),
            f"{name}.csv",
            "text/csv",
            key=f"{key}_csv",
            on_click="ignore",
            icon=":material/download:",
        )
    if arrays is not None:
        cols[1].download_button(
            "Data (npz)",
            lambda: _npz(arrays()),
            f"{name}.npz",
            "application/octet-stream",
            key=f"{key}_npz",
            on_click="ignore",
            icon=":material/download:",
        )
    cols[2].download_button(
        "Figure (HTML)",
        lambda: fig.to_html(include_plotlyjs=True, full_html=True),
        f"{name}.html",
        "text/html",
        key=f"{key}_html",
        on_click="ignore",
        icon=":material/download:",
        help="Interactive and self-contained (works offline). For a PNG use the camera icon on the chart.",
    )


def _npz(arrays: dict[str, Any]) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _set(key: str, value: bool) -> None:
    st.session_state[key] = value


def run_controls(run_key: str, stop_key: str, pending_key: str, *, label: str = "Run") -> bool:
    """A Run and a Stop button; True on the run that follows a click on Run.

    Clicks act in callbacks, which run before the script: no rerun can drop them. A click on Stop
    (or on any widget) interrupts a running loop at its next progress update; what it finished is kept.
    """
    c1, c2, _ = st.columns([1, 1, 6])
    c1.button(label, key=run_key, type="primary", on_click=_set, args=(pending_key, True))
    c2.button("Stop", key=stop_key, on_click=_set, args=(pending_key, False))
    return bool(st.session_state.pop(pending_key, False))


def kept_result(
    store_key: str, key: Hashable, compute: Callable[[], Any], *, asked: bool, max_kept: int
) -> Any:
    """The result kept for ``key`` in ``st.session_state[store_key]``, computed first when ``asked``
    (the oldest dropped beyond ``max_kept``); None while nothing is kept for it.

    Raises:
        resviz.errors.ResvizError: from ``compute``; the section says it and keeps what it had.
    """
    store: dict = st.session_state.setdefault(store_key, {})
    if asked:
        store[key] = compute()
        while len(store) > max_kept:
            store.pop(next(iter(store)))
    return store.get(key)


def run_points(
    items: Sequence[Hashable],
    compute: Callable[[Hashable], Any],
    *,
    store_key: str,
    go: bool,
    describe: Callable[[Hashable], str] = str,
) -> tuple[list[Any], int]:
    """Compute the ``items`` not done yet (when ``go``), one at a time under a progress bar.

    Finished points go into ``st.session_state[store_key]`` as they complete, so a stop keeps them
    and a later Run continues from there.

    Returns:
        ``(item, result)`` for the items done so far, in ``items`` order, and how many are missing.
    """
    store: dict = st.session_state.setdefault(store_key, {})
    missing = [i for i in items if i not in store]
    if go and missing:
        bar = st.progress(0.0, text=f"Computing {describe(missing[0])}…")
        for n, item in enumerate(missing):
            store[item] = compute(item)
            while len(store) > MAX_KEPT:
                store.pop(next(iter(store)))
            nxt = f"; next {describe(missing[n + 1])}" if n + 1 < len(missing) else ""
            bar.progress(
                (n + 1) / len(missing), text=f"{describe(item)} done ({n + 1} of {len(missing)}){nxt}"
            )
        bar.empty()
    done = [(i, store[i]) for i in items if i in store]
    return done, len(items) - len(done)


# Rough throughput of small convolutions on a 2-core CPU, multiply-accumulates per second, for the
# estimates said before anything slow (a GPU is much faster; a busy CPU slower).
CPU_MACS_PER_S = 5e9


def cost(macs: float) -> str:
    """``"about 12 GMAC, roughly 3 s on a 2-core CPU"``."""
    return f"about {macs / 1e9:.0f} GMAC, roughly {max(1.0, macs / CPU_MACS_PER_S):.0f} s on a 2-core CPU"


class StopOnRerun:
    """A click on Stop as the library's ``should_stop``, so that a stopped run returns what it has.

    A click reruns the script, and Streamlit interrupts the running one by raising from its next
    ``st`` call (the progress bar): that unwound the analysis and lost every point measured. Wrapped
    by :meth:`progress`, the interruption is held instead, :meth:`should_stop` turns True, the
    analysis returns its partial result, and :meth:`resume` raises the held interruption once that
    result is kept, so the rerun (and Stop's callback) happen as before.
    """

    def __init__(self) -> None:
        self._held: BaseException | None = None

    def progress(self, update: Callable[..., None]) -> Callable[..., None]:
        from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

        def guarded(*args: Any) -> None:
            if self._held is not None:
                return
            try:
                update(*args)
            except ScriptControlException as exc:  # a rerun or stop request: finish, then honour it
                self._held = exc

        return guarded

    def should_stop(self) -> bool:
        return self._held is not None

    def resume(self) -> None:
        """Raise the held interruption, if any (after the partial result is stored)."""
        if self._held is not None:
            raise self._held
