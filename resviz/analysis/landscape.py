"""Loss landscapes around trained weights (Li, Xu, Taylor, Studer, Goldstein, NeurIPS 2018).

https://arxiv.org/abs/1712.09913 plots ``L(θ + αδ + βη)`` for two random directions δ, η in weight
space. Raw Gaussian directions mean little (a net with BatchNorm is invariant to the scale of each
filter), so each direction is *filter-normalized*: every filter of δ (one output channel of a conv,
one row of the classifier) is rescaled to the norm of the same filter of θ. BatchNorm parameters
and biases stay at zero in the directions, as in the paper's ``ignore='biasbn'``. Their figure:
ResNet-56 sits in a smooth, nearly convex basin; the same net without shortcuts is chaotic.

Conventions here:

- **BatchNorm runs in eval mode with the model's running statistics**, which are never recomputed
  for a perturbed θ (the paper recomputes nothing either). Loss is the mean cross-entropy on the
  evaluation images, accumulated in float64 when they are split into batches.
- **Directions are seeded per parameter name** (:func:`direction_seed`), not drawn from one
  stream: a residual model and its plain twin get the same raw directions on every parameter they
  have in common, and a projection shortcut that only one of them has shifts nothing.
- **The shared model is left exactly as it was.** Everything runs under
  :func:`resviz.hooks.preserve_model_state` (which holds :func:`resviz.hooks.model_lock`). The
  default (vmap) evaluation never writes into the model; the per-point loop writes weights in place
  and copies the saved originals back in a ``finally``, so they are restored bit for bit after a
  stop or an exception too. No hooks are installed.

How the points are evaluated (a per-point loop, or ``torch.func.vmap`` over points, chosen by
measurement) is in :mod:`resviz.analysis.landscape_eval`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from resviz.analysis.landscape_eval import DEFAULT_OPTIONS, EvalOptions, Points, check_data, evaluate
from resviz.device import model_device
from resviz.errors import ConfigError

if TYPE_CHECKING:
    from resviz.datasets import ImageDataset

Direction = dict[str, Tensor]  # parameter (or buffer) name -> tensor of the same shape


@dataclass(frozen=True)
class LandscapeSlice:
    """The loss along one line in weight space: a random direction, or from one model to another.

    Arrays have shape ``(G,)``; points not evaluated (a stop, or another process's share) are NaN.
    """

    model: str
    kind: str  # "direction" (θ + αδ) or "interpolation" ((1 - t) θ_start + t θ_end)
    coords: np.ndarray  # (G,) α, or t
    loss: np.ndarray  # (G,) mean cross-entropy
    accuracy: np.ndarray  # (G,) top-1 accuracy on the same images
    n_images: int
    seed: int | None  # the direction's seed (None for an interpolation)
    complete: bool  # False when stopped before every point was evaluated


@dataclass(frozen=True)
class LandscapeSurface:
    """``loss[i, j] = L(θ + alpha[i] δ + beta[j] η)`` on a grid; NaN where not evaluated."""

    model: str
    alpha: np.ndarray  # (G,)
    beta: np.ndarray  # (G,)
    loss: np.ndarray  # (G, G)
    accuracy: np.ndarray  # (G, G)
    n_images: int
    seeds: tuple[int, int]  # of δ and η
    complete: bool


@dataclass(frozen=True)
class LandscapeShape:
    """A few numbers that say how a surface looks (for the README and the page's table)."""

    centre: float  # loss at α = β = 0 (the trained weights)
    edge_mean: float  # mean loss on the grid's border
    edge_ratio: float  # edge_mean / centre
    minimum: float
    local_minima: int  # grid points below all their (up to 8) neighbours by more than the tolerance
    centre_is_lowest: bool = False  # the trained weights are the grid's lowest point
    tolerance: float = 0.0  # relative: a minimum must be this share of its loss below each neighbour


# --------------------------------------------------------------------------- directions


def direction_seed(seed: int, name: str) -> int:
    """The generator seed of parameter ``name``'s part of direction ``seed`` (stable across runs).

    crc32, not ``hash``: Python salts string hashes per process, and every torchrun process (and
    every twin) must draw the same numbers.
    """
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def random_direction(model: nn.Module, seed: int, *, normalize: bool = True) -> Direction:
    """A Gaussian direction over ``model``'s parameters, filter-normalized against its weights.

    Args:
        model: the network; read only.
        seed: same seed, same raw numbers for every parameter of the same name and shape.
        normalize: rescale each filter to the norm of the weights' filter (else raw N(0, 1)).

    Returns:
        name -> tensor like the parameter, on the model's device. Tensors of one dimension or
        fewer (biases, BatchNorm weights and biases) are zero.
    """
    out: Direction = {}
    for name, p in model.named_parameters():
        g = torch.Generator().manual_seed(direction_seed(seed, name))
        d = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.device, p.dtype)
        out[name] = d
    return filter_normalize(out, dict(model.named_parameters())) if normalize else out


def filter_normalize(direction: Mapping[str, Tensor], weights: Mapping[str, Tensor]) -> Direction:
    """Each filter ``d[i]`` scaled to ``||w[i]||``; one-dimensional tensors set to zero.

    A filter is everything under one index of the first dimension: ``(in, kh, kw)`` of a conv's
    ``(out, in, kh, kw)`` weight, one row of a linear layer's ``(out, in)``. As in the paper's code,
    ``1e-10`` keeps an all-zero filter of ``d`` from dividing by zero.
    """
    out: Direction = {}
    for name, d in direction.items():
        w = weights[name].detach()
        if d.dim() <= 1:
            out[name] = torch.zeros_like(d)
            continue
        d_norm = d.flatten(1).norm(dim=1)
        w_norm = w.flatten(1).norm(dim=1)
        scale = (w_norm / (d_norm + 1e-10)).view(-1, *([1] * (d.dim() - 1)))
        out[name] = d * scale
    return out


# --------------------------------------------------------------------------- public entry points


def grid_coords(grid: int, span: float) -> np.ndarray:
    """``grid`` evenly spaced values from ``-span`` to ``span``, (G,); 0 is on it when G is odd.

    Raises:
        ConfigError: a grid under 2 points, a range that is not a positive number.
    """
    if grid < 2:
        raise ConfigError(f"A landscape needs a grid of at least 2 points a side, not {grid}.")
    if not (math.isfinite(span) and span > 0):
        raise ConfigError(f"The range must be a positive number, not {span}.")
    return np.linspace(-span, span, grid)


def surface(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    grid: int = 21,
    span: float = 1.0,
    seeds: tuple[int, int] = (0, 1),
    name: str = "",
    shard: tuple[int, int] = (0, 1),
    options: EvalOptions = DEFAULT_OPTIONS,
) -> LandscapeSurface:
    """``L(θ + αδ + βη)`` on a ``grid`` x ``grid`` grid over ``[-span, span]²`` (Li et al., fig. 5).

    Args:
        model: the trained network, left exactly as it was (see the module's notes).
        x: ``(N, C, H, W)`` normalized evaluation images; y: ``(N,)`` labels.
        grid: points a side (at least 2); span: half the range of α and β (positive).
        seeds: of the filter-normalized directions δ and η.
        name: the model's name, for the result.
        shard: ``(rank, world)``: evaluate only the points whose flat index ``% world == rank``
            (``alpha`` major); the others are NaN, for rank 0 to gather.
        options: evaluation method, batch sizes, progress and stop callbacks.

    Raises:
        ConfigError: a grid under 2, a range that is not positive, no images.
    """
    coords = grid_coords(grid, span)
    check_data(x, y)
    dirs = [random_direction(model, s) for s in seeds]
    base = {k: v.detach() for k, v in model.named_parameters()}
    aa, bb = np.meshgrid(coords, coords, indexing="ij")
    points = Points(base, dirs, np.stack([aa.ravel(), bb.ravel()], axis=1), shard)
    loss, acc, done = evaluate(model, x, y, points, options)
    shape = (grid, grid)
    seeds = (int(seeds[0]), int(seeds[1]))
    return LandscapeSurface(
        name, coords, coords.copy(), loss.reshape(shape), acc.reshape(shape), len(y), seeds, done
    )


def direction_slice(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    grid: int = 21,
    span: float = 1.0,
    seed: int = 0,
    name: str = "",
    options: EvalOptions = DEFAULT_OPTIONS,
) -> LandscapeSlice:
    """``L(θ + αδ)`` for ``grid`` values of α in ``[-span, span]`` (Li et al., fig. 2-3).

    The arguments are those of :func:`surface`, with one direction's ``seed``.
    """
    coords = grid_coords(grid, span)
    check_data(x, y)
    base = {k: v.detach() for k, v in model.named_parameters()}
    points = Points(base, [random_direction(model, seed)], coords[:, None])
    loss, acc, done = evaluate(model, x, y, points, options)
    return LandscapeSlice(name, "direction", coords, loss, acc, len(y), int(seed), done)


def interpolation(
    model: nn.Module,
    start: Mapping[str, Tensor],
    end: Mapping[str, Tensor],
    x: Tensor,
    y: Tensor,
    *,
    grid: int = 21,
    t_range: tuple[float, float] = (-0.5, 1.5),
    name: str = "",
    options: EvalOptions = DEFAULT_OPTIONS,
) -> LandscapeSlice:
    """The loss on the line ``(1 - t) θ_start + t θ_end`` between two state dicts of ``model``.

    Parameters and floating-point buffers (BatchNorm's running statistics) move together; integer
    buffers (``num_batches_tracked``) stay the model's. A variance extrapolated below zero is
    clamped at zero. ``model`` supplies the architecture and is left exactly as it was.

    Raises:
        ConfigError: state dicts whose names or shapes do not fit the model, a grid under 2.
    """
    lo, hi = (float(v) for v in t_range)
    grid_coords(grid, 1.0)
    if not hi > lo:
        raise ConfigError(f"The interpolation range must run upwards, not from {lo} to {hi}.")
    check_data(x, y)
    device = model_device(model)
    base, delta = {}, {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            continue
        if any(key not in sd or sd[key].shape != value.shape for sd in (start, end)):
            raise ConfigError(
                f"Both state dicts must fit {name or 'the model'}; {key!r} is missing or differs."
            )
        base[key] = start[key].to(device, value.dtype)
        delta[key] = end[key].to(device, value.dtype) - base[key]
    coords = np.linspace(lo, hi, grid)
    loss, acc, done = evaluate(model, x, y, Points(base, [delta], coords[:, None]), options)
    return LandscapeSlice(name, "interpolation", coords, loss, acc, len(y), None, done)


def initial_state(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """The weights ``model``'s architecture starts from with ``seed``: a run's initialization.

    The Training Lab builds every model with ``create_model(config, seed=run seed)``, so the same
    call gives back the weights a saved run started from (the run does not store them).
    """
    from resviz.models import create_model

    return create_model(model.config, seed=int(seed)).state_dict()


MINIMUM_TOLERANCE = 0.01  # a local minimum lies at least 1% of its loss below every neighbour


def local_minima(loss: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Grid points below every neighbour (8 inside, fewer on the border); (M, 2) indices.

    With ``tolerance`` > 0 a point must lie below each neighbour by more than ``tolerance`` times
    its own loss: on a flat plateau (an untrained net near ln(classes)) neighbours differ by
    rounding-level amounts, and such dips are not minima anyone would call a valley.
    NaN points (not evaluated) are never minima and never beat a neighbour.
    """
    grid = np.asarray(loss, dtype=float)
    padded = np.pad(grid, 1, constant_values=np.inf)
    padded[np.isnan(padded)] = np.inf
    centre = padded[1:-1, 1:-1]
    is_min = np.isfinite(centre)
    h, w = grid.shape
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_min &= centre * (1 + tolerance) < padded[1 + di : 1 + di + h, 1 + dj : 1 + dj + w]
    return np.argwhere(is_min)


def shape_summary(result: LandscapeSurface) -> LandscapeShape:
    """Centre against border, the lowest loss, and how many local minima the grid shows."""
    loss = result.loss
    g = loss.shape[0]
    border = np.concatenate([loss[0], loss[-1], loss[1:-1, 0], loss[1:-1, -1]])
    centre_i = int(np.argmin(np.abs(result.alpha)))
    centre_j = int(np.argmin(np.abs(result.beta)))
    centre = float(loss[centre_i, centre_j])
    edge = float(np.nanmean(border)) if g else math.nan
    return LandscapeShape(
        centre=centre,
        edge_mean=edge,
        edge_ratio=edge / centre if centre else math.inf,
        minimum=float(np.nanmin(loss)),
        local_minima=len(local_minima(loss, MINIMUM_TOLERANCE)),
        centre_is_lowest=bool(centre <= np.nanmin(loss)),
        tolerance=MINIMUM_TOLERANCE,
    )


def surface_rows(result: LandscapeSurface) -> list[dict[str, object]]:
    """One record per grid point (for CSV)."""
    rows = []
    for i, a in enumerate(result.alpha):
        for j, b in enumerate(result.beta):
            rows.append(
                {
                    "model": result.model,
                    "alpha": float(a),
                    "beta": float(b),
                    "loss": float(result.loss[i, j]),
                    "accuracy": float(result.accuracy[i, j]),
                }
            )
    return rows


def slice_rows(result: LandscapeSlice) -> list[dict[str, object]]:
    """One record per point of a slice (for CSV)."""
    axis = "t" if result.kind == "interpolation" else "alpha"
    return [
        {"model": result.model, "kind": result.kind, axis: float(c), "loss": float(v), "accuracy": float(a)}
        for c, v, a in zip(result.coords, result.loss, result.accuracy)
    ]


def evaluation_images(data: ImageDataset, n: int | None = None) -> tuple[Tensor, Tensor]:
    """The first ``n`` held-out images of an :class:`~resviz.datasets.ImageDataset`, normalized.

    Returns:
        ``(N, C, H, W)`` float32 images and ``(N,)`` labels, on the CPU.
    """
    x, y = data.x_test, data.y_test
    if n is not None:
        x, y = x[:n], y[:n]
    return data.normalize(x), y


@dataclass(frozen=True)
class TwinLandscape:
    """A residual net and its plain counterpart on the same grid, directions' seeds and images."""

    residual: LandscapeSurface
    plain: LandscapeSurface
    slices: tuple[LandscapeSlice, ...]  # one random direction (seed ``seeds[0]``), residual then plain
    interpolations: tuple[LandscapeSlice, ...]  # initial -> trained weights, when asked for
    seconds: float

    @property
    def complete(self) -> bool:
        parts = (self.residual, self.plain, *self.slices, *self.interpolations)
        return all(p.complete for p in parts)


def twin_landscape(
    residual: nn.Module,
    plain: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    grid: int = 21,
    span: float = 1.0,
    seeds: tuple[int, int] = (0, 1),
    names: tuple[str, str] = ("residual", "plain"),
    starts: tuple[Mapping[str, Tensor], Mapping[str, Tensor]] | None = None,
    options: EvalOptions = DEFAULT_OPTIONS,
) -> TwinLandscape:
    """Surfaces, a 1D slice and (with ``starts``, e.g. :func:`initial_state`) the line from the
    start to the trained weights (t from 0 to 1.25: before the start the weights overflow), for both
    nets. ``options.progress`` sees one count over all parts.

    A stop (``options.should_stop``) ends the part running and skips the rest: they come back
    NaN, with ``complete`` False.
    """
    grid_coords(grid, span)  # bad sizes fail before any work
    sizes = [grid * grid, grid * grid, grid, grid] + ([grid, grid] if starts else [])
    stopped = [False]

    def part(i: int) -> EvalOptions:
        def progress(done: int, _total: int) -> None:
            if options.progress is not None:
                options.progress(sum(sizes[:i]) + done, sum(sizes))

        def should_stop() -> bool:
            stopped[0] = stopped[0] or (options.should_stop is not None and options.should_stop())
            return stopped[0]

        return dataclasses.replace(options, progress=progress, should_stop=should_stop)

    start = time.perf_counter()
    kw = {"grid": grid, "span": span}
    surf = [
        surface(m, x, y, seeds=seeds, name=n, options=part(i), **kw)
        for i, (m, n) in enumerate(zip((residual, plain), names))
    ]
    lines = [
        direction_slice(m, x, y, seed=seeds[0], name=n, options=part(2 + i), **kw)
        for i, (m, n) in enumerate(zip((residual, plain), names))
    ]
    interp = []
    if starts is not None:
        for i, (m, n, s) in enumerate(zip((residual, plain), names, starts)):
            interp.append(
                interpolation(
                    m, s, m.state_dict(), x, y, grid=grid, t_range=(0.0, 1.25), name=n, options=part(4 + i)
                )
            )
    return TwinLandscape(surf[0], surf[1], tuple(lines), tuple(interp), time.perf_counter() - start)


def twin_npz(result: TwinLandscape) -> bytes:
    """Every array of a :class:`TwinLandscape` in one ``.npz`` file (keys ``<net>_<what>``)."""
    import io

    arrays: dict[str, np.ndarray] = {"alpha": result.residual.alpha, "beta": result.residual.beta}
    for key, s in (("residual", result.residual), ("plain", result.plain)):
        arrays[f"{key}_loss"], arrays[f"{key}_accuracy"] = s.loss, s.accuracy
    for key, line in zip(("residual", "plain"), result.slices):
        arrays[f"{key}_slice_alpha"], arrays[f"{key}_slice_loss"] = line.coords, line.loss
    for key, line in zip(("residual", "plain"), result.interpolations):
        arrays[f"{key}_interpolation_t"], arrays[f"{key}_interpolation_loss"] = line.coords, line.loss
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
