"""The Runs page: saved and bundled runs in one table, curves overlaid, saved runs renamed and deleted."""

from __future__ import annotations

import json

import pytest

from resviz.runs import list_runs, save_run
from tests.test_weights import fake_trained
from ui import state


@pytest.fixture
def saved(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "runs"  # RESVIZ_RUNS_DIR of every test (tests/conftest.py)
    path = save_run(fake_trained("plain8"), root)
    yield path
    for info in list_runs(root, bundled=False):
        if info.path.exists():
            import shutil

            shutil.rmtree(info.path)


def _charts(at) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


def test_the_table_lists_saved_and_bundled_runs_and_draws_curves(open_page, saved):
    at = open_page("pages/runs.py")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert saved.name in set(table["id"])
    assert {"bundled", "saved"} <= set(table["origin"])  # the demo runs ship with resviz
    (chart,) = _charts(at)
    assert "bundled demo runs" in chart["layout"]["title"]["text"]
    assert {d["name"].split(" · ")[0] for d in chart["data"]} >= {"plain20", "resnet56"}


def test_ticked_saved_runs_can_be_renamed_and_deleted(open_page, saved):
    at = open_page("pages/runs.py")
    tick(at, saved.name)
    assert not at.exception
    assert "· " + saved.name[:15] in _charts(at)[0]["data"][0]["name"]
    at.text_input(key=f"{state.RUNS_TITLE}{saved.name}").set_value("long plain").run()
    at.button(key=f"{state.RUNS_RENAME}{saved.name}").click().run()
    assert not at.exception
    assert [r.title for r in list_runs(saved.parent, bundled=False)] == ["long plain"]
    at.button(key=f"{state.RUNS_DELETE}{saved.name}").click().run()
    assert saved.exists()  # Delete asks first, naming the run
    assert any("long plain" in w.value and saved.name in w.value.replace("\\", "") for w in at.warning)
    at.button(key=f"{state.RUNS_DELETE}{saved.name}_yes").click().run()
    assert not at.exception and not saved.exists()


def tick(at, *ids: str):
    """Tick the rows of these run ids, as a click in the table would, and rerun."""
    rows = list(at.dataframe[0].value["id"])
    selection = {"rows": [rows.index(i) for i in ids], "columns": [], "cells": []}
    at.session_state[table_key()] = {"selection": selection}
    return at.run()


def table_key() -> str:
    """The runs table's widget key: pages/runs.py makes it from the ids listed (newest first)."""
    import hashlib

    ids = "\n".join(r.id for r in list_runs()).encode()
    return f"{state.RUNS_TABLE}{hashlib.sha256(ids).hexdigest()[:12]}"


def test_a_junk_folder_is_named_not_a_traceback(open_page, saved):
    junk = saved.parent / "junk"
    junk.mkdir()
    (junk / "run.json").write_text("{}")
    (junk / "model.pt").write_bytes(b"")
    try:
        at = open_page("pages/runs.py")
        assert not at.exception
        assert any("not a readable run" in w.value for w in at.warning)
    finally:
        import shutil

        shutil.rmtree(junk)
