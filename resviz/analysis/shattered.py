"""Shattered gradients: how the input gradient changes along a line of inputs, plain against residual.

Balduzzi et al., "The Shattered Gradients Problem: If resnets are the answer, then what is the
question?" (ICML 2017, https://arxiv.org/abs/1702.08591). Feed a network a line of inputs and take
the gradient of one output with respect to the input at every point. In a deep plain network that
gradient looks like white noise along the line: its autocorrelation drops to about zero at lag 1 as
depth grows. In a residual network it stays correlated (brown noise) and decays far more slowly.

Two settings:

- their 1D toy: fully connected ReLU networks (width 200) on 256 scalar inputs in [-2, 2]; the plain
  and residual networks of one depth share every weight (the residual one adds ``h +`` around each
  layer), like the project's twins. :func:`toy_sweep` measures them at initialization, per depth;
- any image model: 256 points on the straight line between two images (:func:`image_line`), for a
  trained model and its counterpart (:func:`line_pair`) or fresh CIFAR twins (:func:`conv_sweep`).

BatchNorm never mixes the points: a model is evaluated in eval mode with its running statistics,
and networks built here get their statistics from the line itself, then frozen (so every point's
gradient is the derivative of one fixed function).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from resviz.device import model_device, oom_guard
from resviz.errors import ConfigError
from resviz.hooks import preserve_model_state

if TYPE_CHECKING:
    from resviz.models.weights import LoadedModel

MAX_DEPTH = 500
MAX_COORDS = 16_384  # gradient coordinates kept per point; larger inputs use a fixed random subset
Progress = Callable[[int, int], None]
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------------
# The autocorrelation function


def autocorrelation(signal: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Sample autocorrelation of a signal along its first axis, summed over any other axes.

    ``A(k) = sum_i <g_i - m, g_{i+k} - m> / sum_i |g_i - m|^2`` with ``m`` the mean over points:
    for a scalar signal the usual biased estimator (``np.correlate(x, x, "full")`` from lag 0,
    normalised); for a vector signal (an image gradient per point) the same with inner products.
    Computed with an FFT, so 256 points times 16,384 coordinates take milliseconds.

    A constant signal (a linear network's gradient) is perfectly correlated: ``A(k) = 1``.

    Args:
        signal: ``(P,)`` or ``(P, ...)``: one value or one vector per point along the line.
        max_lag: last lag returned (default ``P - 1``).

    Returns:
        ``(max_lag + 1,)`` float64, ``A(0) = 1``.
    """
    x = np.asarray(signal, dtype=np.float64)
    p = x.shape[0]
    if p < 2:
        raise ConfigError("The autocorrelation needs at least two points along the line.")
    x = x.reshape(p, -1)
    lags = p - 1 if max_lag is None else min(int(max_lag), p - 1)
    centred = x - x.mean(axis=0)
    # "Constant" relative to the signal's size: float rounding makes a linear net's gradients differ
    # in the last bits from point to point, which must not read as white noise.
    scale = float(np.abs(x).max()) if x.size else 0.0
    if float(np.abs(centred).max()) <= 1e-6 * scale or scale == 0.0:
        return np.ones(lags + 1)
    spec = np.fft.rfft(centred, n=2 * p, axis=0)  # zero padding: linear, not circular, correlation
    acov = np.fft.irfft(np.abs(spec) ** 2, n=2 * p, axis=0)[: lags + 1].sum(axis=1)
    return acov / acov[0]


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class GradientLine:
    """The input gradient of one network along one line of inputs.

    ``P`` points along the line, lags ``0 .. K``.
    """

    model: str  # "plain-10 (fc)", "resnet20", ...
    residual: bool
    t: np.ndarray  # (P,) position along the line: x in [-2, 2] (toy) or 0..1 from image a to image b
    trace: np.ndarray  # (P,) the gradient itself (toy) or its coordinate at the centre pixel, channel 0
    acf: np.ndarray  # (K + 1,) autocorrelation of the whole gradient along the line
    output: str  # which output was differentiated, for people

    @property
    def lag1(self) -> float:
        return float(self.acf[1])


