"""Paths: the binomial count, per-path gradients that add up to the full one, the effective range."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binom
from torch import nn

from resviz.analysis.lesion import LesionError
from resviz.analysis.paths import (
    PathSettings,
    effective_range,
    path_counts,
    path_gradients,
    path_profile,
    path_rows,
    path_study,
    residual_block_names,
)
from resviz.hooks import hook_count
from resviz.models import create_model


@pytest.mark.parametrize("n", [1, 3, 9, 27, 54])
def test_path_lengths_are_binomial_and_sum_to_two_to_the_n(n):
    counts = path_counts(n)
    assert sum(counts) == 2**n
    np.testing.assert_allclose(np.array(counts, dtype=float) / 2**n, binom.pmf(np.arange(n + 1), n, 0.5))
    assert n != 54 or max(range(n + 1), key=counts.__getitem__) == 27  # ResNet-110: mean length 27


def _linear(name: str = "resnet8", **knobs):
    """A residual net with no ReLU and no BatchNorm: every function of it is linear."""
    model = create_model(
        name, seed=0, num_classes=3, batchnorm=False, widths=(4, 8, 8), stem_width=4, **knobs
    )
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, child_name, nn.Identity())
    return model.eval()


@pytest.mark.parametrize("knobs", [{}, {"shortcut": "B"}])
def test_all_path_gradients_add_up_to_the_full_gradient(knobs):
    model = _linear(**knobs)
    n = len(residual_block_names(model))
    assert n == 3
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    every = [frozenset(c) for k in range(n + 1) for c in itertools.combinations(range(n), k)]
    full, *paths = path_gradients(model, x, y, [None, *every])
    # Independent reference: the ordinary gradient at the first block's input, by autograd.
    h = model.conv1(x).detach().requires_grad_(True)
    out = h
    for _, block in model.named_blocks():
        out = block(out)
    loss = F.cross_entropy(model.fc(torch.flatten(model.avgpool(out), 1)), y)
    (expected,) = torch.autograd.grad(loss, h)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(torch.stack(paths).sum(0), expected, rtol=1e-4, atol=1e-6)
    # The path through no branch at all is the chain of shortcuts alone: never zero.
    assert paths[0].norm() > 0 and hook_count(model) == 0


def test_the_one_path_through_every_branch_of_a_linear_net_is_the_product_of_the_branches():
    model = _linear(shortcut="B")
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    (through_all,) = path_gradients(model, x, y, [frozenset({0, 1, 2})])
    h = model.conv1(x).detach().requires_grad_(True)
    out = h
    for _, block in model.named_blocks():
        out = block.branch(out)  # the branch alone, no shortcut
    logits = model.fc(torch.flatten(model.avgpool(out), 1))
    # The upstream gradient is the full network's d(loss)/d(logits), taken at the full forward pass.
    dlogits = torch.softmax(model(x), 1) - F.one_hot(y, 3)
    (expected,) = torch.autograd.grad(logits, h, grad_outputs=dlogits / len(y))
    torch.testing.assert_close(through_all, expected, rtol=1e-4, atol=1e-6)


def test_effective_range_is_the_shortest_window_holding_the_share():
    assert effective_range(np.array([0, 1, 8, 1, 0]), 0.8) == (2, 2)
    assert effective_range(np.array([0, 1, 8, 1, 0]), 0.9) in ((1, 2), (2, 3))  # 9 of 10
    assert effective_range(np.array([0, 1, 8, 1, 0]), 0.95) == (1, 3)
    assert effective_range(np.array([5.0, 0, 0, 0, 5.0]), 1.0) == (0, 4)
    assert effective_range(np.zeros(4)) == (0, 3)


def test_profile_of_a_residual_net_leaves_it_unchanged():
    model = create_model("resnet8", seed=0, num_classes=4, widths=(4, 8, 8), stem_width=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(6, 3, 8, 8), torch.randint(4, (6,))
    prof = path_profile(model, x, y, PathSettings(samples=3), name="resnet8", label="untrained", train=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    assert all(m.training for m in model.modules()) and hook_count(model) == 0
    assert prof.n == 3 and prof.counts.tolist() == [1, 3, 3, 1]
    np.testing.assert_allclose(prof.total, prof.counts * prof.grad)
    lo, hi = prof.effective
    assert 0 <= lo <= hi <= 3 and prof.full_grad > 0

    def fail(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        path_profile(model, x, y, PathSettings(samples=3), name="r", label="u", train=True, progress=fail)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules()) and hook_count(model) == 0


def test_study_of_an_untrained_model_and_a_plain_one():
    from resviz.models.weights import load_model

    loaded = load_model("resnet8")
    study = path_study(loaded, PathSettings(samples=2, batch_size=4))
    assert study.trained is None and study.untrained.n == 3 and "random inputs" in study.data
    rows = path_rows(study)
    assert len(rows) == 4 and sum(r["paths"] for r in rows) == 8
    with pytest.raises(LesionError, match="no shortcut"):
        path_study(load_model("plain8"))
    assert math.isfinite(study.untrained.full_grad)


def test_figure_has_counts_gradients_and_the_effective_range():
    from resviz.models.weights import load_model
    from resviz.plots.paths import paths_figure

    study = path_study(load_model("resnet8"), PathSettings(samples=2, batch_size=4))
    fig = paths_figure(study)
    assert list(fig.data[0].y) == [1, 3, 3, 1]
    assert list(fig.data[1].y) == pytest.approx(study.untrained.grad.tolist())
    lo, hi = study.untrained.effective
    assert f"effective paths {lo}-{hi}" in fig.data[2].name
    # The range is a labelled bar of its own (issue 21: two shaded bands read as one).
    bar = fig.data[3]
    assert list(bar.x) == [lo - 0.4, hi + 0.4] and bar.text[-1] == f"untrained: {lo}-{hi}"
    # On the log axis no lower error bar reaches zero: at most nine tenths of the mean.
    minus = np.asarray(fig.data[1].error_y.arrayminus)
    assert (minus <= 0.9 * study.untrained.grad + 1e-12).all()
    assert list(fig.data[1].error_y.array) == pytest.approx(study.untrained.grad_std.tolist())


def test_cli_json_and_bad_input(capsys):
    import json

    from resviz.cli import main

    assert main(["paths", "--model", "resnet8", "--samples", "1", "--batch", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["profiles"][0]["blocks"] == 3 and len(doc["lengths"]) == 4
    assert main(["paths", "--model", "plain8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no shortcut" in err and err.count("\n") == 1
    assert main(["paths", "--model", "resnet9"]) == 2
