"""Shattered gradients (Balduzzi et al. 2017): the autocorrelation, the gradient along a line, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from resviz.analysis.shattered import (
    ToySettings,
    autocorrelation,
    freeze_batch_statistics,
    image_line,
    line_pair,
    parse_depths,
    sweep_rows,
    toy_sweep,
    toy_twins,
)
from resviz.cli import main as cli_main
from resviz.errors import ConfigError
from resviz.hooks import hook_count
from resviz.models import create_model
from resviz.models.weights import load_model
from resviz.plots import shattered as plots


def _numpy_acf(x: np.ndarray) -> np.ndarray:
    """The textbook estimator, straight from np.correlate."""
    c = x - x.mean()
    full = np.correlate(c, c, mode="full")[len(x) - 1 :]
    return full / full[0]


def test_autocorrelation_equals_numpys_on_a_known_signal() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4 * np.pi, 200)
    x = np.sin(t) + 0.3 * rng.standard_normal(200)
    np.testing.assert_allclose(autocorrelation(x), _numpy_acf(x), atol=1e-12)
    np.testing.assert_allclose(autocorrelation(x, max_lag=5), _numpy_acf(x)[:6], atol=1e-12)


def test_vector_autocorrelation_sums_the_coordinates_covariances() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 3, 2)).cumsum(axis=0)  # brown noise in 6 coordinates
    cols = x.reshape(64, -1)
    cov = sum(np.correlate(c - c.mean(), c - c.mean(), "full")[63:] for c in cols.T)
    np.testing.assert_allclose(autocorrelation(x), cov / cov[0], atol=1e-12)


def test_white_noise_is_uncorrelated_and_a_constant_is_fully_correlated() -> None:
    rng = np.random.default_rng(2)
    assert abs(autocorrelation(rng.standard_normal(4096))[1]) < 0.05
    np.testing.assert_array_equal(autocorrelation(np.full(10, 3.5)), np.ones(10))
    with pytest.raises(ConfigError):
        autocorrelation(np.ones(1))


def test_a_linear_network_has_one_gradient_along_the_whole_line() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4), nn.Linear(4, 5))
    a, b = torch.randn(2, 3, 6, 6)
    line = image_line(model, a, b, target=2, points=32)
    w = (model[2].weight @ model[1].weight)[2].detach().double().numpy()  # d(logit 2)/dx, by hand
    np.testing.assert_allclose(line.trace, np.full(32, w[0 * 36 + 3 * 6 + 3]), rtol=1e-5)
    np.testing.assert_array_equal(line.acf, np.ones(32))
    assert line.lag1 == 1.0


def test_gradient_along_the_line_matches_the_closed_form() -> None:
    class Square(nn.Module):  # f(x)[0] = sum x^2: the gradient is 2x, a straight line along the line
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = (x**2).flatten(1).sum(1, keepdim=True)
            return torch.cat([s, -s], 1)

    a, b = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    line = image_line(Square(), a, b, target=0, points=16)
    t = np.linspace(0, 1, 16)
    expected = 2 * ((1 - t) * a[0, 2, 2].item() + t * b[0, 2, 2].item())
    np.testing.assert_allclose(line.trace, expected, rtol=1e-5, atol=1e-6)
    x = (1 - t)[:, None] * a.flatten().numpy() + t[:, None] * b.flatten().numpy()
    np.testing.assert_allclose(line.acf, _numpy_vector_acf(2 * x), atol=1e-6)  # float32 gradients


def _numpy_vector_acf(x: np.ndarray) -> np.ndarray:
    cov = sum(np.correlate(c - c.mean(), c - c.mean(), "full")[len(c) - 1 :] for c in x.T)
    return cov / cov[0]


def test_toy_twins_share_every_weight_and_batchnorm_uses_the_lines_statistics() -> None:
    s = ToySettings(width=8, points=32, repeats=1)
    residual, plain = toy_twins(3, s, seed=0)
    for (k, v), (k2, v2) in zip(residual.state_dict().items(), plain.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.linspace(-2, 2, 32).unsqueeze(1)
    freeze_batch_statistics(plain, x)
    h = plain.inp(x).detach()
    torch.testing.assert_close(plain.norms[0].running_mean, h.mean(0))
    torch.testing.assert_close(plain.norms[0].running_var, h.var(0))  # unbiased, as BatchNorm keeps it
    assert not plain.training


def test_deep_plain_gradients_shatter_and_residual_ones_do_not() -> None:
    sweep = toy_sweep([1, 30], ToySettings(width=32, points=128, repeats=2))
    assert sweep.depths.tolist() == [1, 30]
    assert sweep.plain_lag1[0] > 0.9 and sweep.residual_lag1[0] > 0.9  # one layer: smooth
    assert sweep.plain_lag1[1] < 0.2 < 0.5 < sweep.residual_lag1[1]  # Balduzzi et al., fig. 3
    rows = sweep_rows(sweep)
    assert rows[1]["depth"] == 30 and rows[1]["plain_lag1"] == pytest.approx(sweep.plain_lag1[1])
    fig = plots.lag1_figure(sweep)
    assert [t.name for t in fig.data] == ["residual", "plain"]
    assert list(fig.data[1].y) == pytest.approx(sweep.plain_lag1.tolist())
    assert len(plots.trace_figure([sweep.residual[1], sweep.plain[1]]).data) == 2
    assert len(plots.acf_figure([sweep.residual[1], sweep.plain[1]], max_lag=10).data[0].x) == 11


@pytest.mark.parametrize("text", ["", "2,x", "0,10", "2,10000"])
def test_bad_depths_are_one_sentence(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_depths(text)


def test_the_model_is_left_exactly_as_it_was_even_after_a_failure() -> None:
    model = create_model("resnet_tiny", seed=0, num_classes=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b = torch.randn(2, 3, 16, 16)
    image_line(model, a, b, points=8, chunk=4)
    with pytest.raises(ConfigError):
        image_line(model, a, b, target=99, points=8)
    assert model.training and all(m.training for m in model.modules())
    assert hook_count(model) == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_a_model_and_its_twin_differentiate_the_same_output() -> None:
    loaded = load_model("resnet8", seed=0)
    pair = line_pair(loaded, points=16)
    assert pair.residual.model == "resnet8" and pair.plain.model == "plain8"
    assert pair.residual.output == pair.plain.output
    assert pair.residual.residual and not pair.plain.residual
    assert "random" in pair.source and hook_count(loaded.model) == 0


def test_cli_json_and_bad_input(capsys, monkeypatch) -> None:
    monkeypatch.setenv("RESVIZ_THREADS", str(torch.get_num_threads()))  # the CLI sets threads: keep ours
    assert (
        cli_main(
            ["shattered", "--depths", "1,3", "--width", "16", "--points", "32", "--repeats", "1", "--json"]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert [r["depth"] for r in doc["depths"]] == [1, 3]
    for argv in (
        ["--depths", "2,x"],
        ["--depths", "0"],
        ["--trained", "no-such-run"],
        ["--conv", "--depths", "9"],
    ):
        assert cli_main(["shattered", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


def test_a_saved_run_and_its_twin_on_a_line_between_held_out_images(capsys, monkeypatch) -> None:
    from resviz.runs import save_run
    from tests.test_weights import fake_trained

    monkeypatch.setenv("RESVIZ_THREADS", str(torch.get_num_threads()))
    save_run(fake_trained("plain8"), group="pair")
    save_run(fake_trained("resnet8"), group="pair")
    argv = ["shattered", "--depths", "1", "--width", "8", "--points", "16", "--repeats", "1", "--json"]
    assert cli_main([*argv, "--trained", "resnet8"]) == 0
    trained = json.loads(capsys.readouterr().out)["trained"]
    assert set(trained["lag1"]) == {"resnet8", "plain8"}
    assert (
        "trained in the same session" in trained["source"] and "held-out shapes images" in trained["source"]
    )
