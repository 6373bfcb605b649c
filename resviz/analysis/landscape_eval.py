"""The loss at many points of weight space: the engine behind :mod:`resviz.analysis.landscape`.

A point is ``base + Σ_j c_j d_j`` for a few directions ``d_j`` (random ones for a landscape, the
difference of two state dicts for an interpolation). Two ways to evaluate a list of points:

- ``"loop"``: one point at a time. Its weights are written into the model in place, the images go
  through the model's ordinary forward in batches, and the saved originals are copied back in a
  ``finally``: bit for bit, after a stop, an exception, or an interrupt raised by a callback.
- ``"vmap"``: ``torch.func.functional_call`` under ``torch.func.vmap`` over ``points_per_call``
  points at once. Each point's weights are one slice of a batched tensor; vmap turns every conv into
  one grouped conv over the points. It never writes into the model.

``"auto"`` picks the loop on a CPU and vmap on an accelerator. On the quiet 2-core CPU
(``bench/bench_landscape.py``, the demo 56-layer pair, 500 16x16 images) the loop took 0.44 s a
point against 0.49 s for vmap over 8 points and 0.66 s over 4: the convs already fill both cores, and
vmap's grouped convs only add work. Under heavy load from other processes vmap came out 2-4x ahead
(fewer, larger calls lose less to contention), and on a GPU one call on 8 points' worth of data is
what keeps the device busy. vmap's cost is memory: ``points_per_call`` points' activations at once.
A progress update (and so a stop) comes once per call, not once per point.

BatchNorm runs in eval mode with the running statistics in ``base`` (the model's own, for a
landscape): nothing is recomputed for a perturbed point, as in Li et al. 2018.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.device import model_device
from resviz.errors import ConfigError
from resviz.hooks import preserve_model_state

Progress = Callable[[int, int], None]  # (points done, points this process evaluates)
StopCheck = Callable[[], bool]
Method = Literal["auto", "loop", "vmap"]


@dataclass(frozen=True)
class Points:
    """Which weights to evaluate: point k is ``base + Σ_j coeffs[k, j] dirs[j]``.

    ``base`` names parameters and buffers of the model (each one it names is set at every point);
    a direction without a name leaves that tensor at its base value.
    """

    base: Mapping[str, Tensor]
    dirs: Sequence[Mapping[str, Tensor]]
    coeffs: np.ndarray  # (P, J)
    shard: tuple[int, int] = (0, 1)  # (rank, world): this process takes the points k % world == rank

    def todo(self) -> list[int]:
        rank, world = self.shard
        return [k for k in range(len(self.coeffs)) if k % world == rank]

    def weights(self, name: str, k: int) -> Tensor:
        """Tensor ``name`` at point ``k`` (the base itself, bit for bit, when every coefficient is 0)."""
        out = self.base[name].clone()
        for d, c in zip(self.dirs, self.coeffs[k]):
            if name in d and c != 0.0:
                out.add_(d[name], alpha=float(c))
        if name.endswith("running_var"):
            out.clamp_(min=0.0)  # an extrapolated variance below zero would give NaN, not a loss
        return out


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate: the method and batch sizes, and the caller's callbacks."""

    method: Method = "auto"
    # loss(outputs, targets, reduction=...) like F.cross_entropy (the default) or F.mse_loss
    loss: Callable[..., Tensor] = F.cross_entropy
    batch_size: int = 500  # images per forward pass
    points_per_call: int = 8  # grid points per vmap call
    progress: Progress | None = None
    should_stop: StopCheck | None = None


DEFAULT_OPTIONS = EvalOptions()


def resolve_method(method: Method, device: torch.device | str = "cpu") -> Literal["loop", "vmap"]:
    """``"auto"`` -> the loop on a CPU, vmap on an accelerator (see the module's notes)."""
    if method == "auto":
        return "loop" if torch.device(device).type == "cpu" else "vmap"
    if method not in ("loop", "vmap"):
        raise ConfigError(f"Unknown evaluation method {method!r}: choose auto, loop or vmap.")
    return method


def check_data(x: Tensor, y: Tensor) -> None:
    """Images ``(N, C, H, W)`` with one label each, N >= 1."""
    if x.dim() != 4 or len(x) == 0 or len(x) != len(y):
        raise ConfigError("Give at least one evaluation image, with one label each.")


