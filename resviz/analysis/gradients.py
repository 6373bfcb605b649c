"""Gradient flow through a residual network and its plain twin, at initialization and in training.

The question this module answers is the one He et al. (2015, https://arxiv.org/abs/1512.03385)
start from: does the gradient of the loss still reach the first layers of a deep network? For one
batch it measures, per weighted layer (every conv and the classifier, ordered by depth), the norm
of the weight gradient and the gradient-to-weight ratio; per residual block, the norm of the
gradient at the block's output and how the gradient reaching the block's input splits between the
shortcut and the residual branch. Twin runs feed a residual model and its plain twin (built by
:func:`resviz.models.make_twin` from the same seed) the same batch and targets, so the shortcut is
the only difference between them.

Everything returned is a frozen dataclass of CPU numpy arrays plus names: plots and pages never see
a tensor. Gradients come from :func:`torch.autograd.grad`, so a model's ``.grad`` fields are left
alone; a model is run under :func:`resviz.hooks.preserve_model_state`, so its modes and BatchNorm
statistics are put back afterwards.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.device import oom_guard, resolve_device
from resviz.errors import ConfigError, ResvizError
from resviz.hooks import capture_gradients, model_lock, preserve_model_state
from resviz.models import cifar_config, create_model, get_spec, make_twin
from resviz.models.config import INITS, ResNetConfig

if TYPE_CHECKING:
    from resviz.models.resnet import ResidualBlock, ResNet
    from resviz.models.weights import LoadedModel

BatchSource = Literal["random", "samples", "digits"]
LabelKind = Literal["random", "true"]

CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS: tuple[int, ...] = (18, 34)
BATCH_SOURCES: dict[str, str] = {
    "random": "random inputs (standard normal pixels)",
    "samples": "the built-in sample images (random crops and flips)",
    "digits": "scikit-learn's handwritten digits (8x8, upsampled, 10 classes)",
}
LABEL_KINDS: dict[str, str] = {
    "random": "cross-entropy to random labels",
    "true": "cross-entropy to the true labels (digits only)",
}


# --------------------------------------------------------------------------------------------------
# Settings: hashable, so they key caches


@dataclass(frozen=True)
class TwinSettings:
    """Which twin pair to build: a residual network and its plain twin, from one seed."""

    depth: int = 56  # CIFAR 6n+2 (20, 32, 44, 56, 110, ...), or 18/34 with ``imagenet=True``
    imagenet: bool = False  # the ImageNet-style pair (resnet18/plain18, resnet34/plain34, ...)
    layers: tuple[int, ...] | None = None  # CIFAR only: custom blocks per stage, e.g. (3, 9, 27)
    batchnorm: bool = True
    init: str = "kaiming"  # kaiming | xavier | default
    zero_init_residual: bool = False  # each branch's last layer starts at zero (Goyal et al. 2017)
    branch_scale: float = 1.0  # F(x) is multiplied by this (SkipInit/Fixup-style taming)
    seed: int = 0  # seeds the initialization; both twins share it through make_twin

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        if self.init not in INITS:
            raise ConfigError(f"Initialization must be one of {list(INITS)}, not {self.init!r}.")

    def config(self) -> ResNetConfig:
        """The residual network's config (the plain twin is the same with ``skip=False``)."""
        knobs = {
            "batchnorm": self.batchnorm,
            "init": self.init,
            "zero_init_residual": self.zero_init_residual,
            "branch_scale": float(self.branch_scale),
        }
        if self.imagenet:
            if self.layers is not None:
                raise ConfigError("Custom stage sizes apply to the CIFAR family only.")
            name = f"resnet{self.depth}"
            try:
                spec = get_spec(name)
            except ResvizError:
                spec = None
            if spec is None or spec.family != "imagenet":
                raise ConfigError(
                    f"There is no ImageNet ResNet-{self.depth}; pick one of {list(IMAGENET_DEPTHS)}."
                )
            return spec.config.replace(**knobs)
        if self.layers is not None:
            if len(self.layers) != 3 or min(self.layers) < 1:
                raise ConfigError(
                    "Give three positive stage sizes for a CIFAR ResNet, e.g. 18,18,18 (110 layers)."
                )
            return cifar_config(8).replace(layers=self.layers, **knobs)
        return cifar_config(self.depth, **knobs)

    @property
    def label(self) -> str:
        cfg = self.config()
        return f"{'ImageNet' if self.imagenet else 'CIFAR'} {cfg.depth}-layer"


