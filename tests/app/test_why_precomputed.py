"""A first visit to Why it works shows the demo group's bundled slow results at once, labelled."""

from __future__ import annotations

import json

import numpy as np
import pytest

PAGE = "pages/why_it_works.py"


def _charts(at) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


@pytest.mark.demo_default
def test_first_visit_shows_the_precomputed_lesion_study_landscape_and_paths(open_page):
    from resviz.demo_results import path
    from resviz.serialize import loads

    at = open_page(PAGE)
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert captions.count("Precomputed") >= 3  # lesion, landscape, paths (and the story)
    assert not at.warning or all("has not learned anything" not in w.value for w in at.warning)
    lesion = loads(path("lesion").read_text()).result
    bars = next(
        c for c in _charts(at) if c["layout"]["title"]["text"].startswith("Error after deleting one block")
    )
    residual = next(
        t for t in bars["data"] if t["type"] == "bar" and t["name"].startswith(lesion.residual.model)
    )
    expected = [None if not np.isfinite(v) else 100 * v for v in lesion.residual.single_error]
    assert residual["y"] == pytest.approx(expected)
    assert residual["error_y"]["array"]  # the intervals are drawn
