"""How long a Feature Maps page update takes for ResNet-18 (issue 3's budget: under 0.3 s).

Switching the layer redraws from the cached forward pass; this times that rerun through
Streamlit's AppTest (the page's whole script, without a browser's drawing), median of several
switches after a warm-up. Not a test: timings on a shared machine are noisy.

    python bench/bench_pages.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_S = 0.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import os
    import tempfile

    os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp())  # never look at (or download) weights
    os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # AppTest's bare-mode warnings
    from streamlit.testing.v1 import AppTest

    from resviz.device import configure_cpu_threads
    from ui import state

    threads = configure_cpu_threads()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)

    def run(layer: str | None = None) -> float:
        at.session_state[state.MODEL_NAME] = "resnet18"  # AppTest drops the sidebar's choice
        at.session_state[state.MODEL_PLAIN] = False
        if layer is not None:
            at.selectbox(key=state.FEAT_LAYER).set_value(layer)
        start = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - start
        if at.exception:
            raise SystemExit(f"the page failed: {at.exception}")
        return elapsed

    at.session_state[state.MODEL_NAME] = "resnet18"
    at.run()
    at.switch_page("pages/feature_maps.py")
    first = run()  # builds the model and runs the network on the sample image
    layers = ["layer2.1", "layer3.0", "layer4.1", "layer1.0"]
    for layer in layers:  # warm-up: every figure path once
        run(layer)
    times = [run(layers[i % len(layers)]) for i in range(args.repeats)]
    median = statistics.median(times)
    print(f"Feature Maps, resnet18, {threads} thread(s): first view {first:.2f} s (forward pass included)")
    print(
        f"layer switch (from the cache): median {median:.3f} s, range {min(times):.3f}-{max(times):.3f} s; "
        f"{median / BUDGET_S:.2f} of the {BUDGET_S} s budget"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
