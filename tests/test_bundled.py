"""The bundled demo group: He et al.'s Figure 6 from its stored files, seed 0 recomputed from scratch.

Every claim of the README about the demo group is a check of :func:`resviz.demo.degradation_checks`,
asserted here per seed; seed 0's stored errors are recomputed from its float16 weights, and a cheap
part of each precomputed slow result is computed again and compared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from resviz.analysis.faithfulness import pointing_game
from resviz.analysis.pairs import model_pair, run_held_out
from resviz.datasets import load_dataset
from resviz.demo import GROUP, MODELS, degradation_checks, load_seeds
from resviz.models.weights import load_model
from resviz.runs import BUNDLED_DIR, WEIGHTS_FP16, list_runs, read_metadata

SEEDS = load_seeds()
# Checks the bundled group is known to miss, each with what was measured. Listed by hand (not derived
# from the data, which would make them pass whatever the files say) and strict: a retrained group
# that meets one fails here until the line is removed. The README's report shows them as "no".
KNOWN_MISSES: dict[tuple[int, str], str] = {
    (1, "plain-56 trains: final loss at most half of ln(classes)"): (
        "seed 1's plain-56 sat on its plateau near ln 6 until about step 1,000, when the rate decays "
        "(loss 1.62 at step 800, 1.41 at 1,100)"
    ),
    (1, "plain-56 trains: training error at most 40%"): "the same plateau",
}


def _checks():
    for check in degradation_checks(SEEDS):
        why = KNOWN_MISSES.get((check.seed, check.claim))
        marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
        yield pytest.param(check, marks=marks, id=f"seed{check.seed}-{check.claim[:40]}")


@pytest.fixture(scope="module")
def bundled():
    runs = {r.name: r for r in list_runs(BUNDLED_DIR / "none") if r.bundled}
    assert set(MODELS) <= set(runs), f"bundled runs missing: {set(MODELS) - set(runs)}"
    return runs


def test_the_demo_group_is_small_float16_and_one_training_session(bundled):
    weights = sum((bundled[n].path / WEIGHTS_FP16).stat().st_size for n in MODELS)
    assert weights < 5e6, f"the four models take {weights / 1e6:.1f} MB"
    total = sum(f.stat().st_size for f in BUNDLED_DIR.parent.rglob("*") if f.is_file())
    assert total < 12e6, f"the bundle takes {total / 1e6:.1f} MB"
    metas = [read_metadata(bundled[n].path) for n in MODELS]
    assert {m["group"] for m in metas} == {GROUP}  # trained side by side: each other's twins
    tc = metas[0]["train_config"]
    assert tc["dataset"] == "shapes" and tc["seed"] == 0 and tc["size"] == 32  # `make demo-weights`


def test_three_seeds_are_stored():
    assert sorted(SEEDS) == [0, 1, 2]
    assert all(set(models) == set(MODELS) for models in SEEDS.values())


@pytest.mark.parametrize("check", list(_checks()))
def test_figure_6_holds_on_every_seed(check):
    """plain-56 trains and degrades; ResNet-56 is no worse than ResNet-20; ResNets generalise."""
    assert check.holds, f"seed {check.seed}: {check.claim}: {check.figure}"


def test_the_checks_are_the_issues_and_can_fail():
    """A plain-56 stuck at chance fails the 'trains' checks (the old demo group's figures)."""
    import dataclasses

    stuck = {**SEEDS[0]}
    stuck["plain56"] = dataclasses.replace(stuck["plain56"], final_loss=1.767, train_error=0.788)
    failed = {c.claim for c in degradation_checks({0: stuck}) if not c.holds}
    assert "plain-56 trains: final loss at most half of ln(classes)" in failed
    assert "plain-56 trains: training error at most 40%" in failed


def test_the_last_stage_map_is_8x8(bundled):
    loaded = load_model("resnet56", str(bundled["resnet56"].path))
    x = torch.zeros(1, 3, 32, 32)
    feats = {}
    h = loaded.model.layer3.register_forward_hook(lambda _m, _i, o: feats.__setitem__("out", o))
    try:
        loaded.model(x)
    finally:
        h.remove()
    assert feats["out"].shape[-2:] == (8, 8)


def _errors(name: str, run) -> tuple[float, float, torch.nn.Module, object]:
    meta = read_metadata(run.path)
    tc = meta["train_config"]
    data = load_dataset(
        "shapes", seed=tc["data_seed"], size=tc["size"], n_train=1000, n_test=tc["n_test"]
    )  # the training probe: the first 1,000 training images (a prefix of the 32,000)
    model = load_model(name, str(run.path)).model.eval()
    with torch.no_grad():
        train = (model(data.normalize(data.x_train)).argmax(1) != data.y_train).float().mean().item()
        test = (model(data.normalize(data.x_test)).argmax(1) != data.y_test).float().mean().item()
    return train, test, model, data


@pytest.mark.parametrize("name", MODELS)
def test_seed_0_stored_metrics_equal_a_fresh_evaluation(bundled, name):
    run = bundled[name]
    train, test, model, data = _errors(name, run)
    # float16 weights move a few borderline images at most: 1 point of the 1,000 images evaluated.
    assert train == pytest.approx(run.train_error, abs=0.01)
    assert test == pytest.approx(run.test_error, abs=0.01)
    assert SEEDS[0][name].train_error == run.train_error and SEEDS[0][name].test_error == run.test_error
    if name == "resnet56":
        assert pointing_game(model, data) == pytest.approx(run.pointing_game, abs=0.02)


def test_a_bundled_run_pairs_with_its_trained_twin(bundled):
    loaded = load_model("resnet56", str(bundled["resnet56"].path))
    pair = model_pair(loaded)
    assert pair.residual is loaded and pair.plain.weights == "run"
    assert pair.plain.metadata["name"] == "plain56"
    data = run_held_out(loaded.metadata, 16)
    assert data is not None and len(data.y_test) == 16 and data.masks_test.shape[0] == 16


def test_no_comparison_warning_on_the_demo_group(bundled):
    from resviz.analysis.pairs import untrained_warning

    assert untrained_warning(load_model("resnet56", str(bundled["resnet56"].path))) is None


def test_runs_cli_lists_the_demo_group_with_intervals(tmp_path, capsys):
    from resviz.cli import main

    assert main(["runs", "list", "--dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out) if r["bundled"]}
    assert set(MODELS) <= set(rows)
    r56 = rows["resnet56"]
    lo, hi = r56["train_error_ci95"]
    assert lo <= r56["train_error"] <= hi and r56["n_train_probe"] == 1000 and r56["n_test"] == 1000
    assert rows["plain56"]["train_error"] >= rows["plain20"]["train_error"] + 0.03


# --------------------------------------------------------------------------- precomputed results


def _stored(kind):
    from resviz.demo_results import path
    from resviz.serialize import loads

    return loads(path(kind).read_text())


def test_precomputed_lesion_single_deletions_recompute(bundled):
    from resviz.analysis.lesion import single_sweep_wrong, study_data
    from resviz.hooks import preserve_model_state

    item = _stored("lesion")
    loaded = load_model("resnet56", str(bundled["resnet56"].path))
    x, y, _ = study_data(loaded, item.key.n_images)
    with preserve_model_state(loaded.model), torch.inference_mode():
        intact, wrong, can = single_sweep_wrong(loaded.model, x, y)
    res = item.result.residual
    assert intact.mean() == pytest.approx(res.intact_error, abs=0.002)  # 2 images of 1,000
    assert np.allclose(np.where(can, wrong.mean(1), np.nan), res.single_error, atol=0.002, equal_nan=True)


def test_precomputed_landscape_centre_recomputes(bundled):
    import torch.nn.functional as F

    from resviz.analysis.landscape import evaluation_images
    from resviz.analysis.pairs import held_out

    item = _stored("landscape")
    grid, _span, n, _interp = item.key
    loaded = load_model("resnet56", str(bundled["resnet56"].path))
    x, y = evaluation_images(held_out(loaded, n), n)
    surface = item.result.residual
    c = grid // 2
    assert surface.alpha[c] == 0 and surface.beta[c] == 0
    with torch.no_grad():
        loss = F.cross_entropy(loaded.model.eval()(x), y).item()
    assert surface.loss[c, c] == pytest.approx(loss, rel=1e-3)


def test_precomputed_story_seed_0_recomputes():
    from resviz.analysis.story import story_at_init

    item = _stored("story_init")
    depth, _seeds = item.key
    fresh = story_at_init(depth, (0,), device="cpu")
    for row in fresh.rows:
        old = next(
            r for r in item.result.rows if (r.model, r.batchnorm, r.seed) == (row.model, row.batchnorm, 0)
        )
        for measure in ("activation", "weight", "relative"):
            assert row.get(measure) == pytest.approx(old.get(measure), rel=1e-3)
