"""Warm the server while the first visitor reads Home.

A fresh server would make the first visit of each page pay for importing torch (3-5 s on 2 cores),
loading the default model and computing that page's default figures. The first run of app.py in a
process starts one background thread that does this work, in the order a visitor meets it. Every
result goes into the same shared caches the pages use (:mod:`ui.shared_results`, the model cache),
so a page that asks for a result still being computed waits for it instead of computing it twice,
and nothing is computed that the page would not compute itself with its default settings.

Off when ``RESVIZ_WARMUP=0`` (the test suite: it would compete with the tests for the CPU).
A failing step is logged and skipped: the page will compute, and report, the same thing itself.

Imports are never made by two threads at once. Python's per-module import locks give up on what
they take for a deadlock and hand one thread a half-imported module (seen here once:
``partially initialized module 'pandas'`` in this thread while a page's plotly looked for pandas).
So the libraries a page imports without asking (pandas and pyarrow for ``st.dataframe``, plotly's
own look for pandas) are imported by the script thread that starts the warm-up, before the thread
exists; and a page other than Home waits (:func:`wait_for_imports`) until the thread has imported
torch and everything else it needs, which that page would otherwise be importing at the same time.
"""

from __future__ import annotations

import logging
import os
import threading
import time

WARMUP_ENV = "RESVIZ_WARMUP"
_log = logging.getLogger("resviz.warmup")
_started = threading.Lock()
_thread: threading.Thread | None = None
_torch_ready = threading.Event()
_imports_done = threading.Event()
IMPORT_WAIT_S = 120.0  # a page waits at most this long for the warm-up's imports, then goes on


def enabled() -> bool:
    return os.environ.get(WARMUP_ENV, "1") != "0"


def start() -> None:
    """Start the warm-up once per process (later calls return at once)."""
    global _thread
    if not enabled() or _thread is not None:
        return
    with _started:
        if _thread is None:
            _import_page_libraries()  # here, on the script thread: see the module docstring
            _thread = threading.Thread(target=_warm, name="resviz-warmup", daemon=True)
            _thread.start()


def _import_page_libraries() -> None:
    """What pages import implicitly (0.4 s, on the first visit's Home, after it is drawn)."""
    import pandas  # noqa: F401  (st.dataframe's first call; plotly looks for it in every figure)
    import plotly.graph_objects  # noqa: F401
    import pyarrow  # noqa: F401


def wait_for_imports(timeout: float = IMPORT_WAIT_S) -> bool:
    """Block until the warm-up thread has made its imports (at once when it is off or done).

    app.py calls it before every page but Home, which imports no torch: a page importing torch,
    captum or resviz's analyses while the thread imports them risks a half-imported module or a
    hang. Returns False when it gave up waiting (logged: the page then goes on anyway).
    """
    if _thread is None or _imports_done.is_set():
        return True
    if _imports_done.wait(timeout):
        return True
    _log.warning("a page waited %.0f s for the warm-up's imports and goes on without them", timeout)
    return False


def torch_ready() -> bool:
    """Whether torch can be used without waiting for its import (always, when the warm-up is off)."""
    return not enabled() or _torch_ready.is_set()


def _warm() -> None:
    choice = None
    try:
        _timed(_import_torch, None)
        choice = default_choice()  # None when the demo run is not installed: the model steps do nothing
    except Exception:
        _log.warning("warm-up could not find the demo run", exc_info=True)
    finally:
        _imports_done.set()
    for step in (_default_model, _architecture, _gradient_flow, _why_it_works):  # nav order
        _timed(step, choice)


def _timed(step, choice) -> None:
    start = time.perf_counter()
    try:
        step(choice)
    except Exception:  # the page computes (and reports) the same thing itself
        _log.warning("warm-up step %s failed", step.__name__, exc_info=True)
    _log.info("warm-up %s: %.2f s", step.__name__, time.perf_counter() - start)


def _import_torch(_choice) -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401

        from resviz.device import available_devices, configure_cpu_threads

        configure_cpu_threads()
        available_devices()
    finally:
        _torch_ready.set()
    import captum.attr  # noqa: F401  (a second, on the first attribution otherwise)

    # Everything the later steps import, so that they only compute once pages may run.
    import resviz.analysis.batches
    import resviz.analysis.features
    import resviz.analysis.pairs
    import resviz.analysis.summary
    import resviz.analysis.twins
    import resviz.runs  # noqa: F401
    import ui.models
    import ui.sections.landscape
    import ui.sections.story
    import ui.shared_results  # noqa: F401


def default_choice():
    """The sidebar's first-visit model (the bundled demo run), or None when it is not installed."""
    from resviz.runs import list_runs
    from ui.models import DEMO_MODEL, ModelChoice

    demo = next((r for r in list_runs() if r.bundled and r.name == DEMO_MODEL), None)
    if demo is None:
        return None
    return ModelChoice(demo.name, "run", None, "auto", str(demo.path))


def _default_model(choice) -> None:
    """The demo model, and the shapes its Feature Maps memory check asks for (a meta pass)."""
    from resviz.analysis.features import estimate_bytes, layer_options
    from ui.models import _load

    if choice is not None:
        loaded = _load(choice)
        crop = loaded.preprocessing.crop
        options = layer_options(loaded.model)
        estimate_bytes(loaded.model, options.layers, (1, loaded.preprocessing.channels, crop, crop))


def _gradient_flow(_choice) -> None:
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.twins import TwinSettings
    from ui.shared_results import twin_gradient_profile

    twin_gradient_profile(TwinSettings(), BatchSettings(), "auto", True)


def _architecture(choice) -> None:
    from resviz.models import ResNetConfig
    from resviz.runs import read_metadata
    from ui.shared_results import PEER_MIN_SIZE, default_input_size, reference_summaries, run_twin, summary_of

    if choice is None:
        return
    meta = read_metadata(choice.run_path)
    config = ResNetConfig.from_dict(dict(meta["variant_config"]))
    size = default_input_size(config, meta)
    summary_of(config, size, choice.name)
    twin, label = run_twin(config, choice.name)
    summary_of(twin, size, label)
    reference_summaries(max(size, PEER_MIN_SIZE))


def _why_it_works(choice) -> None:
    """The story's bundled measurements (read and decoded once) and the landscape's cost probe."""
    from resviz.analysis.pairs import held_out
    from resviz.demo_results import STORY_INIT_KEY, bundled
    from ui.models import _load
    from ui.sections import landscape

    bundled("story_init", STORY_INIT_KEY)
    bundled("story_training", "snapshots")
    if choice is not None:
        loaded = _load(choice)
        data = held_out(loaded, 1)
        size, channels = (data.size, data.channels) if data is not None else (32, 3)
        landscape._seconds_per_image(repr(loaded.source), loaded, size, channels)