@dataclass(frozen=True)
class ToySettings:
    """Balduzzi et al.'s 1D setting: fully connected ReLU nets on a line of scalar inputs."""

    width: int = 200  # units per hidden layer (their figures use 200)
    points: int = 256  # inputs evenly spaced in [-2, 2]
    batchnorm: bool = True  # BN before each ReLU, statistics of the line, frozen
    repeats: int = 4  # networks (seeds) per depth; lag-1 is averaged over them
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.points <= 4096:
            raise ConfigError(f"Use between 2 and 4096 points along the line, not {self.points}.")
        if not 1 <= self.width <= 2048:
            raise ConfigError(f"The width must be between 1 and 2048 units, not {self.width}.")
        if not 1 <= self.repeats <= 64:
            raise ConfigError(f"Use between 1 and 64 networks per depth, not {self.repeats}.")


@dataclass(frozen=True)
class ShatteredSweep:
    """Lag-1 autocorrelation against depth, plain against residual. ``D`` depths, ``P`` points."""

    depths: np.ndarray  # (D,) int
    plain_lag1: np.ndarray  # (D,) mean over the repeats
    residual_lag1: np.ndarray  # (D,)
    plain_lag1_std: np.ndarray  # (D,) spread over the repeats (0 for one)
    residual_lag1_std: np.ndarray  # (D,)
    plain: tuple[GradientLine, ...]  # (D,) the first network of each depth: trace and full ACF
    residual: tuple[GradientLine, ...]
    setting: str  # for people: which networks and which line


@dataclass(frozen=True)
class LinePair:
    """A residual network and a plain one on the same line of inputs."""

    residual: GradientLine
    plain: GradientLine
    source: str  # for people: which models, which images


# --------------------------------------------------------------------------------------------------
# Balduzzi's toy networks


class ToyNet(nn.Module):
    """``1 -> width``, ``depth`` hidden layers, ``width -> 1``; ReLU, optional BN, He init.

    A hidden layer is ``W relu(BN(h)) + c``; with ``residual=True`` it is ``h + W relu(BN(h))``
    (pre-activation, as in Balduzzi et al.'s resnets). Input ``(P, 1)`` -> output ``(P, 1)``.
    """

    def __init__(self, depth: int, width: int, *, residual: bool, batchnorm: bool) -> None:
        super().__init__()
        self.residual = residual
        self.inp = nn.Linear(1, width)
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(width) if batchnorm else nn.Identity() for _ in range(depth)
        )
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, 1)
        self.relu = nn.ReLU()
        for lin in (self.inp, *self.layers, self.out):
            # He weights; biases keep torch's default uniform init: with zero biases and no BN, a
            # ReLU net of a scalar is homogeneous (f(x) = x f(sign x)) and its gradient has 2 values.
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for norm, lin in zip(self.norms, self.layers):
            f = lin(self.relu(norm(h)))
            h = h + f if self.residual else f
        return self.out(h)


def toy_twins(depth: int, settings: ToySettings, seed: int) -> tuple[ToyNet, ToyNet]:
    """A residual toy net and its plain twin: the same weights, the skips removed. Eval mode."""
    torch.manual_seed(seed)
    residual = ToyNet(depth, settings.width, residual=True, batchnorm=settings.batchnorm)
    plain = ToyNet(depth, settings.width, residual=False, batchnorm=settings.batchnorm)
    plain.load_state_dict(residual.state_dict())
    return residual, plain


