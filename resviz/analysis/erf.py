"""The effective receptive field: how much of its theoretical receptive field a unit really uses.

Luo, Li, Urtasun and Zemel, "Understanding the Effective Receptive Field in Deep Convolutional
Neural Networks" (NeurIPS 2016, https://arxiv.org/abs/1701.04128). The gradient of a layer's centre
unit with respect to the input, its magnitude averaged over inputs, is a bump that fills only a
small part of the theoretical receptive field: roughly Gaussian, growing like the square root of
the number of layers while the theoretical field grows linearly. They also find skip connections
make the effective field smaller.

:func:`effective_receptive_field` measures one model at one layer; :func:`erf_pair` a model and its
counterpart; :func:`erf_sweep` fresh CIFAR twins of several depths at initialization. Sizes are the
side ``2r + 1`` of the smallest square around the unit's centre that holds a given share of the
gradient mass, comparable with the theoretical field's side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from resviz.device import model_device, oom_guard
from resviz.errors import ConfigError, LayerNotUsedError
from resviz.hooks import forward_hooks, preserve_model_state, resolve_layers

if TYPE_CHECKING:
    from resviz.models.weights import LoadedModel

Progress = Callable[[int, int], None]
DEFAULT_MASS = 0.95


@dataclass(frozen=True)
class ReceptiveField:
    """The theoretical receptive field of one layer's units, from its convolutions and poolings."""

    size: int  # side of the square of input pixels a unit can see (on the longest path)
    jump: int  # input pixels between neighbouring units (the layer's total stride)
    start: float  # input coordinate of the centre of unit 0's field


@dataclass(frozen=True)
class ErfMap:
    """Mean |d(centre unit)/d(input)| of one model at one layer. Maps are ``(H, W)``."""

    model: str
    layer: str
    map: np.ndarray  # (H, W) summed over input channels, averaged over inputs, sums to 1
    centre: tuple[int, int]  # input pixel (row, col) at the centre of the unit's theoretical field
    theoretical: int  # side of the theoretical receptive field, pixels
    cumulative: np.ndarray  # (R + 1,) share of the mass within Chebyshev radius r of the centre
    inputs: int  # how many inputs were averaged

    def size(self, mass: float = DEFAULT_MASS) -> int:
        """Side ``2r + 1`` of the smallest square around the centre holding ``mass`` of the map."""
        if not 0.0 < mass <= 1.0:
            raise ConfigError(f"The mass share must be in (0, 1], not {mass}.")
        r = int(np.searchsorted(self.cumulative, mass - 1e-9))
        return 2 * min(r, len(self.cumulative) - 1) + 1


@dataclass(frozen=True)
class ErfPair:
    residual: ErfMap
    plain: ErfMap
    source: str  # for people: which models, which inputs


@dataclass(frozen=True)
class ErfSweep:
    """ERF against depth for CIFAR twins at initialization, at the end of the first stage."""

    depths: np.ndarray  # (D,) int
    theoretical: np.ndarray  # (D,) theoretical field side
    plain: tuple[ErfMap, ...]  # (D,)
    residual: tuple[ErfMap, ...]  # (D,)
    setting: str

    def sizes(self, mass: float = DEFAULT_MASS) -> tuple[np.ndarray, np.ndarray]:
        """``(plain, residual)`` ERF sides ``(D,)`` at ``mass``."""
        return (
            np.array([m.size(mass) for m in self.plain]),
            np.array([m.size(mass) for m in self.residual]),
        )


# --------------------------------------------------------------------------------------------------
# The theoretical receptive field


def theoretical_field(model: nn.Module, layer: str) -> ReceptiveField:
    """Receptive field of ``layer``'s units along the network's longest path.

    Walks the convolutions and poolings registered up to and including ``layer`` (in module order,
    which is forward order for resviz's ResNets and for ``nn.Sequential`` stacks), skipping shortcut
    projections (``downsample``): they run beside a block's branch and see less than it does.
    Recurrence: ``size += (k - 1) * jump``, ``start += ((k - 1) / 2 - pad) * jump``, ``jump *= stride``.
    """
    resolve_layers(model, [layer])
    size, jump, start = 1, 1, 0.0
    names = [n for n, _ in model.named_modules()]
    last = max(i for i, n in enumerate(names) if n == layer or n.startswith(layer + ".") or not layer)
    for name, m in list(model.named_modules())[: last + 1]:
        if ".downsample" in f".{name}" or not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            continue
        k, s, p, d = (_pair(getattr(m, a, 1)) for a in ("kernel_size", "stride", "padding", "dilation"))
        span = d * (k - 1)
        size += span * jump
        start += (span / 2 - p) * jump
        jump *= s
    return ReceptiveField(size=int(size), jump=int(jump), start=float(start))


