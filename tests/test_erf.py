"""Effective receptive field (Luo et al. 2016): exact answers on box-filter stacks, the theoretical
field, the model left untouched, figures and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from resviz.analysis.erf import (
    effective_receptive_field,
    erf_pair,
    erf_sweep,
    sweep_rows,
    theoretical_field,
)
from resviz.cli import main as cli_main
from resviz.errors import ConfigError, LayerNotFoundError, LayerNotUsedError
from resviz.hooks import hook_count
from resviz.models import create_model, make_twin
from resviz.models.weights import load_model
from resviz.plots import erf as plots


def _box_stack(k: int) -> nn.Sequential:
    convs = [nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(k)]
    for c in convs:
        nn.init.ones_(c.weight)
    return nn.Sequential(*convs)


def _k_boxes(k: int, size: int) -> np.ndarray:
    """The exact k-fold discrete convolution of 3x3 box filters, centred in a size x size frame."""
    kernel = np.ones(1)
    for _ in range(k):
        kernel = np.convolve(kernel, np.ones(3))  # 1D; a box filter is separable
    full = np.outer(kernel, kernel)
    out = np.zeros((size, size))
    c, r = size // 2, k
    out[c - r : c + r + 1, c - r : c + r + 1] = full
    return out / out.sum()


@pytest.mark.parametrize("k", [1, 2, 4])
def test_erf_of_k_box_filters_is_their_exact_convolution(k: int) -> None:
    model = _box_stack(k)
    x = torch.randn(3, 1, 17, 17, generator=torch.Generator().manual_seed(k))
    erf = effective_receptive_field(model, str(k - 1), x)
    np.testing.assert_allclose(erf.map, _k_boxes(k, 17), rtol=1e-6, atol=1e-12)
    assert erf.theoretical == 2 * k + 1 and erf.centre == (8, 8)
    assert erf.size(1.0) == 2 * k + 1  # all the mass lies inside the theoretical field
    assert erf.size(erf.map[8, 8] / 2) == 1  # the centre pixel alone holds a share > half of itself


def test_theoretical_field_of_known_networks() -> None:
    assert theoretical_field(create_model("resnet18"), "layer4").size == 435  # the published figure
    r20 = create_model("resnet20")
    assert theoretical_field(r20, "layer1").size == 3 + 3 * 2 * 2  # stem + 3 blocks of two 3x3 convs
    assert theoretical_field(r20, "layer2.0.conv1").jump == 2
    with pytest.raises(LayerNotFoundError):
        theoretical_field(r20, "layer9")


def test_model_unchanged_and_no_hooks_after_success_and_failure() -> None:
    model = create_model("resnet_tiny", seed=0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 16, 16)
    effective_receptive_field(model, "layer1", x, chunk=2)
    with pytest.raises(ConfigError):
        effective_receptive_field(model, "fc", x)  # no spatial map: fails inside the hooks
    plain = make_twin(model)
    with pytest.raises(LayerNotUsedError):
        effective_receptive_field(plain, "layer1.0.shortcut_out", x)
    for m in (model, plain):
        assert hook_count(m) == 0 and all(mod.training for mod in m.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_pair_and_sweep_and_figures() -> None:
    loaded = load_model("resnet8", seed=0)
    pair = erf_pair(loaded, "layer1", n=2)
    assert (pair.residual.model, pair.plain.model) == ("resnet8", "plain8")
    assert pair.residual.map.shape == (32, 32) and pair.residual.map.sum() == pytest.approx(1.0)
    fig = plots.heatmaps_figure([pair.residual, pair.plain])
    assert [t.type for t in fig.data].count("heatmap") == 2
    sweep = erf_sweep("8,14", n=2)
    assert sweep.theoretical.tolist() == [7, 11]  # 4n + 3 for n blocks in the first stage
    rows = sweep_rows(sweep, 0.9)
    assert [r["depth"] for r in rows] == [8, 14] and all(r["plain_erf"] <= 11 for r in rows)
    size_fig = plots.size_figure(sweep)
    assert list(size_fig.data[0].y) == [7, 11] and len(size_fig.data) == 3
    with pytest.raises(ConfigError):
        erf_sweep("9")


def test_cli_json_and_bad_input(capsys, monkeypatch) -> None:
    monkeypatch.setenv("RESVIZ_THREADS", str(torch.get_num_threads()))  # the CLI sets threads: keep ours
    assert cli_main(["erf", "--model", "resnet8", "--layer", "layer1.0", "--n", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["theoretical_rf"] == 7 and set(doc["erf"]) == {"resnet8", "plain8"}
    for argv in (["--model", "resnet999"], ["--layer", "layer9"], ["--depths", "2,x"], ["--mass", "0"]):
        assert cli_main(["erf", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
