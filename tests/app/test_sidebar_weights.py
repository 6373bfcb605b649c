"""The sidebar loads every weights source through resviz.models.weights.load_model."""

from __future__ import annotations

import io

import pytest
import streamlit as st
import torch

from resviz.errors import CheckpointError
from resviz.models import create_model
from resviz.models import weights as W
from ui.models import ModelChoice, _load, weights_spec


def _state_dict_bytes(name: str, **knobs) -> bytes:
    buf = io.BytesIO()
    torch.save(create_model(name, **knobs).state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def calls(monkeypatch):
    """Every (name, spec) that reaches load_model; the real loader still does the work."""
    seen: list[tuple[str, W.WeightsSpec]] = []
    real = W.load_model

    def spy(name, weights="random", **kwargs):
        seen.append((name, weights))
        return real(name, weights, **kwargs)

    monkeypatch.setattr(W, "load_model", spy)
    st.cache_resource.clear()  # a model cached by another test would skip the loader
    yield seen
    st.cache_resource.clear()


@pytest.fixture
def saved_run(tmp_path):
    from resviz.runs import save_run
    from tests.test_weights import fake_trained

    return save_run(fake_trained("plain8"), tmp_path / "runs")


def test_the_choice_becomes_a_spec():
    data = _state_dict_bytes("resnet8")
    assert weights_spec(ModelChoice("resnet8")) == W.WeightsSpec("random")
    assert weights_spec(ModelChoice("resnet18", "imagenet")) == W.WeightsSpec("imagenet")
    up = weights_spec(ModelChoice("resnet8", "checkpoint", "abc"), ("tiny.pt", data))
    assert up == W.WeightsSpec.checkpoint(data, filename="tiny.pt")
    assert weights_spec(ModelChoice("plain8", "run", run_path="/r/x")) == W.WeightsSpec.run("/r/x")
    with pytest.raises(CheckpointError, match="Upload a checkpoint"):
        weights_spec(ModelChoice("resnet8", "checkpoint"))
    with pytest.raises(CheckpointError, match="No saved training run"):
        weights_spec(ModelChoice("resnet8", "run"))


def test_the_loader_goes_through_load_model_for_a_run(calls, saved_run):
    loaded = _load(ModelChoice("plain8", "run", device="cpu", run_path=str(saved_run)))
    assert calls == [("plain8", W.WeightsSpec.run(saved_run))]
    assert loaded.weights == "run" and loaded.class_names[0] == "circle" and loaded.notice is None
    _load(ModelChoice("plain8", "run", device="cpu", run_path=str(saved_run)))
    assert len(calls) == 1  # cached on the choice


def test_the_loader_goes_through_load_model_for_a_checkpoint(calls):
    data = _state_dict_bytes("resnet8", num_classes=3)
    st.session_state["checkpoint_file"] = ("tiny.pt", data)  # bare mode: a plain dict per process
    try:
        loaded = _load(ModelChoice("resnet8", "checkpoint", "d1", device="cpu"))
    finally:
        del st.session_state["checkpoint_file"]
    assert calls == [("resnet8", W.WeightsSpec.checkpoint(data, filename="tiny.pt"))]
    assert loaded.source == "checkpoint tiny.pt" and loaded.config.num_classes == 3


def test_a_checkpoint_uploaded_in_the_sidebar_reaches_load_model(calls, open_page):
    at = open_page("pages/feature_maps.py", model_name="resnet8", model_weights="checkpoint")
    data = _state_dict_bytes("resnet8", num_classes=3)
    at.sidebar.file_uploader(key="checkpoint_upload").upload(
        "tiny.pt", data, "application/octet-stream"
    ).run()
    assert not at.exception and not at.error
    assert [(n, s.kind, s.filename, s.data == data) for n, s in calls] == [
        ("resnet8", "checkpoint", "tiny.pt", True)
    ]


@pytest.mark.demo_default
def test_a_first_visit_opens_on_the_bundled_trained_resnet56(open_page):
    from ui import state

    at = open_page("pages/architecture.py")
    assert not at.exception
    assert at.session_state[state.MODEL_WEIGHTS] == "run"
    assert "demo-shapes-resnet56" in at.session_state[state.TRAIN_RUN]
    # Architecture draws the run's own configuration (widths 8/16/32), not the registry's resnet56.
    assert any("as trained in run demo-shapes-resnet56" in m.value for m in at.markdown)


@pytest.mark.demo_default
def test_a_runs_held_out_images_are_the_samples_with_their_true_class(open_page):
    at = open_page("pages/attribution.py")
    assert not at.exception
    (picker,) = [w for w in at.multiselect if w.label == "Images"]
    assert picker.value[0].startswith("held-out 0: ")
    assert any(o.startswith("held-out 11: ") for o in picker.options)
    assert "chelsea (cat)" in picker.options  # the photos stay one click away


def test_a_chosen_model_is_not_overridden_by_the_demo(open_page, monkeypatch):
    import ui.models
    from ui import state

    monkeypatch.setattr(ui.models, "DEMO_MODEL", "resnet56")
    at = open_page("pages/architecture.py", **{state.MODEL_NAME: "resnet_tiny"})
    assert not at.exception and at.session_state[state.MODEL_WEIGHTS] == "random"
