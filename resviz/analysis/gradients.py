"""Gradient flow through a residual network and its plain twin, in one forward and backward pass.

The question this module answers is the one He et al. (2015, https://arxiv.org/abs/1512.03385)
start from: does the gradient of the loss still reach the first layers of a deep network? For one
batch it measures, per weighted layer (every conv and the classifier, ordered by depth), the norm
of the weight gradient and the gradient-to-weight ratio; per residual block, the norm of the
gradient at the block's output and how the gradient reaching the block's input splits between the
shortcut and the residual branch. Twin runs feed a residual model and its plain twin
(:mod:`resviz.analysis.twins`) the same batch (:mod:`resviz.analysis.batches`) and targets, so the
shortcut is the only difference between them. Depth sweeps live in
:mod:`resviz.analysis.depth_sweep`, training the twins in :mod:`resviz.analysis.twin_training`.

Everything returned is a frozen dataclass of CPU numpy arrays plus names: plots and pages never see
a tensor. Gradients come from :func:`torch.autograd.grad`, so a model's ``.grad`` fields are left
alone; a model is run under :func:`resviz.hooks.preserve_model_state`, so its modes and BatchNorm
statistics are put back afterwards.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.analysis.batches import BatchSettings, loaded_batch, make_batch
from resviz.analysis.norms import tensor_norms
from resviz.analysis.twins import TwinSettings, build_twins, model_name, twin_names
from resviz.device import model_device, oom_guard, resolve_device
from resviz.errors import ConfigError
from resviz.hooks import capture_gradients, forward_hooks, model_lock, preserve_model_state
from resviz.models import make_twin, twin_name

if TYPE_CHECKING:
    from resviz.models.resnet import ResidualBlock, ResNet
    from resviz.models.weights import LoadedModel


@dataclass(frozen=True)
class GradientProfile:
    """One forward and backward pass of one model on one batch.

    Layer arrays have shape ``(L,)`` over the weighted layers (convs and the classifier) ordered by
    depth; block arrays have shape ``(B,)`` over the residual blocks in order.
    """

    model: str  # "resnet56", "plain56", ...
    loss: float
    layer_names: tuple[str, ...]  # dotted module names, e.g. "layer1.0.conv2"
    layer_depth: np.ndarray  # (L,) int: position on the main path, 1 = stem conv, config.depth = fc
    layer_shortcut: np.ndarray  # (L,) bool: a projection on a shortcut, off the main path
    grad_norm: np.ndarray  # (L,) ||dL/dW||_2
    weight_norm: np.ndarray  # (L,) ||W||_2
    grad_weight_ratio: np.ndarray  # (L,) ||dL/dW|| / ||W||; NaN where W is all zeros
    block_names: tuple[str, ...]  # "layer1.0", ...
    block_has_skip: np.ndarray  # (B,) bool
    block_out_grad: np.ndarray  # (B,) ||dL/d(block output)||
    block_in_grad: np.ndarray  # (B,) ||dL/d(block input)||, both paths together
    block_branch_grad: np.ndarray  # (B,) the part of it that came back through the residual branch
    block_shortcut_grad: np.ndarray  # (B,) the part that came back through the shortcut (0 if plain)
    block_out_numel: np.ndarray | None = None  # (B,) elements of each block output (batch included)

    @property
    def block_out_rms(self) -> np.ndarray:
        """(B,) ``||dL/d(block output)|| / sqrt(elements)``: comparable across stages of other sizes."""
        if self.block_out_numel is None:
            return np.full(len(self.block_out_grad), np.nan)
        return self.block_out_grad / np.sqrt(np.maximum(self.block_out_numel, 1))

    @property
    def first_last_ratio(self) -> float:
        """Gradient norm at the first block's output over the last block's output. Above 1:
        gradients grow toward the input; below 1: they vanish; 0: none reaches the first block.

        Block outputs, not weight gradients: zero-init sets each branch's last layer to zero, which
        makes the last conv's weight gradient exactly 0 (a weight-gradient ratio would be infinite),
        while the gradient at the last block's output comes straight from the classifier.
        """
        if len(self.block_out_grad) == 0:
            return math.nan
        first, last = float(self.block_out_grad[0]), float(self.block_out_grad[-1])
        if not (math.isfinite(first) and math.isfinite(last)) or last <= 0:
            return math.nan
        return first / last

    @property
    def shortcut_share(self) -> np.ndarray:
        """(B,) shortcut's part of the two path norms, ``s / (s + b)``; NaN where both are zero."""
        total = self.block_shortcut_grad + self.block_branch_grad
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, self.block_shortcut_grad / total, np.nan)