def freeze_batch_statistics(model: nn.Module, x: Tensor, *, chunk: int = 256) -> None:
    """Set every BatchNorm's running statistics to those of ``x`` (the line), then eval mode.

    For networks built here only (never a shared model): each point's gradient is then the
    derivative of one fixed function instead of being mixed with the others' by batch statistics.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one pass, exactly the batch's statistics
    if not bns:
        model.eval()
        return
    model.train()
    with torch.no_grad():
        for part in x.split(chunk):  # equal chunks: the cumulative average is the line's mean
            model(part)
    model.eval()


def toy_line(model: ToyNet, settings: ToySettings, name: str) -> GradientLine:
    """d(output)/d(input) of a toy net at every point of the line, and its autocorrelation."""
    t = torch.linspace(-2.0, 2.0, settings.points).unsqueeze(1)
    freeze_batch_statistics(model, t, chunk=settings.points)
    x = t.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x).sum(), x)  # points are independent: sum = per point
    g = grad.squeeze(1).double().numpy()
    return GradientLine(
        model=name,
        residual=model.residual,
        t=t.squeeze(1).numpy().astype(np.float64),
        trace=g,
        acf=autocorrelation(g),
        output="the network's single output",
    )


def parse_depths(text: str | Sequence[int], *, low: int = 1) -> tuple[int, ...]:
    """``"2,10,20,50"`` -> ``(2, 10, 20, 50)``, sorted and unique; a sentence for anything else."""
    try:
        parts = text.replace(" ", ",").split(",") if isinstance(text, str) else list(text)
        depths = sorted({int(p) for p in parts if str(p).strip()})
    except (TypeError, ValueError):
        raise ConfigError(
            f"Write depths as whole numbers separated by commas, e.g. 2,10,20,50; got {text!r}."
        ) from None
    if not depths:
        raise ConfigError("Give at least one depth, e.g. 2,10,20,50.")
    if depths[0] < low or depths[-1] > MAX_DEPTH:
        raise ConfigError(f"Depths must be between {low} and {MAX_DEPTH}; got {depths[0]} ... {depths[-1]}.")
    return tuple(depths)


def toy_depth(depth: int, settings: ToySettings) -> tuple[list[GradientLine], list[GradientLine]]:
    """Every repeat's plain and residual lines at one depth (seeds ``seed .. seed + repeats - 1``)."""
    plain, residual = [], []
    for r in range(settings.repeats):
        res_net, plain_net = toy_twins(depth, settings, settings.seed + r)
        residual.append(toy_line(res_net, settings, f"residual-{depth} (fc)"))
        plain.append(toy_line(plain_net, settings, f"plain-{depth} (fc)"))
    return plain, residual


def toy_sweep(
    depths: str | Sequence[int], settings: ToySettings = ToySettings(), *, progress: Progress | None = None
) -> ShatteredSweep:
    """Lag-1 autocorrelation of the input gradient against depth, in Balduzzi's 1D toy setting.

    Args:
        depths: hidden layers per network, e.g. ``(2, 10, 20, 50)``.
        settings: width, points, BatchNorm, networks per depth, seed.
        progress: called with ``(done, total)`` after each depth.

    Returns:
        A :class:`ShatteredSweep`, depths in increasing order.
    """
    ds = parse_depths(depths)
    points = [_progress(toy_depth(d, settings), i, ds, progress) for i, d in enumerate(ds)]
    return sweep_from_points(points, ds, toy_setting(settings))


def toy_setting(s: ToySettings) -> str:
    bn = "BatchNorm (statistics of the line)" if s.batchnorm else "no BatchNorm"
    return (
        f"fully connected ReLU nets, width {s.width}, {bn}, He init; {s.points} inputs in [-2, 2]; "
        f"{s.repeats} network(s) per depth from seed {s.seed}"
    )


def _progress(value: _T, i: int, depths: Sequence[int], progress: Progress | None) -> _T:
    if progress is not None:
        progress(i + 1, len(depths))
    return value


def sweep_from_points(
    points: Sequence[tuple[Sequence[GradientLine], Sequence[GradientLine]]],
    depths: Sequence[int],
    setting: str,
) -> ShatteredSweep:
    """Assemble a sweep from per-depth ``(plain lines, residual lines)`` (a page caches each depth)."""

    def stats(lines_per_depth: list[Sequence[GradientLine]]) -> tuple[np.ndarray, np.ndarray]:
        lag = [np.array([ln.lag1 for ln in lines]) for lines in lines_per_depth]
        return np.array([v.mean() for v in lag]), np.array([v.std() for v in lag])

    plain = [p for p, _ in points]
    residual = [r for _, r in points]
    pm, ps = stats(plain)
    rm, rs = stats(residual)
    return ShatteredSweep(
        depths=np.asarray(depths, dtype=np.int64),
        plain_lag1=pm,
        residual_lag1=rm,
        plain_lag1_std=ps,
        residual_lag1_std=rs,
        plain=tuple(p[0] for p in plain),
        residual=tuple(r[0] for r in residual),
        setting=setting,
    )


def sweep_rows(sweep: ShatteredSweep) -> list[dict[str, object]]:
    """One row per depth: lag-1 autocorrelation (mean and spread), plain and residual."""
    return [
        {
            "depth": int(d),
            "plain_lag1": float(pm),
            "plain_lag1_std": float(ps),
            "residual_lag1": float(rm),
            "residual_lag1_std": float(rs),
        }
        for d, pm, ps, rm, rs in zip(
            sweep.depths, sweep.plain_lag1, sweep.plain_lag1_std, sweep.residual_lag1, sweep.residual_lag1_std
        )
    ]


