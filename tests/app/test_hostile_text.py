"""User text is shown as text on every page: a hostile run title, class name or folder never becomes markup.

The title below made another visitor's browser fetch an image when it was rendered as markdown (the
sidebar caption). Streamlit's markdown turns ``![..](..)`` into ``<img>``, ``[..](..)`` and bare
``http://`` / ``www.`` into ``<a>``: escaped text contains none of those sequences, so finding one
in any markdown element means the title became markup.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from resviz.runs import list_runs, rename_run, save_run
from tests.test_weights import fake_trained
from ui import state

HOSTILE = (
    "![t](http://evil.example.com/track.png) [click me](http://evil.example.com/x) "
    "<img src=x> www.evil.example.com x@evil.example.com"
)
# Any of these in a markdown body would render as an image or a link to evil.example.com.
# GFM autolinks bare URLs after escapes are undone: an escaped ``http\\://`` is still a link.
MARKUP = re.compile(r"(?<!\\)\](?:\\)?\(|https?\\?:|www\\?\.evil|@\w|(?<!\\)<img|(?<!\\)<a ")
PAGES = [
    "pages/home.py",
    "pages/architecture.py",
    "pages/feature_maps.py",
    "pages/gradient_flow.py",
    "pages/attribution.py",
    "pages/training_lab.py",
    "pages/runs.py",
    "pages/why_it_works.py",
]
MARKDOWN_ELEMENTS = (
    *("markdown", "caption", "error", "warning", "info", "success"),
    *("title", "header", "subheader"),
)


@pytest.fixture
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "runs"  # RESVIZ_RUNS_DIR of every test (tests/conftest.py)
    path = save_run(fake_trained("plain8", classes=(HOSTILE, "square", "star")), root)
    info = next(r for r in list_runs(root, bundled=False) if r.path == path)
    rename_run(info, HOSTILE)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _texts(at) -> list[str]:
    """Every string Streamlit renders as markdown: element bodies and widget labels."""
    out = []
    for kind in MARKDOWN_ELEMENTS:
        out += [str(getattr(e, "value", "") or getattr(e, "body", "")) for e in at.get(kind)]
    for kind in ("selectbox", "text_input", "button", "radio", "toggle", "multiselect", "expander"):
        out += [str(getattr(e, "label", "")) for e in at.get(kind)]
    return out


@pytest.mark.parametrize("page", PAGES)
def test_a_hostile_run_title_is_text_on_every_page(open_page, hostile_run, page):
    at = open_page(page, **{state.MODEL_WEIGHTS: "run", state.TRAIN_RUN: str(hostile_run)})
    assert not at.exception, [e.value for e in at.exception]
    texts = _texts(at)
    assert any("evil" in t for t in texts) or page != "pages/home.py"  # the sidebar shows the title
    leaked = [t for t in texts if "evil" in t and MARKUP.search(t)]  # the app's own links are fine
    assert not leaked, leaked


def test_the_sidebar_caption_escapes_the_title_but_keeps_its_words(open_page, hostile_run):
    at = open_page("pages/home.py", **{state.MODEL_WEIGHTS: "run", state.TRAIN_RUN: str(hostile_run)})
    caption = next(c.value for c in at.sidebar.caption if "evil" in c.value)
    assert r"!\[t\](http" + "\u200b" + "://evil.example.com/track.png)" in caption


def test_csv_cells_that_would_be_formulas_are_neutralised():
    from resviz.export import to_csv

    row = {"title": '=HYPERLINK("http://evil")', "a": "+1", "b": "@x", "c": "-2", "n": -2, "ok": "fine"}
    text = to_csv([row])
    row = text.splitlines()[1]
    assert row.startswith("\"'=HYPERLINK(") and ",'+1,'@x,'-2,-2,fine" in row


def test_the_cli_prints_no_control_characters(hostile_run, capsys):
    from resviz.cli import main

    info = next(r for r in list_runs(hostile_run.parent, bundled=False) if r.path == hostile_run)
    meta = hostile_run / "run.json"
    import json

    data = json.loads(meta.read_text())
    data["dataset"] = "sha\x1b]0;owned\x07pes\nline2"
    meta.write_text(json.dumps(data))
    assert main(["runs", "show", info.id]) == 0
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "pes\nline2" not in out


def test_plot_labels_from_titles_and_class_names_are_not_plotly_markup():
    from resviz.plots.attribution import top_k_figure
    from resviz.plots.training import training_curves_figure
    from resviz.runs import run_curves

    title = 'x <a href="http://evil.example.com">click</a> <b>y</b>'
    bars = top_k_figure([title, "cat"], [0.6, 0.4], target=title)
    assert "<a" not in "".join(bars.data[0].y) and "&lt;a href" in "".join(bars.data[0].y)
    assert list(bars.data[0].marker.color)[-1] == "#d62728"  # the target is still told apart
    run = save_run(fake_trained("plain8"), Path(os.environ["RESVIZ_RUNS_DIR"]))
    try:
        info = rename_run(next(r for r in list_runs(run.parent, bundled=False) if r.path == run), title)
        fig = training_curves_figure([run_curves(info)], "loss", by_name=True)
        assert "<a" not in fig.data[0].name and fig.data[0].name.startswith("x &lt;a href")
    finally:
        shutil.rmtree(run)