@dataclass(frozen=True)
class TwinProfile:
    """A residual network and its plain twin, measured on the same batch and targets."""

    residual: GradientProfile
    plain: GradientProfile
    twins: TwinSettings | None  # None for a given model and its twin (see loaded_twin_profile)
    batch: BatchSettings | None
    source: str = ""  # for people: which models and which batch, when not built from settings
    when: str = "at initialization"  # for titles: "after 400 training steps", "with ImageNet weights"


# --------------------------------------------------------------------------------------------------
# Layers by depth


def weighted_layers(model: ResNet) -> list[tuple[str, nn.Module, int, bool]]:
    """Every conv and linear layer as ``(name, module, depth, on_shortcut)``, ordered by depth.

    The depth counts main-path layers as the paper does (stem conv = 1, classifier = config.depth);
    a shortcut projection gets the depth of the last conv of its block, whose output it is added to.
    """
    main: list[tuple[str, nn.Module]] = []
    side: list[tuple[str, nn.Module, int]] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if ".downsample." in name:
            # Registered before the branch's convs; its depth is fixed once its block is done.
            side.append((name, module, -1))
        else:
            main.append((name, module))
    depth_of = {name: i + 1 for i, (name, _) in enumerate(main)}
    out = [(name, m, depth_of[name], False) for name, m in main]
    for name, module, _ in side:
        block = name.split(".downsample.")[0] + "."
        d = max(depth_of[n] for n in depth_of if n.startswith(block))
        out.append((name, module, d, True))
    # Stable sort: at equal depth the main-path conv comes first, then its block's projection.
    return sorted(out, key=lambda t: (t[2], t[3]))


@contextmanager
def _record_block_io(model: ResNet) -> Iterator[dict[str, dict[str, Tensor]]]:
    """Keep (not detach) each block's input and its branch and shortcut taps' outputs.

    The graph behind them lets the gradient at a block's input be split into what came back through
    each path (a vector-Jacobian product per path). Hooks live only inside this block.
    """
    record: dict[str, dict[str, Tensor]] = {name: {} for name, _ in model.named_blocks()}

    def keep(name: str, key: str):
        def hook(_m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor | None = None) -> None:
            record[name][key] = inputs[0] if out is None else out

        return hook

    outputs = [(f"{n}.{tap}_out", keep(n, tap)) for n in record for tap in ("branch", "shortcut")]
    with forward_hooks(model, outputs, pre={n: keep(n, "input") for n in record}):
        yield record


# --------------------------------------------------------------------------------------------------
# One pass