@dataclass(frozen=True)
class BatchSettings:
    """Where a batch comes from and what the loss compares the logits with."""

    source: BatchSource = "random"
    labels: LabelKind = "random"
    batch_size: int = 32
    image_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in BATCH_SOURCES:
            raise ConfigError(f"Batch source must be one of {list(BATCH_SOURCES)}, not {self.source!r}.")
        if self.labels not in LABEL_KINDS:
            raise ConfigError(f"Labels must be one of {list(LABEL_KINDS)}, not {self.labels!r}.")
        if self.labels == "true" and self.source != "digits":
            raise ConfigError(
                "Only the digits dataset has true labels; pick it as the batch source, or random labels."
            )
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"Batch size must be between 1 and 1024, not {self.batch_size}.")
        if not 8 <= self.image_size <= 512:
            raise ConfigError(f"Input size must be between 8 and 512 pixels, not {self.image_size}.")


# --------------------------------------------------------------------------------------------------
# Results


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


@dataclass(frozen=True)
class DepthSweep:
    """First/last gradient-norm ratio and loss of each twin pair, per depth. Arrays are ``(D,)``."""

    depths: np.ndarray  # int, layers counted as in the paper
    residual_ratio: np.ndarray
    plain_ratio: np.ndarray
    residual_loss: np.ndarray
    plain_loss: np.ndarray
    twins: TwinSettings  # the knobs shared by every depth (its own depth field is unused)
    batch: BatchSettings


@dataclass(frozen=True)
class TrainingRun:
    """Per-step gradient norms and losses of a twin pair trained side by side.

    ``*_grad`` arrays are ``(S, L)``: steps by weighted layers (the plain twin's layers, which both
    models have; the residual model's shortcut projections are left out). Losses are ``(S,)``.
    """

    layer_names: tuple[str, ...]
    layer_depth: np.ndarray  # (L,)
    residual_grad: np.ndarray  # (S, L)
    plain_grad: np.ndarray  # (S, L)
    residual_loss: np.ndarray  # (S,)
    plain_loss: np.ndarray  # (S,)
    lr: float
    momentum: float
    weight_decay: float

    @property
    def steps(self) -> int:
        return int(self.residual_loss.shape[0])


# --------------------------------------------------------------------------------------------------
# Building twins and batches


def build_twins(settings: TwinSettings, device: str | torch.device = "cpu") -> tuple[ResNet, ResNet]:
    """The residual network and its plain twin, identical wherever their layers correspond.

    Returns:
        ``(residual, plain)``, in train mode, on ``device``.
    """
    residual = create_model(settings.config(), seed=settings.seed)
    plain = make_twin(residual)
    dev = resolve_device(device)
    return residual.to(dev).train(), plain.to(dev).train()


def make_batch(
    settings: BatchSettings, *, in_channels: int = 3, num_classes: int = 10, step: int = 0
) -> tuple[Tensor, Tensor]:
    """A reproducible batch and its targets, on the CPU.

    Args:
        settings: source, labels, size and seed.
        in_channels: channels the model expects.
        num_classes: random labels are drawn from ``[0, num_classes)``.
        step: varies the draw (a new minibatch per training step); 0 for the analysis batch.

    Returns:
        inputs ``(N, in_channels, S, S)`` float32 and targets ``(N,)`` int64.
    """
    gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
    n, size = settings.batch_size, settings.image_size
    if settings.source == "random":
        x = torch.randn(n, in_channels, size, size, generator=gen)
        y = None
    elif settings.source == "digits":
        images, labels = _digits()
        idx = torch.randint(len(labels), (n,), generator=gen)
        x = F.interpolate(images[idx], size=(size, size), mode="bilinear", align_corners=False)
        x = x.expand(-1, in_channels, -1, -1).contiguous()
        y = labels[idx]
    else:
        x = _sample_batch(n, size, in_channels, gen)
        y = None
    if settings.labels == "true":
        if y is None:  # BatchSettings refuses this; kept for callers that bypass it
            raise ConfigError("Only the digits dataset has true labels.")
        if int(y.max()) >= num_classes:
            raise ConfigError(f"The digits have 10 classes; the model has only {num_classes} outputs.")
        return x, y
    return x, torch.randint(num_classes, (n,), generator=gen)


@lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits, ``(1797, 1, 8, 8)`` standardised, and labels ``(1797,)``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = (x - x.mean()) / x.std()
    return x, torch.from_numpy(data.target.astype(np.int64))


def _sample_batch(n: int, size: int, channels: int, gen: torch.Generator) -> Tensor:
    """``n`` random crops (with flips) of the built-in sample images, ``(n, channels, size, size)``."""
    try:
        from resviz.images import load_sample, sample_images
    except ImportError as exc:  # pragma: no cover - images.py ships with the app
        raise ResvizError("The built-in sample images are not available in this install.") from exc
    from resviz.preprocessing import CIFAR, Preprocessing

    names = [getattr(s, "name", s) for s in sample_images()]
    if not names:
        raise ResvizError("No built-in sample images were found; pick another batch source.")
    # Resize a little larger than the input so random crops differ from one another.
    pre = Preprocessing(int(size * 1.25), int(size * 1.25), CIFAR.mean, CIFAR.std)
    if channels != 3:
        pre = Preprocessing(pre.resize, pre.crop, CIFAR.mean[:1], CIFAR.std[:1], channels=1)
    full = pre.tensor([load_sample(name).image for name in names])  # (K, C, 1.25S, 1.25S)
    pick = torch.randint(len(names), (n,), generator=gen)
    offsets = torch.randint(full.shape[-1] - size + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    crops = []
    for k, (i, j), flip in zip(pick.tolist(), offsets.tolist(), flips.tolist()):
        crop = full[k, :, i : i + size, j : j + size]
        crops.append(crop.flip(-1) if flip else crop)
    return torch.stack(crops)


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
    from resviz.models.resnet import ResidualBlock

    record: dict[str, dict[str, Tensor]] = {}
    with model_lock(model), ExitStack() as stack:
        for name, block in model.named_modules():
            if not isinstance(block, ResidualBlock):
                continue
            slot = record.setdefault(name, {})

            def on_input(_m: nn.Module, inputs: tuple[Tensor, ...], slot=slot) -> None:
                slot["input"] = inputs[0]

            def on_branch(_m: nn.Module, _i: object, out: Tensor, slot=slot) -> None:
                slot["branch"] = out

            def on_shortcut(_m: nn.Module, _i: object, out: Tensor, slot=slot) -> None:
                slot["shortcut"] = out

            stack.callback(block.register_forward_pre_hook(on_input).remove)
            stack.callback(block.branch_out.register_forward_hook(on_branch).remove)
            stack.callback(block.shortcut_out.register_forward_hook(on_shortcut).remove)
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
    device = next(model.parameters()).device
    inputs, targets = inputs.to(device), targets.to(device)
    layers = weighted_layers(model)
    blocks: list[tuple[str, ResidualBlock]] = [(n, m) for n, m in _blocks(model)]
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
        grad_norm = _norms(w_grads)
        weight_norm = _norms(weights)
        out_norm = _norms([out_grads.get(n) for n in block_names])
        n_blocks = len(blocks)
        branch_norm = np.full(n_blocks, np.nan)
        short_norm = np.full(n_blocks, np.nan)
        in_norm = np.full(n_blocks, np.nan)
        if split:
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
            branch_norm, short_norm, in_norm = _norms(b_parts), _norms(s_parts), _norms(totals)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(weight_norm > 0, grad_norm / weight_norm, np.nan)
    return GradientProfile(
        model=name or _model_name(model),
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
    )


def _blocks(model: ResNet) -> list[tuple[str, ResidualBlock]]:
    from resviz.models.resnet import ResidualBlock

    return [(n, m) for n, m in model.named_modules() if isinstance(m, ResidualBlock)]


def _norms(tensors: Sequence[Tensor | None]) -> np.ndarray:
    """L2 norm of each tensor (NaN for None), ``(len,)`` float64, with one device-to-host copy in
    the usual case.

    Computed in float32 on the tensors' device (Apple's MPS has no float64) in one pass. Where that
    pass may have overflowed or underflowed while squaring (an infinite, zero or extreme result),
    the norm is taken again with each tensor divided by its largest magnitude first, the scale
    multiplied back in float64 on the CPU.
    """
    if not tensors:
        return np.zeros(0)
    present = [t.detach().float() for t in tensors if t is not None]
    values = np.zeros(0)
    if present:
        direct = torch.stack([torch.linalg.vector_norm(t) for t in present]).cpu().numpy()
        values = direct.astype(np.float64)
        redo = np.flatnonzero(~np.isfinite(direct) | (direct < _NORM_SAFE[0]) | (direct > _NORM_SAFE[1]))
        if redo.size:
            values[redo] = _scaled_norms([present[i] for i in redo])
    out = np.full(len(tensors), np.nan)
    out[[i for i, t in enumerate(tensors) if t is not None]] = values
    return out


# Outside this range a float32 sum of squares may have lost digits to overflow or underflow
# (squares under 1.2e-38 are subnormal: a billion of them stay under 1e-9 of a 1e-10 norm squared).
_NORM_SAFE = (1e-10, 1e15)


def _scaled_norms(tensors: Sequence[Tensor]) -> np.ndarray:
    """Overflow- and underflow-safe norms: ``max|t| * ||t / max|t|||``, the product in float64."""
    scales = torch.stack([t.abs().amax() if t.numel() else t.new_zeros(()) for t in tensors])
    tiny = torch.finfo(torch.float32).tiny
    unit = torch.stack([torch.linalg.vector_norm(t / s.clamp_min(tiny)) for t, s in zip(tensors, scales)])
    scale, unit_norm = torch.stack([scales, unit]).cpu().numpy().astype(np.float64)
    # An infinite or NaN entry makes the norm infinite or NaN: keep the scale as it is there.
    return np.where(np.isfinite(scale), scale * unit_norm, scale)


def _model_name(model: ResNet) -> str:
    cfg = model.config
    prefix = "resnet" if cfg.skip else "plain"
    return f"{prefix}{cfg.depth}"


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
    names = _twin_names(twins, cfg)
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
    twin = make_twin(model)
    residual, plain = (model, twin) if model.config.skip else (twin, model)
    x, y, what = _loaded_batch(loaded, batch_size, seed)
    cfg = model.config
    names = (f"resnet{cfg.depth}", f"plain{cfg.depth}")
    kind = "its plain twin" if cfg.skip else "its residual twin"
    return TwinProfile(
        residual=gradient_profile(residual, x, y, name=names[0], split=split),
        plain=gradient_profile(plain, x, y, name=names[1], split=split),
        twins=None,
        batch=None,
        source=f"{loaded.name} ({loaded.source}) and {kind}, same weights; {what}",
    )


def _loaded_batch(loaded: LoadedModel, n: int, seed: int) -> tuple[Tensor, Tensor, str]:
    """A batch that fits ``loaded``: its run's own held-out images when cheap, else random."""
    pre, cfg = loaded.preprocessing, loaded.config
    channels, size = int(pre.channels), int(pre.crop)
    meta = loaded.metadata if loaded.weights == "run" else {}
    dataset = meta.get("dataset")
    if dataset in ("shapes", "digits"):  # built in: a few images are generated or read in a moment
        from resviz.datasets import load_dataset

        tc = meta.get("train_config") or {}
        data = load_dataset(
            str(dataset),
            seed=int(tc.get("data_seed", 0)),  # type: ignore[union-attr]
            size=tc.get("size"),  # type: ignore[union-attr]
            n_train=64 if dataset == "shapes" else None,
            n_test=n if dataset == "shapes" else None,
        )
        x, y = data.x_test[:n], data.y_test[:n]
        if x.shape[1:] == (channels, size, size) and int(y.max()) < cfg.num_classes:
            return data.normalize(x), y, f"{len(y)} held-out {dataset} images with their true labels"
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=gen)
    y = torch.randint(cfg.num_classes, (n,), generator=gen)
    return x, y, f"{n} random inputs ({channels}x{size}x{size}) with random labels"


