"""Feature maps: what each layer of a ResNet computes, and what the skip adds at each block.

Two analyses, both safe on a model shared by every browser session (each holds the model's lock,
runs in eval mode and leaves modes and BatchNorm statistics as they were; hooks go on exit):

* :func:`capture_activations` keeps the outputs of the layers asked for (and, for each residual
  block asked for, its three signals: F(x), the shortcut and the sum) as CPU numpy arrays. How much
  memory that takes is known before the forward pass (:func:`estimate_bytes`, from a shape-only
  pass on the ``meta`` device); a request over ``max_bytes`` is refused with the number.
* :func:`layer_options` lists the layers a person can pick, in forward order, and which block's
  signals each one shows.
* :func:`depth_statistics` reduces every block's signals to a few numbers inside the hooks, so its
  memory does not grow with depth: mean, standard deviation, the fraction of zeros after ReLU,
  the fraction of dead channels, and ``||F(x)|| / ||x||``, how much each block changes its input.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from resviz.device import model_device, oom_guard
from resviz.errors import LayerNotUsedError, ResvizError
from resviz.hooks import (
    block_taps,
    capture_outputs,
    forward_hooks,
    model_lock,
    preserve_model_state,
    resolve_layers,
)

if TYPE_CHECKING:
    from resviz.models.resnet import ResNet

LARGE_BYTES = 512 * 2**20  # requests above this are refused unless the caller raises the limit


class CaptureTooLargeError(ResvizError):
    """A capture that would hold more memory than the caller allowed."""


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

    def to_npz(
        self,
        layer: str,
        channels: Sequence[int],
        *,
        image: int = 0,
        block: str | None = None,
        input_view: np.ndarray | None = None,
    ) -> bytes:
        """Some channels of one layer for one image (and of a block's signals) as a ``.npz`` file.

        Args:
            layer: a captured name; its ``(C, H, W)`` maps of ``image`` are saved as ``maps``
                ``(K, H, W)`` for the K ``channels``, which are saved too.
            channels: channel indices, in the order to save them.
            image: which image of the batch.
            block: a captured block whose ``branch``, ``output`` and (where it has one)
                ``shortcut`` are saved for the same channels.
            input_view: the image as the network saw it, saved as ``input_view``.

        Returns:
            The bytes of an uncompressed ``.npz`` (``np.load`` reads it back).
        """
        if layer not in self.maps:
            raise ResvizError(f"Layer {layer!r} was not captured; captured: {', '.join(self.maps)}.")
        idx = np.asarray(channels)
        arrays = {"maps": self.maps[layer][image][idx], "channels": idx}
        if input_view is not None:
            arrays["input_view"] = input_view
        if block is not None:
            bm = self.block(block)
            arrays |= {"branch": bm.branch[image][idx], "output": bm.output[image][idx]}
            if bm.shortcut is not None:
                arrays["shortcut"] = bm.shortcut[image][idx]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()


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

        def record(name: str):
            def hook(_m: nn.Module, _i: object, out: Tensor) -> None:
                shapes[name] = tuple(out.shape)

            return hook

        with forward_hooks(model, {name: record(name) for name, _ in model.named_modules() if name}):
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
    device = model_device(model)
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
        raise LayerNotUsedError.for_layer(missing[0])
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


# --------------------------------------------------------------------------- layer choice

STEM = "conv1"  # the stem's convolution: the first layer a person can look at


@dataclass(frozen=True)
class LayerOptions:
    """The layers a person can pick in a ResNet, in forward order, and what each one shows.

    Attributes:
        names: the stem, then each stage followed by its blocks:
            ``("conv1", "layer1", "layer1.0", "layer1.1", "layer2", ...)``.
        stem: the stem's layer (``"conv1"``).
        stages: stage names, ``("layer1", ...)``.
        blocks: every block's dotted name in forward order.
        block_of: option -> the residual block whose F(x), shortcut and output it shows: a block
            its own, a stage its last block (whose output the stage's output is); not the stem.
    """

    names: tuple[str, ...]
    stem: str
    stages: tuple[str, ...]
    blocks: tuple[str, ...]
    block_of: Mapping[str, str]

    @property
    def default(self) -> str:
        """The first block: the first place where a shortcut can be seen."""
        return self.blocks[0]

    @property
    def layers(self) -> tuple[str, ...]:
        """The options that are not blocks (stem and stages), to capture next to ``blocks``."""
        return (self.stem, *self.stages)

    def label(self, name: str) -> str:
        """``"conv1 (stem)"``, ``"layer2 (stage output)"``, ``"layer2.0 (residual block)"``."""
        if name == self.stem:
            return f"{name} (stem)"
        return f"{name} (stage output)" if "." not in name else f"{name} (residual block)"


def layer_options(model: ResNet) -> LayerOptions:
    """The layers of ``model`` worth picking, from its ``feature_info`` (see :class:`LayerOptions`)."""
    info = model.feature_info
    block_of: dict[str, str] = {}
    names = [STEM]
    for stage in info:
        block_of[stage.name] = stage.blocks[-1]
        block_of |= {b: b for b in stage.blocks}
        names += [stage.name, *stage.blocks]
    return LayerOptions(
        names=tuple(names),
        stem=STEM,
        stages=tuple(s.name for s in info),
        blocks=tuple(b for s in info for b in s.blocks),
        block_of=MappingProxyType(block_of),
    )


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


def depth_statistics(model: ResNet, x: Tensor, *, label: str = "") -> DepthStats:
    """Statistics of every residual block's output and branch, for the batch ``x`` ``(N, C, H, W)``.

    Each block is reduced to scalars inside its hook and its tensors are dropped, so memory stays
    that of a plain forward pass even for ResNet-1202.
    """
    blocks = [name for name, _ in model.named_blocks()]
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

    hooks = [(b, on_output(b)) for b in blocks] + [(f"{b}.branch_out", on_branch(b)) for b in blocks]
    device = model_device(model)
    with (
        preserve_model_state(model),
        oom_guard("The depth statistics"),
        torch.no_grad(),
        forward_hooks(model, hooks, pre={b: on_input(b) for b in blocks}),
    ):
        model(x.to(device))

    def column(key: str) -> np.ndarray:
        return _readonly(torch.stack([acc[b][key] for b in blocks]).cpu().double().numpy())

    ratios = torch.stack(
        [(acc[b]["branch_norm"] / acc[b]["in_norm"].clamp_min(1e-12)).mean() for b in blocks]
    )
    return DepthStats(
        blocks=tuple(blocks),
        mean=column("mean"),
        std=column("std"),
        zero_fraction=column("zero"),
        dead_channels=column("dead"),
        branch_ratio=_readonly(ratios.cpu().double().numpy()),
        plain=not model.config.skip,
        label=label,
    )


def twin_statistics(model: ResNet, x: Tensor, twin: ResNet | None = None) -> tuple[DepthStats, DepthStats]:
    """Depth statistics of ``model`` and of a counterpart, each labelled for a legend.

    Args:
        model: the network (only read).
        x: ``(N, C, H, W)`` normalized images.
        twin: the counterpart: the twin trained beside it (labelled
            :data:`resviz.analysis.pairs.TRAINED_TWIN`); by default a fresh copy of ``model`` with
            its shortcuts flipped and every shared weight equal (:data:`~resviz.analysis.pairs.CUT_TWIN`).

    Returns:
        ``(residual, plain)``, whichever of the two ``model`` is.
    """
    from resviz.analysis.pairs import counterpart_name
    from resviz.models import make_twin

    trained = twin is not None
    if twin is None:
        with model_lock(model):  # state_dict() must not interleave with another session's analysis
            twin = make_twin(model).eval()
    residual = bool(model.config.skip)
    ours = replace(depth_statistics(model, x), label="with shortcuts" if residual else "without shortcuts")
    theirs = replace(depth_statistics(twin, x), label=counterpart_name(residual, trained))
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