def gradient_profile(
    model: ResNet,
    inputs: Tensor,
    targets: Tensor,
    *,
    name: str | None = None,
    split: bool = True,
) -> GradientProfile:
    """One forward and backward pass in train mode, with per-layer and per-block gradient norms.

    The model's modes and BatchNorm statistics are restored afterwards and its ``.grad`` fields are
    not touched, so this is safe on a model shared by other sessions (it holds the model's lock).

    Args:
        model: a :class:`~resviz.models.resnet.ResNet`.
        inputs: ``(N, C, H, W)``, moved to the model's device.
        targets: ``(N,)`` class indices for the cross-entropy loss.
        name: label for the result (defaults to the config's ``resnetN`` / ``plainN``).
        split: also split each block's input gradient between shortcut and branch (the shortcut's
            own vector-Jacobian product per block, cheap); without it those arrays are NaN.

    Returns:
        A :class:`GradientProfile`.
    """
    device = model_device(model)
    inputs, targets = inputs.to(device), targets.to(device)
    layers = weighted_layers(model)
    blocks = model.named_blocks()
    block_names = [n for n, _ in blocks]
    with (
        oom_guard("The gradient analysis"),
        preserve_model_state(model, train=True),
        capture_gradients(model, block_names) as out_grads,
        # Block inputs and taps are kept (with their graph) only for the split: holding them costs memory.
        _record_block_io(model) if split else nullcontext({}) as io_,
    ):
        logits = model(inputs)
        loss = F.cross_entropy(logits, targets)
        weights = [m.weight for _, m, _, _ in layers]
        taps = [io_[n]["branch"] for n in block_names] if split else []
        block_inputs = [io_[n]["input"] for n in block_names] if split else []
        # One backward for the weights, every branch tap (dL/d(F(x)) = dL/d(sum), the signal each path
        # receives) and every block input (both paths together). Retained only for the shortcut
        # vector-Jacobian products below, which are cheap: the shortcut is an identity, a
        # subsample-and-pad or a 1x1 convolution, never the branch's convolutions.
        grads = torch.autograd.grad(
            loss, weights + taps + block_inputs, retain_graph=split, allow_unused=True
        )
        n_w, n_b = len(weights), len(taps)
        w_grads, tap_grads, in_grads = grads[:n_w], grads[n_w : n_w + n_b], grads[n_w + n_b :]
        grad_norm = tensor_norms(w_grads)
        weight_norm = tensor_norms(weights)
        out_norm = tensor_norms([out_grads.get(n) for n in block_names])
        out_numel = np.array([_numel(out_grads.get(n)) for n in block_names], dtype=np.int64)
        nan = np.full(len(blocks), np.nan)
        branch_norm, short_norm, in_norm = (
            _split_norms(blocks, io_, tap_grads, in_grads) if split else (nan,) * 3
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(weight_norm > 0, grad_norm / weight_norm, np.nan)
    return GradientProfile(
        model=name or model_name(model),
        loss=float(loss.detach()),
        layer_names=tuple(n for n, _, _, _ in layers),
        layer_depth=np.array([d for _, _, d, _ in layers], dtype=np.int64),
        layer_shortcut=np.array([s for _, _, _, s in layers], dtype=bool),
        grad_norm=grad_norm,
        weight_norm=weight_norm,
        grad_weight_ratio=ratio,
        block_names=tuple(block_names),
        block_has_skip=np.array([b.skip for _, b in blocks], dtype=bool),
        block_out_grad=out_norm,
        block_in_grad=in_norm,
        block_branch_grad=branch_norm,
        block_shortcut_grad=short_norm,
        block_out_numel=out_numel,
    )


def _numel(t: Tensor | None) -> int:
    return 0 if t is None else t.numel()


def _split_norms(
    blocks: list[tuple[str, ResidualBlock]],
    io_: dict[str, dict[str, Tensor]],
    tap_grads: Sequence[Tensor | None],
    in_grads: Sequence[Tensor | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block, ``(B,)`` norms of the input gradient's part via the branch, via the shortcut, and
    of the whole, from the gradient at each branch tap and at each block input."""
    b_parts, s_parts, totals = [], [], []
    for (bname, block), g, total in zip(blocks, tap_grads, in_grads):
        rec = io_[bname]
        x = rec["input"]
        if total is None:  # nothing reached the input at all
            total = torch.zeros_like(x)
        if block.skip:
            (via_short,) = torch.autograd.grad(rec["shortcut"], x, g, retain_graph=True)
            # What autograd summed at x, less the shortcut's part: the branch's part, without
            # walking the branch a second time (see test_split_equals_separate_vjps).
            via_branch = total - via_short
        else:
            via_short, via_branch = torch.zeros_like(total), total
        b_parts.append(via_branch)
        s_parts.append(via_short)
        totals.append(total)
    return tensor_norms(b_parts), tensor_norms(s_parts), tensor_norms(totals)


def twin_profile(
    twins: TwinSettings, batch: BatchSettings, *, device: str | torch.device = "auto", split: bool = True
) -> TwinProfile:
    """Build the twin pair from one seed and profile both on the same batch and targets.

    Args:
        twins: architecture, BatchNorm, initialization, taming knobs and seed.
        batch: batch source, labels, batch size ``N`` and input size ``S``.
        device: where to run ("auto": the GPU when present).
        split: also measure the shortcut/branch split per block.

    Returns:
        A :class:`TwinProfile`; inputs were ``(N, 3, S, S)``.
    """
    residual, plain = build_twins(twins, device)
    cfg = residual.config
    x, y = make_batch(batch, in_channels=cfg.in_channels, num_classes=cfg.num_classes)
    names = twin_names(cfg)
    return TwinProfile(
        residual=gradient_profile(residual, x, y, name=names[0], split=split),
        plain=gradient_profile(plain, x, y, name=names[1], split=split),
        twins=twins,
        batch=batch,
    )


def loaded_twin_profile(
    loaded: LoadedModel,
    *,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device = "auto",
    split: bool = True,
) -> TwinProfile:
    """Profile a copy of a loaded model (a sidebar pick, a saved run) and its twin on one batch.

    The shared model is only copied (under its lock, so no other session's hooks come along); the
    copy and its twin (:func:`resviz.models.make_twin`: the same weights, shortcuts flipped) are the
    ones run. The batch fits the model: ``(N, C, S, S)`` from its preprocessing. A saved run on a
    built-in dataset (shapes, digits) gets held-out images of that dataset with their true labels;
    anything else gets standard-normal inputs and random labels in range of its classes.

    Returns:
        A :class:`TwinProfile` whose ``twins`` and ``batch`` are None and ``source`` says what ran.
    """
    if not 1 <= batch_size <= 1024:
        raise ConfigError(f"Batch size must be between 1 and 1024, not {batch_size}.")
    with model_lock(loaded.model):
        model = copy.deepcopy(loaded.model)
    for m in model.modules():  # a copy carries whatever hooks the original had at that moment
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
        m._backward_hooks.clear()
    model = model.to(resolve_device(device))
    twin, kind = _counterpart(loaded, model)
    residual, plain = (model, twin) if model.config.skip else (twin, model)
    x, y, what = loaded_batch(loaded, batch_size, seed)
    names = twin_names(model.config)
    return TwinProfile(
        residual=gradient_profile(residual, x, y, name=names[0], split=split),
        plain=gradient_profile(plain, x, y, name=names[1], split=split),
        twins=None,
        batch=None,
        source=f"{loaded.name} ({loaded.source}) and {kind}; {what}",
        when=_when(loaded),
    )


def _counterpart(loaded: LoadedModel, model: ResNet) -> tuple[ResNet, str]:
    """The twin trained in the same session as a run, else ``model``'s twin with the same weights."""
    from resviz.analysis.pairs import counterpart_name, twin_run_path
    from resviz.models.weights import load_model

    path = twin_run_path(loaded)
    if path is None:
        return make_twin(model), counterpart_name(bool(model.config.skip), False)
    other = load_model(twin_name(loaded.name), path, device=model_device(model))
    return (
        other.model,
        f"{other.name}, its {counterpart_name(bool(model.config.skip), True)} ({other.source})",
    )


def _when(loaded: LoadedModel) -> str:
    """When in a network's life its gradients were measured, for chart titles."""
    if loaded.weights == "run":
        return f"after {loaded.metadata.get('steps_done', '?')} training steps"
    return {"imagenet": "with ImageNet weights", "checkpoint": "with checkpoint weights"}.get(
        loaded.weights, "at initialization"
    )


# --------------------------------------------------------------------------------------------------
# Tables (CSV downloads, the CLI)


def profile_rows(pair: TwinProfile) -> list[dict[str, object]]:
    """One row per weighted layer of either twin: the data behind the twin chart."""
    rows: list[dict[str, object]] = []
    for prof in (pair.residual, pair.plain):
        for i, name in enumerate(prof.layer_names):
            rows.append(
                {
                    "model": prof.model,
                    "layer": name,
                    "depth": int(prof.layer_depth[i]),
                    "shortcut_projection": bool(prof.layer_shortcut[i]),
                    "grad_norm": float(prof.grad_norm[i]),
                    "weight_norm": float(prof.weight_norm[i]),
                    "grad_weight_ratio": float(prof.grad_weight_ratio[i]),
                }
            )
    return rows


def block_rows(pair: TwinProfile) -> list[dict[str, object]]:
    """One row per residual block of either twin: output gradient and the shortcut/branch split."""
    rows: list[dict[str, object]] = []
    for prof in (pair.residual, pair.plain):
        share = prof.shortcut_share
        for i, name in enumerate(prof.block_names):
            rows.append(
                {
                    "model": prof.model,
                    "block": name,
                    "has_shortcut": bool(prof.block_has_skip[i]),
                    "out_grad_norm": float(prof.block_out_grad[i]),
                    "in_grad_norm": float(prof.block_in_grad[i]),
                    "via_branch": float(prof.block_branch_grad[i]),
                    "via_shortcut": float(prof.block_shortcut_grad[i]),
                    "shortcut_share": float(share[i]),
                }
            )
    return rows