def _twin_names(twins: TwinSettings, cfg: ResNetConfig) -> tuple[str, str]:
    return f"resnet{cfg.depth}", f"plain{cfg.depth}"


def depth_sweep(
    depths: Sequence[int],
    twins: TwinSettings,
    batch: BatchSettings,
    *,
    device: str | torch.device = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> DepthSweep:
    """First/last gradient-norm ratio of each CIFAR twin pair, per depth, at initialization.

    Args:
        depths: CIFAR depths ``6n+2``, e.g. ``(20, 32, 44, 56, 110)``.
        twins: the shared knobs (BatchNorm, init, taming, seed); its depth and family are ignored.
        batch: the batch every pair sees.
        device: where to run.
        progress: called with ``(done, total)`` after each depth.

    Returns:
        A :class:`DepthSweep` with ``(D,)`` arrays in the order of ``depths``.
    """
    if not depths:
        raise ConfigError("Pick at least one depth for the sweep.")
    pairs = []
    for i, depth in enumerate(depths):
        pairs.append(twin_profile(sweep_settings(twins, depth), batch, device=device, split=False))
        if progress is not None:
            progress(i + 1, len(depths))
    return sweep_from_profiles(pairs, twins, batch)


def sweep_settings(twins: TwinSettings, depth: int) -> TwinSettings:
    """The CIFAR twin settings of one sweep point: ``twins``' knobs at ``depth``."""
    return TwinSettings(
        depth=int(depth),
        batchnorm=twins.batchnorm,
        init=twins.init,
        zero_init_residual=twins.zero_init_residual,
        branch_scale=twins.branch_scale,
        seed=twins.seed,
    )


def sweep_from_profiles(
    pairs: Sequence[TwinProfile], twins: TwinSettings, batch: BatchSettings
) -> DepthSweep:
    """Assemble a :class:`DepthSweep` from twin profiles measured one depth at a time (a page caches
    each depth on its own, so adding a depth to a sweep computes only that one)."""
    if not pairs:
        raise ConfigError("Pick at least one depth for the sweep.")

    def col(get: Callable[[TwinProfile], float]) -> np.ndarray:
        return np.array([get(p) for p in pairs], dtype=np.float64)

    return DepthSweep(
        depths=np.array([p.twins.config().depth for p in pairs], dtype=np.int64),
        residual_ratio=col(lambda p: p.residual.first_last_ratio),
        plain_ratio=col(lambda p: p.plain.first_last_ratio),
        residual_loss=col(lambda p: p.residual.loss),
        plain_loss=col(lambda p: p.plain.loss),
        twins=twins,
        batch=batch,
    )


def parse_stage_sizes(text: str) -> tuple[int, ...] | None:
    """``"18, 18, 18"`` -> ``(18, 18, 18)``; blank -> None (use the chosen depth)."""
    text = text.strip()
    if not text:
        return None
    try:
        sizes = tuple(int(part) for part in text.replace(" ", ",").split(",") if part)
    except ValueError:
        raise ConfigError(
            f"Write the blocks per stage as three whole numbers, e.g. 18,18,18; got {text!r}."
        ) from None
    if len(sizes) != 3 or min(sizes) < 1 or sum(sizes) > 1000:
        raise ConfigError(
            "Give three positive stage sizes (at most 1000 blocks in all), e.g. 18,18,18 for 110 layers."
        )
    return sizes


# --------------------------------------------------------------------------------------------------
# Training side by side


@dataclass
class TwinTrainer:
    """Trains a twin pair side by side on the same batches, recording gradient norms every step.

    Mutable on purpose: a page runs a few steps per chunk and keeps the trainer between reruns, so
    a stopped run keeps what it computed. Both models are built here from the settings' seed, so no
    model shared with another session is ever trained.

    The paper's optimizer: SGD with momentum 0.9 and weight decay 1e-4 (He et al. 2015, sec. 4.2).
    With the digits source each step draws a new minibatch; with random inputs or the sample images
    every step reuses the analysis batch, since fresh noise holds nothing to learn.
    """

    twins: TwinSettings
    batch: BatchSettings
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    device: str = "auto"
    _state: dict[str, object] = field(default_factory=dict, repr=False)
    _records: dict[str, list] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"The learning rate must be a positive number, not {self.lr}.")
        residual, plain = build_twins(self.twins, self.device)
        self._state["models"] = (residual, plain)
        self._state["opts"] = tuple(
            torch.optim.SGD(
                m.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
            for m in (residual, plain)
        )
        # The plain twin's layers exist in both models: compare those (shortcut projections aside).
        layers = weighted_layers(plain)
        self._state["layers"] = layers
        res_modules = dict(residual.named_modules())
        self._state["weights"] = (
            [res_modules[n].weight for n, _, _, _ in layers],
            [m.weight for _, m, _, _ in layers],
        )
        self._records = {"res_grad": [], "plain_grad": [], "res_loss": [], "plain_loss": []}

    @property
    def steps_done(self) -> int:
        return len(self._records["res_loss"])

    def step(self, n: int = 1) -> None:
        """Run ``n`` optimizer steps on both models (the same batch for both at every step)."""
        residual, plain = self._state["models"]  # type: ignore[misc]
        opts = self._state["opts"]
        w_res, w_plain = self._state["weights"]  # type: ignore[misc]
        cfg = residual.config
        device = next(residual.parameters()).device
        for _ in range(n):
            step = self.steps_done if self.batch.source == "digits" else 0
            x, y = make_batch(self.batch, in_channels=cfg.in_channels, num_classes=cfg.num_classes, step=step)
            x, y = x.to(device), y.to(device)
            with oom_guard("Training the twins"):
                for model, opt, weights, key in (
                    (residual, opts[0], w_res, "res"),  # type: ignore[index]
                    (plain, opts[1], w_plain, "plain"),  # type: ignore[index]
                ):
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    self._records[f"{key}_grad"].append(_norms([w.grad for w in weights]))
                    self._records[f"{key}_loss"].append(float(loss.detach()))
                    if math.isfinite(self._records[f"{key}_loss"][-1]):
                        opt.step()  # a diverged model stays where it diverged instead of going NaN

    def result(self) -> TrainingRun:
        """What has been recorded so far, as CPU arrays."""
        layers = self._state["layers"]
        n_layers = len(layers)  # type: ignore[arg-type]

        def grid(key: str) -> np.ndarray:
            rows = self._records[key]
            return np.stack(rows) if rows else np.zeros((0, n_layers))

        return TrainingRun(
            layer_names=tuple(n for n, _, _, _ in layers),  # type: ignore[union-attr]
            layer_depth=np.array([d for _, _, d, _ in layers], dtype=np.int64),  # type: ignore[union-attr]
            residual_grad=grid("res_grad"),
            plain_grad=grid("plain_grad"),
            residual_loss=np.array(self._records["res_loss"], dtype=np.float64),
            plain_loss=np.array(self._records["plain_loss"], dtype=np.float64),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )


def train_twins(
    twins: TwinSettings,
    batch: BatchSettings,
    steps: int,
    *,
    lr: float = 0.1,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> TrainingRun:
    """Train the twin pair ``steps`` SGD steps; the per-step record (see :class:`TwinTrainer`)."""
    trainer = TwinTrainer(twins, batch, lr=lr, device=device)
    for i in range(steps):
        trainer.step()
        if progress is not None:
            progress(i + 1, steps)
    return trainer.result()


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


def sweep_rows(sweep: DepthSweep) -> list[dict[str, object]]:
    """One row per depth."""
    return [
        {
            "depth": int(d),
            "residual_first_last_ratio": float(rr),
            "plain_first_last_ratio": float(pr),
            "residual_loss": float(rl),
            "plain_loss": float(pl),
        }
        for d, rr, pr, rl, pl in zip(
            sweep.depths, sweep.residual_ratio, sweep.plain_ratio, sweep.residual_loss, sweep.plain_loss
        )
    ]


def training_rows(run: TrainingRun) -> list[dict[str, object]]:
    """Long format: one row per step and layer, both models side by side, with the step's losses."""
    rows: list[dict[str, object]] = []
    for s in range(run.steps):
        for i, name in enumerate(run.layer_names):
            rows.append(
                {
                    "step": s + 1,
                    "layer": name,
                    "depth": int(run.layer_depth[i]),
                    "residual_grad_norm": float(run.residual_grad[s, i]),
                    "plain_grad_norm": float(run.plain_grad[s, i]),
                    "residual_loss": float(run.residual_loss[s]),
                    "plain_loss": float(run.plain_loss[s]),
                }
            )
    return rows


def settings_dict(obj: TwinSettings | BatchSettings) -> dict[str, object]:
    """Plain-JSON form of a settings dataclass."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