# --------------------------------------------------------------------------------------------------
# Image models: the line between two images


def line_inputs(a: Tensor, b: Tensor, points: int = 256) -> tuple[Tensor, Tensor]:
    """``points`` inputs evenly spaced from image ``a`` to image ``b``.

    Args:
        a, b: ``(C, H, W)`` images, already preprocessed for the model.

    Returns:
        ``t`` ``(P,)`` in [0, 1] and the inputs ``(P, C, H, W)``.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ConfigError(
            f"The two images must have one (C, H, W) shape; got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if not 2 <= points <= 4096:
        raise ConfigError(f"Use between 2 and 4096 points along the line, not {points}.")
    t = torch.linspace(0.0, 1.0, points)
    w = t.view(-1, 1, 1, 1)
    return t, (1 - w) * a.float().unsqueeze(0) + w * b.float().unsqueeze(0)


def image_line(
    model: nn.Module,
    a: Tensor,
    b: Tensor,
    *,
    target: int | None = None,
    points: int = 256,
    chunk: int = 64,
    name: str = "model",
    residual: bool = False,
    seed: int = 0,
) -> GradientLine:
    """d(logit ``target``)/d(input) at every point between images ``a`` and ``b``.

    The model runs in eval mode under its lock (:func:`resviz.hooks.preserve_model_state`) and is
    left as it was; gradients come from :func:`torch.autograd.grad` (no ``.grad`` is written).

    Args:
        model: an image classifier, ``(N, C, H, W)`` -> ``(N, classes)``.
        a, b: ``(C, H, W)`` ends of the line.
        target: the output differentiated; default the class the model predicts for ``a``.
        points: inputs along the line.
        chunk: inputs per forward and backward pass.
        name: what the result calls the model.
        residual: whether it has shortcuts (colours and labels only).
        seed: picks the coordinates kept when an input has more than :data:`MAX_COORDS` of them.

    Returns:
        A :class:`GradientLine` whose trace is the gradient at the centre pixel of channel 0.
    """
    t, xs = line_inputs(a, b, points)
    c, h, w = xs.shape[1:]
    keep = None
    if c * h * w > MAX_COORDS:
        keep = torch.randperm(c * h * w, generator=torch.Generator().manual_seed(seed))[:MAX_COORDS]
    centre = (h // 2) * w + w // 2  # channel 0, centre pixel, in the flattened gradient
    dev = model_device(model)
    grads, trace = [], []
    with oom_guard("The shattered-gradients analysis"), preserve_model_state(model), torch.enable_grad():
        if target is None:
            with torch.no_grad():
                target = int(model(xs[:1].to(dev)).argmax(1).item())
        for part in xs.split(chunk):
            x = part.to(dev).requires_grad_(True)
            out = model(x)
            if not 0 <= target < out.shape[1]:
                raise ConfigError(
                    f"The model has {out.shape[1]} outputs; pick a target from 0 to {out.shape[1] - 1}."
                )
            (g,) = torch.autograd.grad(out[:, target].sum(), x)  # eval mode: the points are independent
            flat = g.detach().flatten(1).cpu()
            trace.append(flat[:, centre])
            grads.append(flat if keep is None else flat[:, keep])
    g_all = torch.cat(grads).double().numpy()
    return GradientLine(
        model=name,
        residual=residual,
        t=t.double().numpy(),
        trace=torch.cat(trace).double().numpy(),
        acf=autocorrelation(g_all),
        output=f"logit {target}",
    )


def line_pair(
    loaded: LoadedModel, *, a: Tensor | None = None, b: Tensor | None = None, points: int = 256, seed: int = 0
) -> LinePair:
    """A model and its counterpart (:func:`resviz.analysis.pairs.model_pair`) on one line of inputs.

    The line joins two held-out images of the model's training run when it has one (the first
    images of two different classes), else two random images (standard normal pixels, ``seed``).
    Both networks differentiate the same output: the class the residual network predicts for ``a``.
    """
    from resviz.analysis.pairs import model_pair

    pair = model_pair(loaded)
    if a is None or b is None:
        a, b, where = _two_images(loaded, seed)
    else:
        where = "the two given images"
    res_m, plain_m = pair.residual.model, pair.plain.model
    residual = image_line(res_m, a, b, points=points, name=pair.residual.name, residual=True, seed=seed)
    target = int(residual.output.split()[-1])
    plain = image_line(plain_m, a, b, target=target, points=points, name=pair.plain.name, seed=seed)
    return LinePair(residual=residual, plain=plain, source=f"{pair.how}; {points} points between {where}")


RANDOM_IMAGE_SIZE = 64  # random images for models without a dataset: ResNets take any size


def _two_images(loaded: LoadedModel, seed: int) -> tuple[Tensor, Tensor, str]:
    """Two held-out images of different classes from the model's run, else two random images."""
    from resviz.analysis.pairs import held_out

    data = held_out(loaded, 64)
    if data is not None and len(data.y_test) > 1:
        first = int(data.y_test[0])
        other = int((data.y_test != first).nonzero()[0, 0]) if bool((data.y_test != first).any()) else 1
        x = data.normalize(data.x_test[[0, other]])
        names = [data.class_names[int(data.y_test[i])] for i in (0, other)]
        return x[0], x[1], f"two held-out {data.name} images ({names[0]} and {names[1]})"
    size = min(loaded.preprocessing.crop, RANDOM_IMAGE_SIZE)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, loaded.config.in_channels, size, size, generator=gen)
    return x[0], x[1], f"two random {size}x{size} images (standard normal pixels, seed {seed})"


