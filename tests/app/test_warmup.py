"""The warm-up (ui/warmup.py) computes exactly what the first visits of the pages ask for.

Checked the strict way: after the warm-up, the first visit of Architecture, Gradient Flow and
Why it works on the first-visit default (the bundled demo run) must compute nothing at all: every
summary, profile and model load they need is already in the shared caches. A page whose defaults
drift from the warm-up's (a new widget default, a changed label) fails here rather than silently
warming nothing.
"""

from __future__ import annotations

import pytest
import streamlit as st

import resviz.analysis.gradients as gradients
import resviz.analysis.summary as summary
import resviz.models.weights as weights
from ui import warmup

pytestmark = pytest.mark.demo_default


def test_first_visits_after_the_warm_up_compute_nothing(open_page, monkeypatch) -> None:
    st.cache_data.clear()
    st.cache_resource.clear()
    warmup._warm()  # the thread's work, here in the test's thread
    assert warmup.default_choice() is not None
    assert warmup.torch_ready()

    computed: list[str] = []
    for module, name in [
        (summary, "summarize"),
        (summary, "summarize_torchvision"),
        (gradients, "twin_profile"),
        (weights, "load_model"),
    ]:
        real = getattr(module, name)
        counted = lambda *a, _n=name, _f=real, **k: computed.append(_n) or _f(*a, **k)  # noqa: E731
        monkeypatch.setattr(module, name, counted)

    # The shattered tab's cost line counts multiply-accumulates on every visit: a ~0.05 s pass of
    # the meta model the warm-up built (no model may be built again).
    allowed = {"pages/why_it_works.py": {"summarize"}}
    builds = summary._meta_resnet.cache_info().misses
    for page in ("pages/architecture.py", "pages/gradient_flow.py", "pages/why_it_works.py"):
        at = open_page(page)
        assert not at.exception, at.exception
        assert set(computed) <= allowed.get(page, set()), f"{page} computed {computed} after the warm-up"
        computed.clear()
    assert summary._meta_resnet.cache_info().misses == builds


def test_the_warm_up_is_off_in_tests_and_torch_is_then_ready() -> None:
    assert not warmup.enabled()
    assert warmup.torch_ready()
    warmup.start()  # a no-op when off
    assert warmup._thread is None
