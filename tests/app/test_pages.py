"""AppTest of the app shell, Home and Architecture, and a no-exception pass over every page."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.app.browser import ROOT

PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))


def charts(at) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


def test_home_explains_and_draws_both_blocks(app_test):
    assert not app_test.exception
    assert "skip connections" in app_test.title[0].value
    titles = [c["layout"]["title"]["text"] for c in charts(app_test)]
    assert titles == ["basic block", "bottleneck block"]
    # The sidebar model picker is there on every page, with the default model.
    assert app_test.sidebar.selectbox[0].value == "resnet18"


def test_architecture_shows_stages_charts_and_csv(app_test, monkeypatch):
    import streamlit as st

    offered: dict[str, bytes] = {}  # what each download button hands the browser
    real = st.download_button

    def keep(label, data, *args, **kwargs):
        offered[label] = data
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", keep)
    at = app_test.switch_page("pages/architecture.py").run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Depth"] == "18 layers" and metrics["Multiply-accumulates"] == "1.81 G"
    assert len(charts(at)) >= 3  # network, stage bars, peers
    # Every table has its CSV, and each CSV holds that table's rows.
    tables = ["Stage table (CSV)", "Layer table (CSV)", "Side-by-side table (CSV)", "Comparison (CSV)"]
    assert [b.proto.label for b in at.get("download_button")] == tables
    rows = {label: list(csv.DictReader(io.StringIO(offered[label].decode()))) for label in tables}
    for label, df in zip(tables, at.dataframe):
        assert len(rows[label]) == len(df.value), label
    peers = rows["Comparison (CSV)"]
    assert [r["model"] for r in peers] == list(at.dataframe[3].value["model"])
    resnet18 = next(r for r in peers if r["model"] == "resnet18")
    assert (resnet18["depth"], resnet18["params"]) == ("18", "11689512")  # torchvision's count


def test_architecture_knobs_change_the_model(app_test):
    at = app_test.switch_page("pages/architecture.py").run()
    at.toggle(key="arch_skip_resnet18").set_value(False).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Shortcut additions"] == "0.00 M"


def test_sidebar_choice_survives_page_switches(app_test):
    app_test.sidebar.selectbox(key="model_name").set_value("resnet20").run()
    at = app_test.switch_page("pages/architecture.py").run()
    assert not at.exception
    assert at.sidebar.selectbox(key="model_name").value == "resnet20"
    assert {m.label: m.value for m in at.metric}["Depth"] == "20 layers"


def test_architecture_follows_the_sidebar_choice(open_page):
    at = open_page("pages/architecture.py", model_name="resnet20", model_plain=True)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Depth"] == "20 layers" and metrics["Shortcut additions"] == "0.00 M"
    assert "plain20" in at.markdown[0].value


def test_cutting_single_shortcuts_changes_the_count(open_page):
    at = open_page("pages/architecture.py", model_name="resnet20")
    before = {m.label: m.value for m in at.metric}["Shortcut additions"]
    at.multiselect(key="arch_cut_resnet20").set_value(["layer1.0", "layer1.1"]).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Shortcut additions"] != before


def test_impossible_knobs_give_a_message_not_a_traceback(open_page):
    # Every knob the Architecture page offers builds (option A pads channels, even on bottlenecks):
    at = open_page("pages/architecture.py", model_name="resnet_tiny_bottleneck")
    at.selectbox(key="arch_option_resnet_tiny_bottleneck").set_value("A").run()
    assert not at.exception and not at.error
    # ...while a stage layout that cannot exist is refused in one sentence.
    at = open_page("pages/gradient_flow.py", model_name="resnet_tiny", grad_stages="9,0,9")
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("Give three positive stage sizes") and "18,18,18" in error.value


# Every page once on the tiny ImageNet-style net: these open it nowhere else. The Attribution and
# Feature maps pages are opened on resnet_tiny by their own tests, the Architecture page by
# test_peers_say_the_input_size_they_are_measured_at; running them here again bought nothing.
SMOKE = {
    "pages/home.py": "resviz: why skip connections work",
    "pages/gradient_flow.py": "Gradient Flow",
    "pages/runs.py": "Runs",
    "pages/training_lab.py": "Training Lab",
    "pages/why_it_works.py": "Why it works",
}
OPENED_ON_RESNET_TINY_ELSEWHERE = {"pages/attribution.py", "pages/feature_maps.py", "pages/architecture.py"}


def test_every_page_is_smoke_tested_somewhere():
    assert set(PAGES) == set(SMOKE) | OPENED_ON_RESNET_TINY_ELSEWHERE


@pytest.mark.parametrize("page", sorted(SMOKE))
def test_every_page_runs_without_exception(open_page, page):
    at = open_page(page, model_name="resnet_tiny")
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    assert at.title[0].value == SMOKE[page]  # this page ran, not only the shell around it


def _state_dict_bytes(name: str, **knobs) -> bytes:
    import io

    import torch

    from resviz.models import create_model

    buf = io.BytesIO()
    torch.save(create_model(name, **knobs).state_dict(), buf)
    return buf.getvalue()


def test_a_checkpoint_uploaded_in_the_sidebar_is_used_by_the_pages(open_page):
    at = open_page("pages/feature_maps.py", model_name="resnet8", model_weights="checkpoint")
    assert [e.value for e in at.error] == ["Upload a checkpoint file in the sidebar, or pick other weights."]
    at.sidebar.file_uploader(key="checkpoint_upload").upload(
        "tiny.pt", _state_dict_bytes("resnet8", num_classes=3), "application/octet-stream"
    ).run()
    assert not at.exception and not at.error
    assert any("checkpoint tiny.pt" in c.value for c in at.caption)  # the banner names the weights


def test_a_checkpoint_that_does_not_fit_gets_a_sentence(open_page):
    at = open_page("pages/feature_maps.py", model_name="resnet56", model_weights="checkpoint")
    at.sidebar.file_uploader(key="checkpoint_upload").upload(
        "r20.pt", _state_dict_bytes("resnet20"), "application/octet-stream"
    ).run()
    assert not at.exception
    (error,) = at.main.error  # the sidebar says it too, at once (tests/app/test_onboarding.py)
    assert "r20.pt does not fit resnet56" in error.value and "resnet20" in error.value


@pytest.fixture
def saved_digits_run(tmp_path, monkeypatch):
    """A two-step run on the 8x8 one-channel digits: the Training Lab's default dataset."""
    from resviz.runs import save_run
    from resviz.training import TrainConfig, train

    runs = tmp_path / "runs"
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(runs))
    cfg = TrainConfig(
        dataset="digits", models=("resnet8",), steps=2, widths=(4, 8, 8), batch_size=16, device="cpu"
    )
    (result,) = train(cfg)
    return save_run(result, runs)


