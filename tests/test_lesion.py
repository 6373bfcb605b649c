"""Lesion study: deletion means what it says, errors are exact, and the shared model is left alone."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from resviz.analysis.lesion import (
    LesionError,
    LesionSettings,
    block_infos,
    curve_rows,
    lesion_network,
    lesion_study,
    lesioned_error,
    shortcut_only,
    single_rows,
    single_sweep,
    swap_pairs,
)
from resviz.hooks import forward_hooks, hook_count
from resviz.models import create_model, make_twin

FAST = LesionSettings(n_images=32, ks=(1, 2), swap_ks=(1,), draws=2, batch_size=16)


def _batch(n: int = 24, size: int = 8, classes: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.randint(classes, (n,), generator=gen)


def _tiny(name: str = "resnet8", **knobs):
    knobs.setdefault("widths", (4, 8, 8))
    knobs.setdefault("stem_width", 4)
    return create_model(name, seed=0, num_classes=4, **knobs).eval()


def _error(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return int((model(x).argmax(1) != y).sum()) / len(y)


@pytest.mark.parametrize(
    "knobs",
    [
        {},  # option A: identity, and the padded strided identity where the shape changes
        {"shortcut": "B"},
        {"shortcut": "C"},
        {"preact": True, "shortcut": "B"},
        {"block": "bottleneck", "widths": (2, 4, 4)},
    ],
)
def test_shortcut_only_is_the_block_with_its_branch_zeroed(knobs):
    model = _tiny("resnet8", **knobs)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        h = model.conv1(x)
        for name, block in model.named_blocks():
            zero = {f"{name}.branch_out": lambda m, i, o: torch.zeros_like(o)}
            with forward_hooks(model, zero):
                expected = block(h)
            torch.testing.assert_close(shortcut_only(block, h), expected, rtol=0, atol=0)
            h = block(h)


def test_no_deletion_gives_exactly_the_intact_error():
    model = _tiny()
    x, y = _batch()
    intact = _error(model, x, y)
    with torch.no_grad():
        assert lesioned_error(model, x, y) == intact
        err, _ = single_sweep(model, x, y, batch_size=7)  # batches of uneven size
    assert err == intact


def test_deleting_a_block_whose_branch_is_zero_changes_nothing():
    model = _tiny(shortcut="B")
    x, y = _batch()
    with torch.no_grad():
        # Hand-built: layer1.0's last BatchNorm outputs exactly zero, so F(x) = 0 in that block.
        model.layer1[0].bn2.weight.zero_()
        model.layer1[0].bn2.bias.zero_()
        intact = _error(model, x, y)
        _, single = single_sweep(model, x, y)
        assert single[0] == intact
        assert lesioned_error(model, x, y, deleted=[0]) == intact
        # Every branch zero (zero-init, BN bias 0): any set of deletions leaves the logits as they are.
        zero = _tiny(shortcut="B", zero_init_residual=True)
        _, single = single_sweep(zero, x, y)
        assert np.all(single == _error(zero, x, y))


def test_a_plain_block_is_removed_only_where_the_shape_allows():
    plain = _tiny("plain8")
    infos = block_infos(plain)
    assert [b.deletable for b in infos] == [True, False, False]  # layer2.0, layer3.0 downsample
    assert "changes the shape" in infos[1].how
    x, y = _batch()
    with torch.no_grad():
        # Removing layer1.0 of plain-8 by hand: stem, then layers 2 and 3, then the head.
        h = plain.relu(plain.bn1(plain.conv1(x)))
        logits = plain.fc(torch.flatten(plain.avgpool(plain.layer3(plain.layer2(h))), 1))
        expected = int((logits.argmax(1) != y).sum()) / len(y)
        assert lesioned_error(plain, x, y, deleted=[0]) == expected
        _, single = single_sweep(plain, x, y)
    assert single[0] == expected and math.isnan(single[1]) and math.isnan(single[2])
    with pytest.raises(LesionError, match="changes the shape"):
        lesioned_error(plain, x, y, deleted=[1])


def test_residual_blocks_are_all_deletable_and_downsampling_marked():
    infos = block_infos(_tiny(shortcut="B"))
    assert [b.downsamples for b in infos] == [False, True, True]
    assert all(b.deletable for b in infos)
    assert "projection" in infos[1].how and infos[0].how.endswith("y = x")
    assert "zero-padded" in block_infos(_tiny())[1].how  # option A


def test_a_swap_runs_the_blocks_in_the_swapped_order():
    model = _tiny("resnet14")  # two blocks a stage: only layer1.0 and layer1.1 have the same shapes
    infos = block_infos(model)
    assert swap_pairs(infos) == [(0, 1)]
    x, y = _batch()
    with torch.no_grad():
        h = model.relu(model.bn1(model.conv1(x)))
        h = model.layer1[0](model.layer1[1](h))
        logits = model.fc(torch.flatten(model.avgpool(model.layer3(model.layer2(h))), 1))
        expected = int((logits.argmax(1) != y).sum()) / len(y)
        assert lesioned_error(model, x, y, swaps=[(0, 1)]) == expected
    with pytest.raises(LesionError, match="same shapes"):
        lesioned_error(model, x, y, swaps=[(1, 2)])


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()]


def _assert_unchanged(model, snap):
    state, modes = snap
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes
    assert hook_count(model) == 0


def test_the_model_is_left_exactly_as_it_was_after_success_and_failure():
    model = _tiny().train()  # a model in train mode must come back in train mode, stats untouched
    snap = _snapshot(model)
    x, y = _batch()
    res = lesion_network(model, x, y, FAST, name="resnet8")
    _assert_unchanged(model, snap)
    assert res.single_error.shape == (3,) and res.k_error.shape == (2, 2)

    def fail_halfway(done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        lesion_network(model, x, y, FAST, name="resnet8", progress=fail_halfway)
    _assert_unchanged(model, snap)
    with pytest.raises(RuntimeError):  # a wrong input fails inside the walk
        lesion_network(model, torch.randn(4, 1, 8, 8), y[:4], FAST, name="resnet8")
    _assert_unchanged(model, snap)


def test_other_threads_never_see_a_lesion():
    model = _tiny()
    x, y = _batch()
    with torch.no_grad():
        expected = model(x)
    seen: list[bool] = []

    def reader() -> None:
        for _ in range(20):
            with torch.no_grad():
                seen.append(torch.equal(model(x), expected))

    t = threading.Thread(target=reader)
    t.start()
    lesion_network(model, x, y, LesionSettings(ks=(1, 2, 3), swap_ks=(), draws=4), name="resnet8")
    t.join()
    assert seen and all(seen)


def test_more_deletions_than_blocks_is_one_sentence():
    x, y = _batch()
    with pytest.raises(LesionError, match="only 3"):
        lesion_network(_tiny(), x, y, LesionSettings(ks=(4,)), name="resnet8")


def test_k_deletions_and_swaps_have_nan_where_impossible():
    model = _tiny()
    plain = make_twin(model).eval()
    x, y = _batch()
    res = lesion_network(plain, x, y, LesionSettings(ks=(1, 2), swap_ks=(1,), draws=3), name="plain8")
    assert np.all(np.isfinite(res.k_error[0])) and np.all(np.isnan(res.k_error[1]))  # one deletable
    assert np.all(np.isnan(res.swap_error))  # resnet8 has no two same-shape blocks in a stage


@pytest.fixture(scope="module")
def shapes_runs(tmp_path_factory):
    """A plain-8 and a ResNet-8 trained together for a few steps on 16x16 shapes, saved as runs."""
    from resviz.runs import save_run
    from resviz.training import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        dataset="shapes",
        models=("plain8", "resnet8"),
        steps=3,
        widths=(4, 8, 8),
        n_train=64,
        batch_size=16,
        device="cpu",
    )
    return {r.name: save_run(r, root) for r in train(cfg)}, root


def test_study_of_a_trained_pair_on_its_held_out_set(shapes_runs, monkeypatch):
    from resviz.models.weights import load_model

    paths, root = shapes_runs
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(root))
    loaded = load_model("resnet8", paths["resnet8"])
    snap = _snapshot(loaded.model)
    calls = []
    study = lesion_study(loaded, FAST, progress=lambda d, t: calls.append((d, t)))
    _assert_unchanged(loaded.model, snap)
    assert study.residual.model == "resnet8" and study.plain.model == "plain8"
    assert "same session" in study.how and study.n_images == 32
    assert calls[-1][0] == calls[-1][1]  # the bar ends full
    assert any("layer2.0" in n for n in study.notes)
    rows = single_rows(study)
    assert len(rows) == 6 and rows[4]["deleted_error"] is None
    assert len(curve_rows(study)) == 2 * 2 * 2
    json.dumps(rows)


def test_a_model_without_held_out_data_is_told_so():
    from resviz.models.weights import load_model

    with pytest.raises(LesionError, match="untrained"):
        lesion_study(load_model("resnet8"), FAST)


def test_figures_mark_downsampling_blocks_and_carry_the_numbers(shapes_runs, monkeypatch):
    from resviz.models.weights import load_model
    from resviz.plots.lesion import curve_figure, single_figure

    paths, root = shapes_runs
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(root))
    study = lesion_study(load_model("resnet8", paths["resnet8"]), FAST)
    fig = single_figure(study)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name.split(" ")[0] for t in bars] == ["resnet8", "plain8"]
    assert bars[0].y[0] == pytest.approx(study.residual.single_error[0] * 100)
    assert bars[1].y[1] is None  # plain8's layer2.0 cannot be removed: no bar, a marker instead
    assert any("cannot be removed" in (t.name or "") for t in fig.data)
    assert "↓" in fig.layout.xaxis.ticktext[1] and "↓" not in fig.layout.xaxis.ticktext[0]
    curve = curve_figure(study)
    means = [t for t in curve.data if t.name.endswith("mean")]
    assert list(means[0].x) == [0, 1, 2]
    assert means[0].y[0] == pytest.approx(study.residual.intact_error * 100)
    assert means[0].y[2] == pytest.approx(np.mean(study.residual.k_error[1]) * 100)
    assert curve_figure(study, "swap").data


def _cli(args, capsys):
    from resviz.cli import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_has_both_networks(shapes_runs, monkeypatch, capsys):
    paths, root = shapes_runs
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(root))
    argv = ["lesion", "--model", "resnet8", "--weights", str(paths["resnet8"]), "--images", "16"]
    code, out, _ = _cli([*argv, "--k", "1,3", "--swaps", "1", "--draws", "2", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["residual"]["model"] == "resnet8" and doc["plain"]["model"] == "plain8"
    assert doc["plain"]["single"][1]["error"] is None and doc["plain"]["delete_k"]["3"] == [None, None]
    code, out, _ = _cli([*argv, "--k", "1", "--swaps", "", "--draws", "1"], capsys)
    assert code == 0 and "error after deleting one block" in out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--model", "resnet9", "--weights", "random"], "resnet9"),
        (["--model", "resnet8", "--weights", "random"], "no held-out images"),
        (["--model", "resnet8", "--weights", "RUN", "--data", "digits"], "trained on shapes"),
        (["--model", "resnet8", "--weights", "RUN", "--k", "4"], "only 3"),
    ],
)
def test_cli_bad_input_is_one_sentence_and_exit_2(shapes_runs, capsys, extra, words):
    paths, _ = shapes_runs
    extra = [str(paths["resnet8"]) if e == "RUN" else e for e in extra]
    code, out, err = _cli(["lesion", *extra, "--images", "8", "--json"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_imagenet_weights_are_lesioned_against_their_own_top1_on_the_sample_photos():
    from resviz.analysis.lesion import LesionSettings, lesion_study, study_data
    from resviz.models import create_model
    from resviz.models.weights import LoadedModel
    from resviz.preprocessing import for_config

    model = create_model("resnet_tiny", num_classes=1000, seed=0).eval()
    loaded = LoadedModel(
        model=model,
        name="resnet_tiny",
        weights="imagenet",  # what the sidebar's ImageNet choice gives: trained, 1000 named classes
        source="ImageNet (test stand-in)",
        preprocessing=for_config(model.config),
        class_names=tuple(f"class {i}" for i in range(1000)),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y, what = study_data(loaded, 3)
    assert len(y) == 3 and "sample photos" in what and "disagreement" in what
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), y)  # the labels are the intact model's own top-1
    study = lesion_study(loaded, LesionSettings(n_images=3, ks=(1,), swap_ks=(1,), draws=1))
    assert study.residual.intact_error == 0.0  # the intact network agrees with itself
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
