"""The bundled demo runs: small, loadable offline, and their stored metrics recomputed from scratch."""

from __future__ import annotations

import json

import pytest
import torch

from resviz.analysis.faithfulness import pointing_game
from resviz.analysis.pairs import model_pair, run_held_out
from resviz.datasets import load_dataset
from resviz.models.weights import load_model
from resviz.runs import BUNDLED_DIR, WEIGHTS_FP16, list_runs, read_metadata

DEMO = ("plain20", "plain56", "resnet20", "resnet56")


@pytest.fixture(scope="module")
def bundled():
    runs = {r.name: r for r in list_runs(BUNDLED_DIR / "none") if r.bundled}
    assert set(DEMO) <= set(runs), f"bundled runs missing: {set(DEMO) - set(runs)}"
    return runs


def test_the_demo_pair_is_small_float16_and_one_training_session(bundled):
    total = sum(f.stat().st_size for f in BUNDLED_DIR.rglob("*") if f.is_file())
    assert total < 8e6, f"bundled runs take {total / 1e6:.1f} MB"
    metas = [read_metadata(bundled[n].path) for n in DEMO]
    assert len({m["group"] for m in metas}) == 1  # trained side by side: each other's twins
    assert all((bundled[n].path / WEIGHTS_FP16).is_file() for n in DEMO)
    tc = metas[0]["train_config"]
    assert tc["dataset"] == "shapes" and tc["seed"] == 0  # reproducible: `make demo-weights`


def _errors(name: str, run) -> tuple[float, float, torch.nn.Module, object]:
    meta = read_metadata(run.path)
    tc = meta["train_config"]
    data = load_dataset("shapes", seed=tc["data_seed"], size=tc["size"], n_train=tc["n_train"])
    loaded = load_model(name, str(run.path))
    model = loaded.model.eval()
    probe = slice(0, 1000)  # the trainer's training-error probe: the first 1,000 training images
    with torch.no_grad():
        logits = model(data.normalize(data.x_train[probe]))
        train = (logits.argmax(1) != data.y_train[probe]).float().mean().item()
        test = (model(data.normalize(data.x_test)).argmax(1) != data.y_test).float().mean().item()
    return train, test, model, data


@pytest.mark.parametrize("name", DEMO)
def test_stored_metrics_equal_a_fresh_evaluation(bundled, name):
    run = bundled[name]
    train, test, model, data = _errors(name, run)
    # float16 weights move a few borderline images at most: 1% of the 1,000 / 500 images evaluated.
    assert train == pytest.approx(run.train_error, abs=0.01)
    assert test == pytest.approx(run.test_error, abs=0.01)
    assert pointing_game(model, data) == pytest.approx(run.pointing_game, abs=0.02)


def test_the_demo_shows_the_degradation_problem(bundled):
    err = {n: bundled[n].train_error for n in DEMO}
    assert err["plain56"] > err["plain20"] + 0.05  # deeper plain: worse, on the training set
    assert err["resnet56"] <= err["resnet20"] + 0.01  # deeper residual: at least as good


def test_a_bundled_run_pairs_with_its_trained_twin(bundled):
    loaded = load_model("resnet56", str(bundled["resnet56"].path))
    pair = model_pair(loaded)
    assert pair.residual is loaded and pair.plain.weights == "run"
    assert "trained in the same session" in pair.how
    assert pair.plain.metadata["name"] == "plain56"
    data = run_held_out(loaded.metadata, 16)
    assert data is not None and len(data.y_test) == 16 and data.masks_test.shape[0] == 16


def test_runs_cli_lists_the_bundled_runs_on_a_fresh_clone(tmp_path, capsys):
    from resviz.cli import main

    assert main(["runs", "list", "--dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(DEMO) <= set(rows) and all(rows[n]["bundled"] for n in DEMO)
    assert main(["runs", "show", rows["resnet56"]["id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {"train_error", "test_error", "pointing_game"} <= set(shown)