@pytest.mark.parametrize("page", ["pages/feature_maps.py", "pages/attribution.py"])
def test_a_one_channel_run_works_on_the_image_pages(saved_digits_run, open_page, page):
    at = open_page(page, model_weights="run", train_run=str(saved_digits_run))
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    assert not at.error, f"{page}: {[e.value for e in at.error]}"
    assert at.get("plotly_chart"), f"{page} drew nothing"


# --------------------------------------------------------------------------- issue 11's polish list


def test_home_names_the_families_properly_and_counts_without_a_change_arrow(app_test):
    metrics = {m.label: m for m in app_test.metric}
    assert list(metrics) == ["ImageNet", "CIFAR", "Tiny"]
    assert all(not m.proto.delta for m in metrics.values())  # a count is not a rise
    assert any("plain twin" in c.value for c in app_test.caption)


def test_the_device_label_shows_the_threads_models_run_with_from_the_first_paint(monkeypatch):
    """Issue 11: "CPU (1 threads)" on Home (torch's default), "CPU (2 threads)" once a model loaded."""
    import torch
    from streamlit.testing.v1 import AppTest

    from ui import state

    before = torch.get_num_threads()
    monkeypatch.setenv("RESVIZ_THREADS", "1")  # what models will run with; torch may say otherwise
    torch.set_num_threads(2)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state[state.DEVICE] = "cpu"
        at.run()
        assert not at.exception
        assert "CPU (1 thread)" in [c.value for c in at.sidebar.caption]
    finally:
        torch.set_num_threads(before)


def _labels(df) -> list[str]:
    """The headers a dataframe shows: its column config's label, else the column's own name."""
    config = json.loads(df.proto.columns or "{}")
    return [config.get(c, {}).get("label", c) for c in df.value.columns]


def test_architecture_tables_have_headers_for_people_and_no_cut_total(open_page):
    at = open_page("pages/architecture.py", model_name="resnet20")
    assert not at.exception and len(at.dataframe) == 4  # stages, every layer, side by side, peers
    for df in at.dataframe:
        for label in _labels(df):
            assert "_" not in label and label not in {"macs", "adds", "params", "stage", "model"}, label
    pair = at.dataframe[2].value
    total = pair.iloc[-1]
    assert total["stage"] == "total" and total["resnet20 output"] == "20 layers"


def test_peers_say_the_input_size_they_are_measured_at(open_page):
    at = open_page("pages/architecture.py", model_name="resnet20")  # a CIFAR net: 32x32 chosen
    text = next(m.value for m in at.markdown if "peers" in m.value)
    assert "64x64 input" in text and "Not at the chosen 32x32" in text
    at = open_page("pages/architecture.py", model_name="resnet_tiny")  # ImageNet-style: 224
    assert not at.exception and at.title[0].value == "Architecture"
    text = next(m.value for m in at.markdown if "peers" in m.value)
    assert "224x224 input" in text and "Not at" not in text


def test_option_c_draws_a_projection_and_a_plain_net_no_shortcut_legend(open_page):
    at = open_page("pages/architecture.py", model_name="resnet20")
    at.selectbox(key="arch_option_resnet20").set_value("C").run()
    assert not at.exception
    block = next(c for c in charts(at) if "basic block" in c["layout"].get("title", {}).get("text", ""))
    texts = " ".join(a.get("text", "") for a in block["layout"]["annotations"])
    assert "projection" in texts and "identity" not in texts and "W<sub>s</sub>x" in texts
    legend = [t["name"] for t in charts(at)[0]["data"] if t.get("name")]
    assert legend == ["projection shortcut"]  # option C: every arc is a projection

    at = open_page("pages/architecture.py", model_name="resnet20", model_plain=True)
    network = charts(at)[0]
    assert not [t for t in network["data"] if "shortcut" in (t.get("name") or "")]
    assert any("no shortcuts" in a.get("text", "") for a in network["layout"]["annotations"])