def _pair(v: object) -> int:
    """The first of a conv's (h, w) hyper-parameters (square kernels, as in every resviz model)."""
    return int(v[0] if isinstance(v, tuple) else v)  # type: ignore[arg-type,index]


# --------------------------------------------------------------------------------------------------
# The measurement


class _Reached(Exception):
    """Raised by the hook once the layer has run: the rest of the forward pass is not needed."""


def centre_gradients(
    model: nn.Module, layer: str, x: Tensor, *, chunk: int = 32
) -> tuple[Tensor, tuple[int, int]]:
    """|d(sum over channels of the centre unit of ``layer``)/d(input)| per input.

    The forward pass stops once ``layer`` has run; the backward starts at its centre unit.

    Args:
        model: any image network; run in eval mode under its lock, left exactly as it was.
        layer: dotted module name whose output is ``(N, C, h, w)``.
        x: ``(N, C_in, H, W)`` inputs.
        chunk: inputs per pass.

    Returns:
        ``(N, H, W)`` float64 maps on the CPU, summed over input channels, and the layer's ``(h, w)``.
    """
    out: list[Tensor] = []
    captured: dict[str, Tensor] = {}

    def hook(_m: nn.Module, _i: object, o: Tensor) -> None:
        captured["out"] = o
        raise _Reached

    dev = model_device(model)
    hw = (0, 0)
    with (
        oom_guard("The receptive-field analysis"),
        preserve_model_state(model),
        torch.enable_grad(),
        forward_hooks(model, {layer: hook}),
    ):
        for part in x.split(chunk):
            xi = part.to(dev).float().requires_grad_(True)
            captured.clear()
            with contextlib.suppress(_Reached):
                model(xi)
            if "out" not in captured:
                raise LayerNotUsedError.for_layer(layer)
            y = captured.pop("out")
            if not isinstance(y, Tensor) or y.dim() != 4:
                raise ConfigError(f"Layer {layer!r} gives no spatial map; choose a convolutional layer.")
            hw = (int(y.shape[2]), int(y.shape[3]))
            # Eval mode: inputs are independent, so one backward of the sum gives each its own.
            (g,) = torch.autograd.grad(y[:, :, hw[0] // 2, hw[1] // 2].sum(), xi)
            out.append(g.detach().abs().sum(1).double().cpu())
    return torch.cat(out), hw


def erf_map(grads: Tensor, rf: ReceptiveField, out_hw: tuple[int, int], *, model: str, layer: str) -> ErfMap:
    """Average per-input gradient maps ``(N, H, W)`` into an :class:`ErfMap` around the centre unit."""
    mean = grads.mean(0).numpy()
    total = float(mean.sum())
    mean = mean / total if total > 0 else mean
    cy = round(rf.start + (out_hw[0] // 2) * rf.jump)
    cx = round(rf.start + (out_hw[1] // 2) * rf.jump)
    rows, cols = np.indices(mean.shape)
    ring = np.maximum(np.abs(rows - cy), np.abs(cols - cx))  # Chebyshev distance: square fields
    mass = np.bincount(ring.ravel(), weights=mean.ravel())
    return ErfMap(
        model=model,
        layer=layer,
        map=mean,
        centre=(cy, cx),
        theoretical=rf.size,
        cumulative=np.cumsum(mass) if total > 0 else np.zeros_like(mass),
        inputs=int(grads.shape[0]),
    )


def effective_receptive_field(
    model: nn.Module, layer: str, x: Tensor, *, name: str = "model", chunk: int = 32
) -> ErfMap:
    """The effective receptive field of ``layer``'s centre unit, averaged over the inputs ``x``.

    Args:
        model: the network (left unchanged: eval mode under its lock, no hook left).
        layer: dotted name of a layer with a spatial output.
        x: ``(N, C, H, W)`` inputs.
        name: what the result calls the model.
        chunk: inputs per pass.
    """
    rf = theoretical_field(model, layer)
    grads, hw = centre_gradients(model, layer, x, chunk=chunk)
    return erf_map(grads, rf, hw, model=name, layer=layer)


# --------------------------------------------------------------------------------------------------
# A model and its counterpart; twins against depth

MAX_RANDOM_SIZE = 128  # random inputs for models without a dataset: ResNets take any size


def erf_inputs(loaded: LoadedModel, n: int = 32, seed: int = 0) -> tuple[Tensor, str]:
    """Held-out images of the model's run, else ``n`` random images (standard normal pixels)."""
    from resviz.analysis.pairs import held_out

    if not 1 <= n <= 1024:
        raise ConfigError(f"Average over 1 to 1024 inputs, not {n}.")
    data = held_out(loaded, n)
    if data is not None:
        return data.normalize(data.x_test), f"{len(data.y_test)} held-out {data.name} images"
    size = min(loaded.preprocessing.crop, MAX_RANDOM_SIZE)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, loaded.config.in_channels, size, size, generator=gen)
    return x, f"{n} random {size}x{size} images (standard normal pixels, seed {seed})"


def erf_pair(loaded: LoadedModel, layer: str, *, n: int = 32, seed: int = 0) -> ErfPair:
    """The ERF of ``layer`` in a model and its counterpart (:func:`resviz.analysis.pairs.model_pair`),
    on the same inputs. BatchNorm in eval mode with each model's running statistics."""
    from resviz.analysis.pairs import model_pair

    pair = model_pair(loaded)
    x, where = erf_inputs(loaded, n, seed)
    res = effective_receptive_field(pair.residual.model, layer, x, name=pair.residual.name)
    plain = effective_receptive_field(pair.plain.model, layer, x, name=pair.plain.name)
    return ErfPair(residual=res, plain=plain, source=f"{pair.how}; {where}")


def sweep_size(depths: Sequence[int]) -> int:
    """Input side for a sweep: the deepest first stage's theoretical field (``4n + 3``) fits inside."""
    n = (max(depths) - 2) // 6
    return int(16 * -(-(4 * n + 3 + 8) // 16))


def erf_depth(depth: int, *, size: int, n: int = 16, seed: int = 0) -> tuple[ErfMap, ErfMap]:
    """Fresh CIFAR twins of one depth at initialization, at the end of their first stage
    (``layer1``, full resolution); BatchNorm statistics of the inputs, frozen. ``(plain, residual)``."""
    from resviz.analysis.shattered import freeze_batch_statistics
    from resviz.analysis.twins import TwinSettings, build_twins

    residual, plain = build_twins(TwinSettings(depth=int(depth), seed=seed), "cpu")
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    maps = []
    for net in (plain, residual):  # both built here: their statistics may be set
        freeze_batch_statistics(net, x, chunk=n)
        maps.append(
            effective_receptive_field(
                net, "layer1", x, name=f"{'resnet' if net.config.skip else 'plain'}{depth}"
            )
        )
    return maps[0], maps[1]


def erf_sweep(
    depths: str | Sequence[int], *, n: int = 16, seed: int = 0, progress: Progress | None = None
) -> ErfSweep:
    """ERF of the first stage's centre unit against depth, CIFAR twins at initialization.

    Args:
        depths: CIFAR depths ``6n+2``.
        n: random inputs averaged per depth.
        seed: weights and inputs.
        progress: called with ``(done, total)`` after each depth.
    """
    from resviz.analysis.shattered import parse_depths

    ds = parse_depths(depths, low=8)
    bad = [d for d in ds if (d - 2) % 6]
    if bad:
        raise ConfigError(f"CIFAR depths are 6n+2 (8, 14, 20, 32, 44, 56, 110, ...); {bad[0]} is not.")
    size = sweep_size(ds)
    plain, residual = [], []
    for i, d in enumerate(ds):
        p, r = erf_depth(d, size=size, n=n, seed=seed)
        plain.append(p)
        residual.append(r)
        if progress is not None:
            progress(i + 1, len(ds))
    return sweep_from_maps(ds, plain, residual, size=size, n=n, seed=seed)


def sweep_from_maps(
    depths: Sequence[int],
    plain: Sequence[ErfMap],
    residual: Sequence[ErfMap],
    *,
    size: int,
    n: int,
    seed: int,
) -> ErfSweep:
    """Assemble a sweep from per-depth maps (a page caches each depth on its own)."""
    return ErfSweep(
        depths=np.asarray(depths, dtype=np.int64),
        theoretical=np.array([m.theoretical for m in plain], dtype=np.int64),
        plain=tuple(plain),
        residual=tuple(residual),
        setting=(
            f"CIFAR twins at initialization (BatchNorm with the inputs' statistics, Kaiming, seed {seed}), "
            f"centre unit of layer1; {n} random {size}x{size} inputs"
        ),
    )


def sweep_rows(sweep: ErfSweep, mass: float = DEFAULT_MASS) -> list[dict[str, object]]:
    """One row per depth: theoretical field and ERF sides at ``mass``, plain and residual."""
    plain, residual = sweep.sizes(mass)
    return [
        {"depth": int(d), "theoretical_rf": int(t), "plain_erf": int(p), "residual_erf": int(r), "mass": mass}
        for d, t, p, r in zip(sweep.depths, sweep.theoretical, plain, residual)
    ]


def map_rows(m: ErfMap) -> list[dict[str, object]]:
    """One row per pixel of an ERF map (for CSV)."""
    return [
        {"model": m.model, "layer": m.layer, "row": int(i), "col": int(j), "value": float(m.map[i, j])}
        for i in range(m.map.shape[0])
        for j in range(m.map.shape[1])
    ]