def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, points: Points, options: EvalOptions = DEFAULT_OPTIONS
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Mean cross-entropy and top-1 accuracy at each point; NaN where not evaluated.

    Args:
        model: the network (its lock is held and its modes restored; it is left as it was).
        x: ``(N, C, H, W)`` normalized images; y: ``(N,)`` labels.
        points: the weights to try.
        options: method, batch sizes, callbacks.

    Returns:
        loss ``(P,)``, accuracy ``(P,)``, and whether every point of this shard was evaluated
        (False after ``should_stop``).
    """
    check_data(x, y)
    if options.batch_size < 1 or options.points_per_call < 1:
        raise ConfigError("Batch sizes must be at least 1.")
    loss = np.full(len(points.coeffs), math.nan)
    acc = np.full(len(points.coeffs), math.nan)
    device = model_device(model)
    run = _run_loop if resolve_method(options.method, device) == "loop" else _run_vmap
    with preserve_model_state(model), torch.no_grad():
        done = run(model, x.to(device), y.to(device), points, options, loss, acc)
    return loss, acc, done


def _batch_loss(out: Tensor, y: Tensor, whole: bool, loss: Callable[..., Tensor]) -> tuple[Tensor, Tensor]:
    """(loss, top-1 hits) of one batch ``(B, K)``: the loss's mean when it is all the data, else
    its float64 sum over items (for targets ``(B, K)``, as with ``F.mse_loss``, the sum over
    elements divided by K, so that the total over batches divided by N is the mean). Hits are 0
    for targets that are not class labels."""
    labels = not y.is_floating_point()
    hits = (out.argmax(-1) == y).sum(-1) if labels else out.new_zeros((), dtype=torch.long)
    if whole:  # the very call a plain evaluation makes, so the centre of a grid matches it exactly
        return loss(out, y), hits
    per_item = 1 if labels else out.shape[-1]
    return loss(out.double(), y if labels else y.double(), reduction="sum") / per_item, hits


def _stopped(options: EvalOptions) -> bool:
    return options.should_stop is not None and bool(options.should_stop())


def _run_loop(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    points: Points,
    options: EvalOptions,
    loss: np.ndarray,
    acc: np.ndarray,
) -> bool:
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    targets = {name: tensors[name] for name in points.base}
    saved = {name: t.detach().clone() for name, t in targets.items()}
    # The base is usually the model's own tensors, which this loop overwrites: read the saved copy.
    aliased = {n: saved[n] for n, b in points.base.items() if b.data_ptr() == targets[n].data_ptr()}
    points = dataclasses.replace(points, base={**points.base, **aliased})
    n, batch, labels = len(y), options.batch_size, not y.is_floating_point()
    todo = points.todo()
    try:
        for n_done, k in enumerate(todo):
            if _stopped(options):
                return False
            for name, t in targets.items():
                t.copy_(points.weights(name, k))
            total, correct = 0.0, 0
            for i in range(0, n, batch):
                part, hits = _batch_loss(model(x[i : i + batch]), y[i : i + batch], batch >= n, options.loss)
                total, correct = total + float(part), correct + int(hits)
            loss[k], acc[k] = (total if batch >= n else total / n), correct / n if labels else math.nan
            if options.progress is not None:
                options.progress(n_done + 1, len(todo))
        return True
    finally:
        for name, t in targets.items():
            t.copy_(saved[name])


def _run_vmap(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    points: Points,
    options: EvalOptions,
    loss: np.ndarray,
    acc: np.ndarray,
) -> bool:
    from torch.func import functional_call, vmap

    fixed = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    n, batch, per_call = len(y), options.batch_size, options.points_per_call
    labels = not y.is_floating_point()

    def one_point(weights: dict[str, Tensor], xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        logits = functional_call(model, {**fixed, **weights}, (xb,))
        return _batch_loss(logits, yb, batch >= n, options.loss)

    batched = vmap(one_point, in_dims=(0, None, None))
    todo = points.todo()
    for start in range(0, len(todo), per_call):
        if _stopped(options):
            return False
        ks = todo[start : start + per_call]
        stack = {name: torch.stack([points.weights(name, k) for k in ks]) for name in points.base}
        total = torch.zeros(len(ks), dtype=torch.float64, device=x.device)
        correct = torch.zeros(len(ks), dtype=torch.long, device=x.device)
        for i in range(0, n, batch):
            part, hits = batched(stack, x[i : i + batch], y[i : i + batch])
            total += part.double()
            correct += hits
        loss[ks] = (total if batch >= n else total / n).cpu().numpy()
        acc[ks] = (correct.double() / n).cpu().numpy() if labels else math.nan
        if options.progress is not None:
            options.progress(min(start + per_call, len(todo)), len(todo))
    return True
