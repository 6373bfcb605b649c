"""Loss landscape: directions, grids, a closed-form quadratic, the model left as it was, CLI, plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resviz.analysis.landscape import (
    direction_slice,
    filter_normalize,
    initial_state,
    interpolation,
    local_minima,
    random_direction,
    shape_summary,
    surface,
    surface_rows,
)
from resviz.analysis.landscape_eval import EvalOptions
from resviz.cli import main as cli_main
from resviz.errors import ConfigError
from resviz.hooks import hook_count
from resviz.models import create_model, make_twin
from resviz.plots import landscape as plots

ROOT = Path(__file__).resolve().parents[1]
LOOP, VMAP = EvalOptions(method="loop"), EvalOptions(method="vmap")
KNOBS = {"widths": (4, 8, 8), "stem_width": 4, "num_classes": 4}


def _trained_like(name: str = "resnet8", **knobs) -> nn.Module:
    """A tiny net whose BatchNorm running statistics are not the defaults (as after training)."""
    model = create_model(name, seed=0, **{**KNOBS, **knobs})
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(7)) * 2 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 3, 8, 8, generator=g), torch.randint(0, 4, (12,), generator=g)


def _snapshot(model: nn.Module) -> dict[str, bytes]:
    return {k: v.detach().cpu().numpy().tobytes() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("options", [LOOP, VMAP], ids=["loop", "vmap"])
def test_the_centre_of_the_grid_is_the_models_own_loss_exactly(data, options):
    model = _trained_like()
    x, y = data
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y).item()
    result = surface(model, x, y, grid=3, span=0.5, options=options)
    assert result.loss[1, 1] == expected  # bit for bit: θ + 0δ + 0η is θ, and the call is the same
    assert result.complete and np.isfinite(result.loss).all()
    line = direction_slice(model, x, y, grid=3, span=0.5, options=options)
    assert line.loss[1] == expected


def test_loop_vmap_and_batched_images_agree(data):
    model = _trained_like()
    x, y = data
    loop = surface(model, x, y, grid=3, span=0.8, options=LOOP)
    vmap = surface(model, x, y, grid=3, span=0.8, options=EvalOptions(method="vmap", points_per_call=4))
    chunks = surface(model, x, y, grid=3, span=0.8, options=EvalOptions(method="loop", batch_size=5))
    np.testing.assert_allclose(vmap.loss, loop.loss, rtol=1e-5)
    np.testing.assert_allclose(chunks.loss, loop.loss, rtol=1e-5)
    np.testing.assert_array_equal(vmap.accuracy, loop.accuracy)


def test_filter_normalized_directions_have_the_weights_filter_norms():
    model = _trained_like()
    weights = {k: v.detach().numpy() for k, v in model.named_parameters()}
    d = {k: v.numpy() for k, v in random_direction(model, seed=3).items()}
    assert set(d) == set(weights)
    for name, w in weights.items():
        if w.ndim <= 1:  # BatchNorm weights and biases, the classifier's bias: zero in the direction
            assert not d[name].any(), name
            continue
        w_norms = np.linalg.norm(w.reshape(len(w), -1), axis=1)
        d_norms = np.linalg.norm(d[name].reshape(len(w), -1), axis=1)
        np.testing.assert_allclose(d_norms, w_norms, rtol=1e-5, err_msg=name)
    # A filter of θ that is zero gives a zero filter of the direction, not a division by zero.
    zero = filter_normalize({"w": torch.ones(2, 3)}, {"w": torch.tensor([[0.0] * 3, [1.0] * 3])})["w"]
    assert not zero[0].any() and torch.allclose(
        zero[1].norm(), torch.tensor(np.sqrt(3.0), dtype=torch.float32)
    )


def test_the_same_seeds_give_twins_the_same_directions_on_common_parameters():
    res = _trained_like(shortcut="B")  # projection shortcuts: parameters the plain twin lacks
    plain = make_twin(res)
    d_res, d_plain = random_direction(res, 5), random_direction(plain, 5)
    common = set(d_res) & set(d_plain)
    assert set(d_res) - common and common  # the residual net has extra (downsample) parameters
    for name in common:
        torch.testing.assert_close(d_res[name], d_plain[name], rtol=0, atol=0, msg=name)
    # Raw directions match too when the weights differ (a twin trained on its own).
    other = create_model("plain8", seed=9, **KNOBS)
    raw_res, raw_other = (
        random_direction(res, 5, normalize=False),
        random_direction(other, 5, normalize=False),
    )
    for name in common:
        assert torch.equal(raw_res[name], raw_other[name]), name
    assert not torch.equal(random_direction(res, 6)["conv1.weight"], d_res["conv1.weight"])


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(3, 5, generator=g))
            self.fc.bias.copy_(torch.randn(3, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_a_linear_model_with_squared_error_gives_the_closed_form_quadratic():
    """L(α, β) = mean((R0 + α RD + β RE)²) with R0 = XWᵀ + b - T, RD = XDᵀ, RE = XEᵀ (biases fixed)."""
    model = _Linear()
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(20, 5, 1, 1, generator=g), torch.randn(20, 3, generator=g)
    options = EvalOptions(method="loop", loss=F.mse_loss, batch_size=7)  # several batches, float64 sums
    result = surface(model, x, t, grid=5, span=1.5, seeds=(0, 1), options=options)
    X = x.flatten(1).double().numpy()
    W, b = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    D, E = (random_direction(model, s)["fc.weight"].double().numpy() for s in (0, 1))
    R0, RD, RE = X @ W.T + b - t.double().numpy(), X @ D.T, X @ E.T
    a, bb = np.meshgrid(result.alpha, result.beta, indexing="ij")
    expected = (
        np.mean(R0**2)
        + 2 * a * np.mean(R0 * RD)
        + 2 * bb * np.mean(R0 * RE)
        + a**2 * np.mean(RD**2)
        + 2 * a * bb * np.mean(RD * RE)
        + bb**2 * np.mean(RE**2)
    )
    np.testing.assert_allclose(result.loss, expected, rtol=1e-5)
    assert np.isnan(result.accuracy).all()  # no classes, no accuracy
    vmap = surface(model, x, t, grid=5, span=1.5, options=EvalOptions(method="vmap", loss=F.mse_loss))
    np.testing.assert_allclose(vmap.loss, expected, rtol=1e-5)


@pytest.mark.parametrize("options", [LOOP, VMAP], ids=["loop", "vmap"])
def test_the_model_is_left_exactly_as_it_was_after_a_run_a_stop_and_an_error(data, options):
    model = _trained_like()
    model.layer1.train()  # an odd mix of modes must survive too
    before, modes = _snapshot(model), [m.training for m in model.modules()]
    x, y = data

    surface(model, x, y, grid=3, span=0.5, options=options)
    assert _snapshot(model) == before

    calls = []
    stop = EvalOptions(
        options.method,
        points_per_call=2,
        should_stop=lambda: len(calls) >= 2,
        progress=lambda done, total: calls.append((done, total)),
    )
    halfway = surface(model, x, y, grid=3, span=0.5, options=stop)
    assert not halfway.complete and np.isnan(halfway.loss).sum() in (5, 7)  # 4 or 2 of 9 done
    assert _snapshot(model) == before

    def explode(done: int, total: int) -> None:
        raise RuntimeError("interrupted from the progress callback")

    with pytest.raises(RuntimeError, match="interrupted"):
        surface(model, x, y, grid=3, span=0.5, options=EvalOptions(options.method, progress=explode))
    assert _snapshot(model) == before
    assert [m.training for m in model.modules()] == modes
    assert hook_count(model) == 0


def test_interpolation_runs_from_start_to_end(data):
    x, y = data
    start_model, end_model = _trained_like(), _trained_like()
    with torch.no_grad():
        for p in end_model.parameters():
            p.mul_(1.1).add_(0.01)
        end_model.bn1.running_var.mul_(1.5)
        start_loss = F.cross_entropy(start_model(x), y).item()
        end_loss = F.cross_entropy(end_model(x), y).item()
    holder = create_model("resnet8", seed=4, **KNOBS).eval()
    before = _snapshot(holder)
    line = interpolation(
        holder,
        start_model.state_dict(),
        end_model.state_dict(),
        x,
        y,
        grid=5,
        t_range=(-0.5, 1.5),
        options=LOOP,
    )
    np.testing.assert_allclose(line.coords, [-0.5, 0.0, 0.5, 1.0, 1.5])
    assert line.loss[1] == start_loss
    assert line.loss[3] == pytest.approx(end_loss, rel=1e-5)
    assert _snapshot(holder) == before
    with pytest.raises(ConfigError, match="must fit"):
        interpolation(holder, {}, end_model.state_dict(), x, y, grid=3)


def test_initial_state_is_what_the_trainer_starts_from():
    from resviz.datasets import load_dataset
    from resviz.training import TrainConfig, Trainer

    trainer = Trainer(
        TrainConfig(models=("resnet8",), steps=1, widths=(4, 8, 8), seed=3, device="cpu"),
        load_dataset("digits", n_train=64),
    )
    model = trainer.members[0].model
    rebuilt = initial_state(model, seed=3)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt[key], value), key


def test_local_minima_match_scipys_minimum_filter():
    from scipy.ndimage import minimum_filter

    rng = np.random.default_rng(0)
    for _ in range(5):
        grid = rng.normal(size=(9, 9))
        # A strict minimum is the only point equal to its 3x3 neighbourhood's minimum (ties: none here).
        expected = np.argwhere(grid == minimum_filter(grid, size=3, mode="constant", cval=np.inf))
        np.testing.assert_array_equal(local_minima(grid), expected)
    bowl = np.add.outer(np.linspace(-1, 1, 5) ** 2, np.linspace(-1, 1, 5) ** 2)
    assert local_minima(bowl).tolist() == [[2, 2]]


def test_shape_summary_and_rows():
    from resviz.analysis.landscape import LandscapeSurface

    axis = np.linspace(-1, 1, 5)
    bowl = 1.0 + np.add.outer(axis**2, axis**2)
    s = LandscapeSurface("resnet8", axis, axis, bowl, np.ones_like(bowl), 10, (0, 1), True)
    shape = shape_summary(s)
    border = np.concatenate([bowl[0], bowl[-1], bowl[1:-1, 0], bowl[1:-1, -1]])
    assert shape.centre == 1.0 and shape.edge_mean == pytest.approx(border.mean())
    assert shape.local_minima == 1 and shape.minimum == 1.0
    rows = surface_rows(s)
    assert len(rows) == 25 and rows[0] == {
        "model": "resnet8",
        "alpha": -1.0,
        "beta": -1.0,
        "loss": 3.0,
        "accuracy": 1.0,
    }


def test_figures_share_one_colour_range(data):
    from resviz.analysis.landscape import LandscapeSlice, LandscapeSurface

    axis = np.linspace(-1, 1, 3)
    res = LandscapeSurface("resnet8", axis, axis, np.full((3, 3), 0.5), np.ones((3, 3)), 4, (0, 1), True)
    plain_loss = np.array([[50.0, 2, 3], [4, 1, 6], [7, 8, np.nan]])
    plain = LandscapeSurface("plain8", axis, axis, plain_loss, np.ones((3, 3)), 4, (0, 1), False)
    lo, hi = plots.shared_range(res, plain)
    assert lo == pytest.approx(np.log10(0.5)) and hi == pytest.approx(np.log10(50.0))
    contours = plots.contour_figure([res, plain])
    zs = [t for t in contours.data if t.type == "contour"]
    assert [(t.zmin, t.zmax) for t in zs] == [(lo, hi), (lo, hi)]
    assert zs[1].customdata[0][0] == 50.0  # z is [β][α]: the transpose of loss[α, β]
    surf = plots.surface_figure([res, plain])
    assert [(t.cmin, t.cmax) for t in surf.data] == [(lo, hi), (lo, hi)]
    assert list(surf.layout.scene.zaxis.range) == list(surf.layout.scene2.zaxis.range) == [lo, hi]
    line = lambda s: LandscapeSlice(s.model, "direction", axis, s.loss[1], s.accuracy[1], 4, 0, True)  # noqa: E731
    fig = plots.slice_figure([line(res), line(plain)])
    assert [t.line.dash for t in fig.data] == ["solid", "dash"] and fig.layout.yaxis.type == "log"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet21", "--data", "digits"], "Unknown model 'resnet21'"),
        (["--model", "resnet8", "--data", "digits", "--grid", "1"], "--grid must be at least 2"),
        (["--model", "resnet8", "--data", "digits", "--range", "0"], "--range must be above 0"),
        (["--model", "resnet8"], "no held-out set"),
    ],
)
def test_cli_bad_input_is_one_sentence_and_exit_2(args, message, capsys):
    assert cli_main(["landscape", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_cli_json(capsys):
    assert (
        cli_main(["landscape", "--model", "resnet8", "--data", "digits", "--grid", "3", "--n", "8", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["grid"] == 3 and len(doc["loss"]) == 3 and doc["n_images"] == 8
    assert doc["loss"][1][1] == pytest.approx(doc["centre_loss"])
    assert "running statistics" in doc["batchnorm"]


def _cli(args: list[str], nproc: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RESVIZ_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = (
        ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone"] if nproc > 1 else []
    )
    cmd = [sys.executable, *launcher, "-m", "resviz", "landscape", *args]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_gloo_processes_give_the_grid_of_one(tmp_path):
    """Under torchrun each process takes every other grid point; rank 0 gathers the same grid."""
    args = ["--model", "resnet8", "--data", "digits", "--grid", "3", "--images", "16", "--method", "loop"]
    _cli([*args, "--npz", str(tmp_path / "one.npz")], nproc=1)
    two = _cli([*args, "--npz", str(tmp_path / "two.npz")], nproc=2)
    assert two.stdout.count("wrote") == 1  # only rank 0 writes
    one, both = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_array_equal(both["loss"], one["loss"])
    np.testing.assert_array_equal(both["accuracy"], one["accuracy"])


def test_cli_on_a_saved_run_and_its_plain_counterpart(tmp_path, capsys):
    from resviz.runs import save_run
    from resviz.training import TrainConfig, train

    cfg = TrainConfig(
        models=("plain8", "resnet8"), dataset="digits", steps=2, eval_every=2, n_train=64, batch_size=16,
        widths=(4, 8, 8), device="cpu",
    )  # fmt: skip
    paths = {r.name: save_run(r, os.environ["RESVIZ_RUNS_DIR"]) for r in train(cfg)}
    args = ["landscape", "--model", "resnet8", "--weights", str(paths["resnet8"]), "--grid", "2", "--n", "8"]
    assert cli_main([*args, "--plain", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "plain8" and doc["n_images"] == 8 and "run" in doc["weights"]
    assert cli_main([*args, "--npz", str(tmp_path / "res.npz")]) == 0
    assert np.load(tmp_path / "res.npz")["loss"].shape == (2, 2)
