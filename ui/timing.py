"""Optional log of each script run's server time, for the browser benchmark (bench/bench_browser.py).

Off unless ``RESVIZ_SCRIPT_LOG`` names a file: then every run of app.py (and of a timed fragment)
appends one JSON line, ``{"end": <unix time>, "seconds": <wall time>, "page": <title>,
"fragment": <bool>}``. The benchmark pairs those with its click-to-chart times, so the time spent
outside the script (websocket, browser drawing) is visible beside the time spent computing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG_ENV = "RESVIZ_SCRIPT_LOG"


@contextmanager
def script_timer(page_title: str, *, fragment: bool = False) -> Iterator[None]:
    """Time the enclosed script run (also when Streamlit stops it for a rerun) if logging is on.

    ``fragment``: the timed code is an ``st.fragment``, which also runs inside a whole run.
    """
    path = os.environ.get(LOG_ENV)
    start = time.perf_counter()
    try:
        yield
    finally:
        if path:
            seconds = time.perf_counter() - start
            line = {"end": time.time(), "seconds": seconds, "page": page_title, "fragment": fragment}
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
