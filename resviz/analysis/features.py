"""Feature maps: what each layer of a ResNet computes, and what the skip adds at each block.

Two analyses, both safe on a model shared by every browser session (each holds the model's lock,
runs in eval mode and leaves modes and BatchNorm statistics as they were; hooks go on exit):

* :func:`capture_activations` keeps the outputs of the layers asked for (and, for each residual
  block asked for, its three signals: F(x), the shortcut and the sum) as CPU numpy arrays. How much
  memory that takes is known before the forward pass (:func:`estimate_bytes`, from a shape-only
  pass on the ``meta`` device); a request over ``max_bytes`` is refused with the number.
* :func:`depth_statistics` reduces every block's signals to a few numbers inside the hooks, so its
  memory does not grow with depth: mean, standard deviation, the fraction of zeros after ReLU,
  the fraction of dead channels, and ``||F(x)|| / ||x||``, how much each block changes its input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor, nn

from resviz.device import oom_guard
from resviz.errors import ResvizError
from resviz.hooks import block_taps, capture_outputs, model_lock, preserve_model_state, resolve_layers

LARGE_BYTES = 512 * 2**20  # requests above this are refused unless the caller raises the limit


class CaptureTooLargeError(ResvizError):
    """A capture that would hold more memory than the caller allowed."""


class LayerNotUsedError(ResvizError):
    """A module the model has but never calls in its forward pass (a plain block's shortcut tap)."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # results may be cached and shared between sessions
    return a


@dataclass(frozen=True)
class BlockMaps:
    """The three signals of one residual block for a batch, each ``(N, C, H, W)``.

    ``output = relu(branch + shortcut)`` (without the ReLU in pre-activation blocks);
    ``shortcut`` is None in a block without one (a plain twin).
    """

    name: str
    branch: np.ndarray
    shortcut: np.ndarray | None
    output: np.ndarray


@dataclass(frozen=True)
class Activations:
    """Outputs of named layers for one batch, on the CPU.

    Attributes:
        maps: dotted name -> float32 array, ``(N, C, H, W)`` for conv layers (``(N, F)`` for ``fc``);
            read-only. A block's taps are named ``<block>.branch_out`` and ``<block>.shortcut_out``.
        blocks: residual blocks whose three signals were captured.
    """

    maps: Mapping[str, np.ndarray]
    blocks: tuple[str, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum({id(a): a.nbytes for a in self.maps.values()}.values())

    def block(self, name: str) -> BlockMaps:
        taps = block_taps(name)
        if name not in self.blocks:
            raise ResvizError(f"Block {name!r} was not captured; captured blocks: {', '.join(self.blocks)}.")
        return BlockMaps(
            name, self.maps[taps["branch"]], self.maps.get(taps["shortcut"]), self.maps[taps["output"]]
        )


def capture_names(layers: Iterable[str] = (), blocks: Iterable[str] = ()) -> list[str]:
    """The dotted names to hook: ``layers`` plus branch, shortcut and output of each block."""
    names = dict.fromkeys(layers)
    for b in blocks:
        names.update(dict.fromkeys(block_taps(b).values()))
    return list(names)


@lru_cache(maxsize=32)
def _output_shapes(config: object, input_shape: tuple[int, ...]) -> Mapping[str, tuple[int, ...]]:
    """Every module's output shape for ``input_shape``, from a forward pass on the meta device.

    The meta model is built here (not the caller's), so no lock is needed and no memory is used.
    """
    from resviz.models.resnet import ResNet

    with torch.device("meta"):
        model = ResNet(config).eval()  # type: ignore[arg-type]
        shapes: dict[str, tuple[int, ...]] = {}
        with ExitStack() as stack:
            for name, module in model.named_modules():
                if name:

                    def hook(_m: nn.Module, _i: object, out: Tensor, name: str = name) -> None:
                        shapes[name] = tuple(out.shape)

                    stack.callback(module.register_forward_hook(hook).remove)
            model(torch.empty(input_shape))
    return MappingProxyType(shapes)


def estimate_bytes(model: nn.Module, names: Iterable[str], input_shape: Sequence[int]) -> int | None:
    """Bytes that capturing ``names`` for an input of ``input_shape`` ``(N, C, H, W)`` will hold.

    Returns None for models that are not a :class:`resviz.models.resnet.ResNet` (no config to build
    a shape-only copy from). Taps never called (the shortcut of a plain block) count zero.
    """
    config = getattr(model, "config", None)
    if config is None:
        return None
    shapes = _output_shapes(config, tuple(int(s) for s in input_shape))
    return sum(4 * int(np.prod(shapes[n])) for n in names if n in shapes)


def capture_activations(
    model: nn.Module,
    x: Tensor,
    layers: Iterable[str] = (),
    *,
    blocks: Iterable[str] = (),
    max_bytes: int | None = LARGE_BYTES,
) -> Activations:
    """One forward pass that keeps the outputs of ``layers`` and the three signals of ``blocks``.

    Args:
        model: the network; shared models are fine (lock held, modes restored, hooks removed).
        x: input batch ``(N, C, H, W)``, normalized; moved to the model's device.
        layers: dotted module names, e.g. ``"layer2"``, ``"layer2.1.conv1"``.
        blocks: residual block names, e.g. ``"layer2.1"``: adds F(x), shortcut and output.
        max_bytes: refuse (before running anything) a capture estimated to hold more; None: no limit.

    Returns:
        :class:`Activations` with float32 CPU arrays ``(N, C, H, W)`` keyed by name.

    Raises:
        LayerNotFoundError: a name the model does not have (with close matches).
        LayerNotUsedError: a name in ``layers`` that the forward pass never runs (the shortcut tap
            of a plain block). A block's missing shortcut is not an error: it reads as None.
        CaptureTooLargeError: the estimate is over ``max_bytes``.
    """
    layers = tuple(layers)
    blocks = tuple(blocks)
    names = capture_names(layers, blocks)
    resolve_layers(model, names)  # fail on a bad name before any work
    if max_bytes is not None:
        need = estimate_bytes(model, names, tuple(x.shape))
        if need is not None and need > max_bytes:
            raise CaptureTooLargeError(
                f"Capturing {len(names)} layer(s) for {x.shape[0]} image(s) would hold about "
                f"{need / 2**20:,.0f} MB (limit {max_bytes / 2**20:,.0f} MB); ask for fewer layers or images."
            )
    device = _device_of(model)
    with (
        preserve_model_state(model),
        oom_guard("Capturing activations"),
        torch.no_grad(),
        capture_outputs(model, names, to_cpu=True) as acts,
    ):
        model(x.to(device))
        captured = dict(acts)
    missing = [n for n in layers if n not in captured]
    if missing:
        raise LayerNotUsedError(
            f"Layer {missing[0]!r} is not used by this model's forward pass "
            "(a plain block has no shortcut, for example); choose another layer."
        )
    arrays: dict[str, np.ndarray] = {}
    seen: dict[int, np.ndarray] = {}  # a stage and its last block return the same tensor: one copy
    for name in names:
        t = captured.get(name)
        if t is None:
            continue
        key = id(t)
        if key not in seen:
            seen[key] = _readonly(np.ascontiguousarray(t.float().numpy()))
        arrays[name] = seen[key]
    return Activations(MappingProxyType(arrays), blocks)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# --------------------------------------------------------------------------- statistics along depth


@dataclass(frozen=True)
class DepthStats:
    """Per-block statistics along the depth, each array of shape ``(B,)`` for B blocks.

    Attributes:
        blocks: block names in forward order.
        mean, std: of the block output over batch, channels and positions.
        zero_fraction: fraction of output values <= 0, i.e. zero after ReLU (for pre-activation
            blocks, whose output is not rectified, what the next ReLU will zero).
        dead_channels: fraction of channels that are <= 0 at every position of every image.
        branch_ratio: ``||F(x)|| / ||x||`` per image (x: the block input), averaged over the batch.
        plain: the network has no shortcuts.
    """

    blocks: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    zero_fraction: np.ndarray
    dead_channels: np.ndarray
    branch_ratio: np.ndarray
    plain: bool = False
    label: str = field(default="")

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean,
            "std": self.std,
            "zero_fraction": self.zero_fraction,
            "dead_channels": self.dead_channels,
            "branch_ratio": self.branch_ratio,
        }


def _norms(t: Tensor) -> Tensor:
    return t.detach().float().flatten(1).norm(dim=1)  # (N,)


def depth_statistics(model: nn.Module, x: Tensor, *, label: str = "") -> DepthStats:
    """Statistics of every residual block's output and branch, for the batch ``x`` ``(N, C, H, W)``.

    Each block is reduced to scalars inside its hook and its tensors are dropped, so memory stays
    that of a plain forward pass even for ResNet-1202.
    """
    blocks = list(model.block_names())  # type: ignore[operator]
    modules = resolve_layers(model, blocks + [f"{b}.branch_out" for b in blocks])
    acc: dict[str, dict[str, Tensor]] = {b: {} for b in blocks}

    def on_input(name: str):
        def hook(_m: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            acc[name]["in_norm"] = _norms(inputs[0])

        return hook

    def on_output(name: str):
        def hook(_m: nn.Module, _i: object, out: Tensor) -> None:
            o = out.detach().float()
            off = o <= 0
            acc[name]["mean"] = o.mean()
            acc[name]["std"] = o.std()
            acc[name]["zero"] = off.float().mean()
            acc[name]["dead"] = off.all(dim=0).flatten(1).all(dim=1).float().mean()

        return hook

    def on_branch(name: str):
        def hook(_m: nn.Module, _i: object, out: Tensor) -> None:
            acc[name]["branch_norm"] = _norms(out)

        return hook

    device = _device_of(model)
    with (
        preserve_model_state(model),
        oom_guard("The depth statistics"),
        torch.no_grad(),
        ExitStack() as stack,
    ):
        for b in blocks:
            stack.callback(modules[b].register_forward_pre_hook(on_input(b)).remove)
            stack.callback(modules[b].register_forward_hook(on_output(b)).remove)
            stack.callback(modules[f"{b}.branch_out"].register_forward_hook(on_branch(b)).remove)
        model(x.to(device))

    def column(key: str) -> np.ndarray:
        return _readonly(torch.stack([acc[b][key] for b in blocks]).cpu().double().numpy())

    ratios = torch.stack(
        [(acc[b]["branch_norm"] / acc[b]["in_norm"].clamp_min(1e-12)).mean() for b in blocks]
    )
    config = getattr(model, "config", None)
    return DepthStats(
        blocks=tuple(blocks),
        mean=column("mean"),
        std=column("std"),
        zero_fraction=column("zero"),
        dead_channels=column("dead"),
        branch_ratio=_readonly(ratios.cpu().double().numpy()),
        plain=bool(config is not None and not config.skip),
        label=label,
    )


def twin_statistics(model: nn.Module, x: Tensor) -> tuple[DepthStats, DepthStats]:
    """Depth statistics of ``model`` and of its twin (shortcuts flipped, every shared weight equal).

    The twin is a fresh copy (:func:`resviz.models.make_twin`), so the shared model is only read.

    Returns:
        ``(residual, plain)``, whichever of the two ``model`` is.
    """
    from resviz.models import make_twin

    with model_lock(model):  # state_dict() must not interleave with another session's analysis
        twin = make_twin(model).eval()  # type: ignore[arg-type]
    ours = depth_statistics(model, x)
    theirs = depth_statistics(twin, x)
    return (theirs, ours) if ours.plain else (ours, theirs)


# --------------------------------------------------------------------------- channel choice


def channel_activity(maps: np.ndarray) -> np.ndarray:
    """Mean activation per channel, ``(C,)``, of ``(C, H, W)`` or ``(N, C, H, W)`` maps."""
    axes = (1, 2) if maps.ndim == 3 else (0, 2, 3)
    return maps.mean(axis=axes)


def top_channels(maps: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` most active channels (highest mean activation), most active first."""
    activity = channel_activity(maps)
    k = max(1, min(int(k), activity.shape[0]))
    idx = np.argpartition(-activity, k - 1)[:k]
    return idx[np.argsort(-activity[idx], kind="stable")]


def channel_range(num_channels: int, start: int, stop: int) -> np.ndarray:
    """Channels ``start .. stop-1`` clipped to ``[0, num_channels)``; at least one channel."""
    start = max(0, min(int(start), num_channels - 1))
    stop = max(start + 1, min(int(stop), num_channels))
    return np.arange(start, stop)