def conv_depth(
    depth: int, *, size: int = 16, points: int = 256, seed: int = 0
) -> tuple[GradientLine, GradientLine]:
    """Fresh CIFAR twins of one depth (``6n+2``, BatchNorm, Kaiming) on a line between two random
    images; BatchNorm statistics are the line's, frozen. Returns ``(plain, residual)``."""
    from resviz.analysis.twins import TwinSettings, build_twins

    residual, plain = build_twins(TwinSettings(depth=int(depth), seed=seed), "cpu")
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 3, size, size, generator=gen)
    _, xs = line_inputs(a, b, points)
    lines = []
    for net, name in ((plain, f"plain{depth}"), (residual, f"resnet{depth}")):
        freeze_batch_statistics(net, xs, chunk=64)
        lines.append(image_line(net, a, b, target=0, points=points, name=name, residual=net.config.skip))
    return lines[0], lines[1]


def conv_sweep(
    depths: str | Sequence[int],
    *,
    size: int = 16,
    points: int = 256,
    seed: int = 0,
    progress: Progress | None = None,
) -> ShatteredSweep:
    """Lag-1 autocorrelation against depth for CIFAR twins at initialization (one network each).

    Args:
        depths: CIFAR depths ``6n+2``, e.g. ``(8, 20, 56, 110)``.
        size: side of the two random images.
        points: inputs along the line.
        seed: weights and images.
        progress: called with ``(done, total)`` after each depth.
    """
    ds = parse_depths(depths, low=8)
    bad = [d for d in ds if (d - 2) % 6]
    if bad:
        raise ConfigError(f"CIFAR depths are 6n+2 (8, 14, 20, 32, 44, 56, 110, ...); {bad[0]} is not.")
    pts = []
    for i, d in enumerate(ds):
        plain, residual = conv_depth(d, size=size, points=points, seed=seed)
        pts.append(_progress(([plain], [residual]), i, ds, progress))
    setting = (
        f"CIFAR twins (BatchNorm with the line's statistics, Kaiming, seed {seed}); logit 0 on "
        f"{points} points between two random {size}x{size} images"
    )
    return sweep_from_points(pts, ds, setting)


def line_rows(pair: LinePair) -> list[dict[str, object]]:
    """One row per point: position, the traced gradient coordinate of each network."""
    return [
        {"t": float(t), f"{pair.residual.model}_grad": float(r), f"{pair.plain.model}_grad": float(p)}
        for t, r, p in zip(pair.residual.t, pair.residual.trace, pair.plain.trace)
    ]


def acf_rows(lines: Sequence[GradientLine]) -> list[dict[str, object]]:
    """One row per lag: the autocorrelation of each line."""
    k = min(len(ln.acf) for ln in lines)
    return [{"lag": i, **{ln.model: float(ln.acf[i]) for ln in lines}} for i in range(k)]
