"""Paths: a ResNet unrolled is 2^n paths; how long they are and how much gradient each length carries.

Veit, Wilber and Belongie 2016 (https://arxiv.org/abs/1605.06431), section 5. A network of n residual
blocks, each ``y = f(x) + x``, unrolls into 2^n paths: a path takes the branch of some blocks and
the shortcut of the others, and its length is the number of branches it goes through. Lengths follow
the binomial distribution ``C(n, k)``. The gradient of a path shrinks exponentially with its length,
so almost all of the gradient comes from short paths (ResNet-110: lengths 5 to 17 of 54).

Measuring one path length (their method): after one ordinary forward pass, the backward pass lets the
gradient through the residual branch of k randomly chosen blocks and only through the shortcut of
the others; the norm of the gradient that reaches the input of the first block is that path's
magnitude. Because a backward pass is linear in the gradient it carries, the 2^n path gradients add
up exactly to the full gradient (a test checks this by enumerating every path of a small network).

A block without a shortcut (a plain block inside a residual net) has one way through: every path
takes its branch, and it does not count toward n.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from resviz.hooks import forward_hooks, preserve_model_state
from resviz.models.resnet import ResNet

if TYPE_CHECKING:
    from resviz.models.weights import LoadedModel

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PathSettings:
    """What to measure; frozen and hashable, so it can key a cache."""

    samples: int = 8  # sampled paths per length
    batch_size: int = 16  # images in the one forward pass
    seed: int = 0  # of the sampled paths (and of the untrained model's initialization)
    coverage: float = 0.9  # the effective range holds this share of the total gradient


@dataclass(frozen=True)
class PathProfile:
    """Path lengths of one network and the gradient each length carries.

    Attributes:
        counts: ``(n + 1,)`` number of paths of each length k = 0..n: ``C(n, k)`` (float64).
        grad: ``(n + 1,)`` mean norm of one path's gradient at the first block's input, per length.
        grad_std: ``(n + 1,)`` standard deviation of that norm over the sampled paths.
        total: ``(n + 1,)`` ``counts * grad``: the gradient magnitude all paths of a length carry.
        full_grad: norm of the ordinary (all paths) gradient, for scale.
        effective: ``(first, last)`` shortest range of lengths holding ``coverage`` of ``total``.
    """

    model: str
    label: str  # "trained" / "untrained", for legends
    n: int
    counts: np.ndarray
    grad: np.ndarray
    grad_std: np.ndarray
    total: np.ndarray
    full_grad: float
    effective: tuple[int, int]
    coverage: float

    @property
    def lengths(self) -> np.ndarray:
        return np.arange(self.n + 1)

    @property
    def mean_length(self) -> float:
        return self.n / 2


def path_counts(n: int) -> list[int]:
    """Exact number of paths of each length 0..n through n residual blocks: ``C(n, k)``."""
    return [math.comb(n, k) for k in range(n + 1)]


def effective_range(total: np.ndarray, coverage: float = 0.9) -> tuple[int, int]:
    """The shortest window of lengths ``[first, last]`` whose ``total`` adds up to ``coverage`` of all."""
    t = np.nan_to_num(np.asarray(total, dtype=np.float64))
    whole = t.sum()
    if whole <= 0:
        return (0, len(t) - 1)
    best = (0, len(t) - 1)
    csum = np.concatenate([[0.0], np.cumsum(t)])
    for first in range(len(t)):
        # the first `last` with csum[last + 1] - csum[first] >= coverage * whole
        last = int(np.searchsorted(csum, csum[first] + coverage * whole * (1 - 1e-12), side="left")) - 1
        if last < len(t) and last - first < best[1] - best[0]:
            best = (first, max(last, first))
    return best


def residual_block_names(model: ResNet) -> list[str]:
    """The blocks with a shortcut: each doubles the number of paths."""
    return [name for name, block in model.named_blocks() if block.skip]


def path_gradients(
    model: ResNet,
    x: Tensor,
    y: Tensor,
    paths: Iterable[frozenset[int] | None],
    *,
    tick: Callable[[], None] | None = None,
) -> list[Tensor]:
    """The gradient of the loss at the first block's input along each of ``paths``, one forward pass.

    Args:
        model: the network, in the mode to measure it in (hooks hold its lock for the duration).
        x: ``(N, C, H, W)`` preprocessed images.
        y: ``(N,)`` labels; the loss is the mean cross-entropy.
        paths: each a set of indices into :func:`residual_block_names`, the blocks whose branch the
            path goes through (the shortcut elsewhere); None is the ordinary gradient (all paths).

    Returns:
        One ``(N, C, H, W)`` gradient per path, at the input of the first block.
    """
    names = residual_block_names(model)
    first = model.feature_info[0].blocks[0]
    current: dict[str, frozenset[int] | None] = {"path": None}
    leaf: dict[str, Tensor] = {}

    def start(_m, inputs):  # the first block's input becomes the leaf the gradient is taken at
        leaf["x"] = inputs[0].detach().requires_grad_(True)
        return (leaf["x"],)

    def gate(i: int, branch: bool):
        def open_(g: Tensor) -> Tensor:
            path = current["path"]
            return g if path is None or (i in path) == branch else torch.zeros_like(g)

        def hook(_m, _i, out: Tensor) -> Tensor:
            # A view of its own, so that the gate sees only the gradient of this summand (the tap
            # is an Identity: its output is the very tensor that also feeds the other summand).
            out = out.view_as(out)
            out.register_hook(open_)
            return out

        return hook

    hooks = [(f"{n}.branch_out", gate(i, True)) for i, n in enumerate(names)]
    hooks += [(f"{n}.shortcut_out", gate(i, False)) for i, n in enumerate(names)]
    grads = []
    with forward_hooks(model, hooks, pre={first: start}), torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        for path in paths:
            current["path"] = path
            (g,) = torch.autograd.grad(loss, leaf["x"], retain_graph=True)
            grads.append(g.detach())
            if tick is not None:
                tick()
    return grads


def path_profile(
    model: ResNet,
    x: Tensor,
    y: Tensor,
    settings: PathSettings = PathSettings(),
    *,
    name: str,
    label: str,
    train: bool = False,
    progress: Progress | None = None,
) -> PathProfile:
    """Sample ``settings.samples`` paths of every length and measure their gradients (Veit's method).

    The model is measured in eval mode (``train=True``: batch statistics, as at the start of
    training) under its lock, and left as it was, BatchNorm statistics included.
    """
    n = len(residual_block_names(model))
    rng = random.Random(settings.seed)
    paths: list[frozenset[int] | None] = [None]
    for k in range(n + 1):
        paths += [frozenset(rng.sample(range(n), k)) for _ in range(settings.samples)]
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], len(paths))

    with preserve_model_state(model, train=train):
        grads = path_gradients(model, x, y, paths, tick=tick)
    norms = np.array([float(g.norm()) for g in grads[1:]]).reshape(n + 1, settings.samples)
    counts = np.array(path_counts(n), dtype=np.float64)
    grad = norms.mean(axis=1)
    total = counts * grad
    return PathProfile(
        model=name,
        label=label,
        n=n,
        counts=counts,
        grad=grad,
        grad_std=norms.std(axis=1),
        total=total,
        full_grad=float(grads[0].norm()),
        effective=effective_range(total, settings.coverage),
        coverage=settings.coverage,
    )


# --------------------------------------------------------------------------- trained and untrained


@dataclass(frozen=True)
class PathStudy:
    """The paths of a model, trained and at initialization, on the same batch."""

    untrained: PathProfile
    trained: PathProfile | None  # None when the model itself is untrained
    data: str  # the batch, for people


def path_study(
    loaded: LoadedModel, settings: PathSettings = PathSettings(), *, progress: Progress | None = None
) -> PathStudy:
    """:func:`path_profile` of ``loaded`` (eval mode) and of the same architecture freshly initialized
    (seed ``settings.seed``, train mode: batch statistics, as at the first step of training).

    Raises:
        LesionError: a model without a single residual block (a plain network has one path).
    """
    from resviz.analysis.batches import loaded_batch
    from resviz.analysis.lesion import LesionError
    from resviz.device import model_device
    from resviz.models import create_model

    if not residual_block_names(loaded.model):
        raise LesionError(
            f"{loaded.name} has no shortcut, so its one path goes through every layer: "
            "pick its residual twin."
        )
    dev = model_device(loaded.model)
    x, y, data = loaded_batch(loaded, settings.batch_size, settings.seed)
    x, y = x.to(dev), y.to(dev)
    parts = 2 if loaded.trained else 1

    def sub(part: int) -> Progress:  # both profiles on one bar
        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(part * total + done, parts * total)

        return report

    fresh = loaded.model if not loaded.trained else create_model(loaded.config, seed=settings.seed).to(dev)
    untrained = path_profile(
        fresh, x, y, settings, name=loaded.name, label="untrained", train=True, progress=sub(0)
    )
    trained = None
    if loaded.trained:
        trained = path_profile(
            loaded.model, x, y, settings, name=loaded.name, label="trained", progress=sub(1)
        )
    return PathStudy(untrained=untrained, trained=trained, data=data)


def path_rows(study: PathStudy) -> list[dict[str, object]]:
    """One row per profile and path length: paths, gradient per path, and their product."""
    rows = []
    for prof in (study.untrained, study.trained):
        if prof is None:
            continue
        lo, hi = prof.effective
        for k in range(prof.n + 1):
            rows.append(
                {
                    "model": prof.model,
                    "weights": prof.label,
                    "length": k,
                    "paths": prof.counts[k],
                    "grad_per_path": float(prof.grad[k]),
                    "grad_per_path_std": float(prof.grad_std[k]),
                    "total_grad": float(prof.total[k]),
                    "effective": lo <= k <= hi,
                }
            )
    return rows
