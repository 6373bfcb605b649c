"""Issue 21, onboarding: Home's tour lists every page and a lecture path, the Device section on Home
does not say "Loading PyTorch…", a checkpoint that does not fit says so at once in the sidebar, and
the greyed Variant box shows a saved run's own variant."""

from __future__ import annotations

import io
import re

import pytest

from tests.app.browser import ROOT
from ui import state

PAGES = re.findall(r'st\.Page\("(pages/[a-z_]+\.py)"', (ROOT / "app.py").read_text())


def _links(at) -> list[str]:
    return [node.proto.page for node in at.get("page_link")]


def test_home_lists_every_page_and_a_lecture_path(app_test):
    assert not app_test.exception
    links = _links(app_test)
    every = [p.removeprefix("pages/").removesuffix(".py") for p in PAGES if p != "pages/home.py"]
    assert len(every) == 7 and set(every) <= set(links), links  # page links name pages by URL path
    assert any(s.value == "A lecture path" for s in app_test.subheader)
    numbered = [n.proto.label for n in app_test.get("page_link") if n.proto.label[:1].isdigit()]
    assert numbered[0].startswith("1. ") and len(numbered) >= 5
    assert any("Every page uses the sidebar's model" in m.value for m in app_test.markdown)


@pytest.mark.demo_default
def test_home_says_which_trained_run_is_loaded(open_page):
    at = open_page("pages/home.py")
    assert any("The sidebar has a **trained** network loaded" in m.value for m in at.markdown)


def test_the_device_section_on_home_never_says_loading(monkeypatch):
    """While the warm-up still imports torch, Home's Device section shows the choice without it."""
    from streamlit.testing.v1 import AppTest

    import ui.warmup

    monkeypatch.setattr(ui.warmup, "torch_ready", lambda: False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    texts = [c.value for c in at.sidebar.caption] + [m.value for m in at.sidebar.markdown]
    assert not any("Loading" in t for t in texts), texts
    device = at.sidebar.selectbox(key=state.DEVICE_WIDGET)
    assert device.value == "auto" and device.disabled


def _state_dict_bytes(name: str, **knobs) -> bytes:
    import torch

    from resviz.models import create_model

    buf = io.BytesIO()
    torch.save(create_model(name, **knobs).state_dict(), buf)
    return buf.getvalue()


def test_a_checkpoint_that_does_not_fit_says_so_in_the_sidebar_at_once(open_page):
    at = open_page("pages/home.py", model_name="resnet8", model_weights="checkpoint")
    uploader = at.sidebar.file_uploader(key=state.CHECKPOINT)
    assert "600" not in uploader.label  # the uploader states its own limit; no second number to disagree
    uploader.upload("other.pt", _state_dict_bytes("resnet20"), "application/octet-stream").run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and errors[0].startswith("other.pt does not fit resnet8"), errors
    assert errors[0].count("does not fit") == 1 and "resnet20" in errors[0]  # its guess, said once
    assert not any(c.value.startswith("Using other.pt") for c in at.sidebar.caption)
    # A file that fits: said at once too.
    at.sidebar.file_uploader(key=state.CHECKPOINT).upload(
        "good.pt", _state_dict_bytes("resnet8"), "application/octet-stream"
    ).run()
    assert not at.sidebar.error
    assert any(c.value == "Using good.pt in resnet8." for c in at.sidebar.caption)


def test_the_greyed_variant_box_shows_the_runs_variant(open_page, tmp_path, monkeypatch):
    from resviz.runs import save_run
    from tests.test_weights import fake_trained

    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(tmp_path / "runs"))
    run = save_run(fake_trained("resnet8"))
    at = open_page("pages/home.py", model_name="resnet50", model_weights="run", train_run=str(run))
    assert not at.exception
    box = at.sidebar.selectbox(key=state.MODEL_RUN_VARIANT)
    assert box.disabled and box.value == "resnet8"
    # The variant picked before is kept for when other weights are chosen.
    at.sidebar.radio(key=state.MODEL_WEIGHTS).set_value("random").run()
    assert at.sidebar.selectbox(key=state.MODEL_NAME).value == "resnet50"
