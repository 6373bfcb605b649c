"""Model summaries: per-layer output shapes, parameters, multiply-accumulates, and a per-stage roll-up.

The counting runs on a private copy of the architecture on the ``meta`` device: no memory, no
arithmetic, and no hook ever touches a model that other sessions share. MACs of convolutions use
torch's own formula (``torch.utils.flop_counter.conv_flop_count``; one MAC = two FLOPs), so the
figures match torchvision's published ones (ResNet-50: 4.09 G at 224x224). We do not run
``FlopCounterMode`` itself because its module tracker installs *global* module hooks, which would
fire in other threads' forward passes while a summary is running.

Shortcut additions are counted separately (``adds``): they are elementwise, not multiply-accumulates.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import conv_flop_count

from resviz.hooks import forward_hooks
from resviz.models.config import ResNetConfig
from resviz.models.registry import get_spec

STEM = "conv1"  # the paper's name for the stem (Table 1)
HEAD = "head"


@dataclass(frozen=True)
class LayerRow:
    """One leaf module (or a residual addition) in forward order."""

    name: str  # dotted name, e.g. "layer2.0.conv1"; "layer2.0 (+ shortcut)" for an addition
    type: str  # e.g. "Conv2d 3x3/2, 64→128"
    stage: str  # "stem", "layer1"..., or "head"
    output_shape: tuple[int, ...]  # per sample: (C, H, W) or (features,)
    params: int
    macs: int  # multiply-accumulates per sample
    adds: int = 0  # elementwise shortcut additions per sample


@dataclass(frozen=True)
class StageRow:
    """A stage's roll-up: the stem, each ``layerN``, and the head (pool + classifier)."""

    name: str
    output_shape: tuple[int, ...]
    blocks: int
    params: int
    macs: int
    adds: int


@dataclass(frozen=True)
class ModelSummary:
    """A model at one input size; every count is per sample."""

    label: str
    input_shape: tuple[int, ...]  # (C, H, W)
    layers: tuple[LayerRow, ...]
    stages: tuple[StageRow, ...]
    params: int
    macs: int
    adds: int
    depth: int  # weighted (conv/linear) layers on the longest input-to-output path

    def layer_records(self) -> list[dict[str, object]]:
        return [
            {
                "name": r.name,
                "type": r.type,
                "stage": r.stage,
                "output_shape": "x".join(map(str, r.output_shape)),
                "params": r.params,
                "macs": r.macs,
                "adds": r.adds,
            }
            for r in self.layers
        ]

    def stage_records(self) -> list[dict[str, object]]:
        return [
            {
                "stage": s.name,
                "output_shape": "x".join(map(str, s.output_shape)),
                "blocks": s.blocks,
                "params": s.params,
                "macs": s.macs,
                "adds": s.adds,
            }
            for s in self.stages
        ]


class _Recorder:
    """Forward hooks that record one :class:`LayerRow` per leaf call, one per shortcut addition,
    and each top-level stage's output shape, in call order."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.rows: list[LayerRow] = []
        self.stage_shapes: dict[str, tuple[int, ...]] = {}
        self.stage_of = _stage_namer(model)
        self._counted: set[int] = set()  # a module called twice (a shared ReLU) counts its params once

    def hooks(self) -> list[tuple[str, Callable]]:
        """(name, hook) pairs: a module may take several, run in this order."""
        blocks = {n for n, m in self.model.named_modules() if _is_block(m)}
        hooks = []
        for name, mod in self.model.named_modules():
            if not name:
                continue
            if not any(True for _ in mod.children()) and not isinstance(mod, nn.Identity):
                hooks.append((name, self._leaf(name)))
            if name in blocks:
                hooks.append((name, self._block(name)))
            if "." not in name:
                hooks.append((name, self._stage(name)))
        return hooks

    def _leaf(self, name: str) -> Callable:
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            params = 0 if id(mod) in self._counted else sum(p.numel() for p in mod.parameters(recurse=False))
            self._counted.add(id(mod))
            macs = _macs(mod, inputs, output)
            row = LayerRow(name, _describe(mod), self.stage_of(name), tuple(output.shape[1:]), params, macs)
            self.rows.append(row)

        return hook

    def _block(self, name: str) -> Callable:
        def hook(mod: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if getattr(mod, "skip", False):
                shape, stage = tuple(output.shape[1:]), self.stage_of(name)
                row = LayerRow(
                    f"{name} (+ shortcut)", "shortcut addition", stage, shape, 0, 0, output[0].numel()
                )
                self.rows.append(row)

        return hook

    def _stage(self, name: str) -> Callable:
        def hook(_mod: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self.stage_shapes[name] = tuple(output.shape[1:])

        return hook


def summarize(
    model: str | ResNetConfig | nn.Module,
    input_size: int | tuple[int, int] = 224,
    *,
    in_channels: int | None = None,
    label: str | None = None,
) -> ModelSummary:
    """Summarize a registered name, a config, or any image classifier module.

    Args:
        model: ``"resnet50"``, a :class:`ResNetConfig`, or an ``nn.Module`` (never modified: a
            meta-device copy is analysed).
        input_size: H = W, or (H, W).
        in_channels: input channels (default: the config's, else the first conv's, else 3).
        label: name shown in tables (default: the registered name or the class name).
    """
    built, label = _meta_copy(model, label)
    return _summarize(built, label, input_size, in_channels)


def _summarize(
    built: _Built, label: str, input_size: int | tuple[int, int], in_channels: int | None
) -> ModelSummary:
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    meta_model = built.model
    c = in_channels or _input_channels(meta_model)
    recorder = _Recorder(meta_model)
    # The lock: a cached meta model is shared by threads, and the hooks and patches are per pass.
    # With autograd on: the depth is read from the graph of this very pass (no memory on meta).
    hooks = forward_hooks(meta_model, recorder.hooks())
    with built.lock, hooks, _shapes_only(meta_model), torch.enable_grad():
        out = meta_model(torch.empty(1, c, h, w, device="meta"))
    rows = recorder.rows

    # Parameters of modules never called in forward (e.g. auxiliary heads) still count in the total.
    total_params = sum(p.numel() for p in meta_model.parameters())
    stages = _roll_up(rows, recorder.stage_shapes, meta_model, tuple(out.shape[1:]))
    return ModelSummary(
        label=label,
        input_shape=(c, h, w),
        layers=tuple(rows),
        stages=stages,
        params=total_params,
        macs=sum(r.macs for r in rows),
        adds=sum(r.adds for r in rows),
        depth=_graph_depth(out),
    )


def summarize_torchvision(name: str, input_size: int = 224) -> ModelSummary:
    """Summarize a torchvision classifier (e.g. ``"vgg16"``) built on the meta device."""
    return _summarize(_meta_torchvision(name), name, input_size, None)


COMPARISON_MODELS = ("alexnet", "vgg16", "googlenet", "mobilenet_v2", "densenet121")


def published_top1(name: str) -> float | None:
    """torchvision's published ImageNet top-1 (%) of ``name``'s first weights (``IMAGENET1K_V1``,
    each family's original recipe, so the numbers compare), read from the weights' metadata that
    ships inside torchvision: nothing is downloaded. None when torchvision has no such weights."""
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(name)
    except ValueError:
        return None
    member = getattr(weights, "IMAGENET1K_V1", None) or weights.DEFAULT
    metrics = member.meta.get("_metrics", {})
    return next((float(m["acc@1"]) for m in metrics.values() if "acc@1" in m), None)


def weighted_depth(model: nn.Module, input_size: int = 224) -> int:
    """Conv and linear layers on the longest path from input to output (the paper's "depth").

    ResNet-50 gives 50 (projection shortcuts are not on the longest path), VGG-16 16, GoogLeNet 22.
    Read from the autograd graph of one meta-device pass (:func:`_graph_depth`); ``model`` itself
    is not run (a meta copy is, when it is not on the meta device already).
    """
    if any(p.device.type != "meta" for p in model.parameters()):
        model = copy.deepcopy(model).to("meta")
    c = _input_channels(model)
    with _shapes_only(model), torch.enable_grad():
        out = model.eval()(torch.empty(1, c, input_size, input_size, device="meta"))
    return _graph_depth(out)


# Autograd nodes of the weighted layers: every convolution, and a linear layer's matrix product.
_WEIGHTED_NODES = ("ConvolutionBackward", "AddmmBackward", "MmBackward", "LinearBackward")


def _graph_depth(out: torch.Tensor) -> int:
    """Weighted nodes on the longest path through ``out``'s autograd graph.

    Not ``torch.fx``: its tracer patches ``nn.Module.__call__`` for the whole process while it
    runs, so another session's forward pass in that window failed with a NameError.
    """
    depth: dict[object, int] = {}
    order: list[object] = []
    stack, seen = [out.grad_fn], set()
    while stack:  # iterative post-order: a ResNet-1202's graph is deeper than Python's recursion
        node = stack[-1]
        if node is None or node in seen:
            stack.pop()
            if node is not None and node not in depth:
                order.append(node)
                depth[node] = 0
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions if child is not None and child not in seen)
    for node in order:  # children come before parents in post-order
        here = int(type(node).__name__.startswith(_WEIGHTED_NODES))
        below = [depth[c] for c, _ in node.next_functions if c is not None]
        depth[node] = here + max(below, default=0)
    return depth.get(out.grad_fn, 0)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Built:
    """A meta-device model and the lock a summary pass holds on it."""

    model: nn.Module
    lock: threading.Lock


def _built(model: nn.Module) -> _Built:
    return _Built(model, threading.Lock())


# Building a model (even on the meta device) does not depend on the input size and took a third of
# a summary: an input-size change on the Architecture page rebuilt ten models. Each architecture is
# built once per process.
@lru_cache(maxsize=64)
def _meta_resnet(config: ResNetConfig) -> _Built:
    from resviz.models.resnet import ResNet

    with torch.device("meta"):
        return _built(ResNet(config).eval())


@lru_cache(maxsize=16)
def _meta_torchvision(name: str) -> _Built:
    import torchvision

    extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with torch.device("meta"):
        return _built(torchvision.models.get_model(name, weights=None, **extra).eval())


def _meta_copy(model: str | ResNetConfig | nn.Module, label: str | None) -> tuple[_Built, str]:
    from resviz.models.resnet import ResNet

    if isinstance(model, str):
        return _meta_resnet(get_spec(model).config), label or model
    if isinstance(model, ResNetConfig):
        return _meta_resnet(model), label or "custom ResNet"
    if isinstance(model, ResNet):
        return _meta_resnet(model.config), label or type(model).__name__
    label = label or type(model).__name__
    if any(p.device.type != "meta" for p in model.parameters()):
        model = copy.deepcopy(model).to("meta")
    return _built(model.eval()), label


# Leaf modules whose output has their input's shape and which hold no multiply-accumulates.
_SHAPE_KEEPING = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.Dropout, nn.Identity)


@contextmanager
def _shapes_only(model: nn.Module) -> Iterator[None]:
    """Skip the kernels of shape-keeping leaves during the meta-device pass (hooks still fire).

    Meta kernels run in Python (torch/_meta_registrations.py): batch norm and ReLU were three
    quarters of a ResNet-152 summary (4.3 s -> 1.1 s without them, every row identical; the test
    suite compares the counts with torchvision's published figures).
    """
    skipped = [m for m in model.modules() if isinstance(m, _SHAPE_KEEPING)]
    for m in skipped:
        m.forward = _same  # an instance attribute: shadows the class's forward for this pass only
    try:
        yield
    finally:
        for m in skipped:
            del m.forward


def _same(x: torch.Tensor, *_args, **_kwargs) -> torch.Tensor:
    return x


def _input_channels(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    if isinstance(cfg, ResNetConfig):
        return cfg.in_channels
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def _is_block(m: nn.Module) -> bool:
    from resviz.models.resnet import ResidualBlock

    return isinstance(m, ResidualBlock)


def _stage_namer(model: nn.Module):
    """Map a dotted name to its stage: ResNet's layerN, else the top-level child's name."""
    from resviz.models.resnet import ResNet

    if isinstance(model, ResNet):
        stages = {s.name for s in model.feature_info}

        def stage_of(name: str) -> str:
            top = name.split(".")[0]
            if top in stages:
                return top
            if top in ("avgpool", "fc", "final_bn"):
                return HEAD
            return "maxpool" if top == "maxpool" else STEM  # the paper's table: conv1, then the pool

    else:

        def stage_of(name: str) -> str:
            return name.split(".")[0]

    return stage_of


def _macs(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(mod, nn.Conv2d):
        flops = conv_flop_count(list(inputs[0].shape), list(mod.weight.shape), list(output.shape))
        return flops // 2
    if isinstance(mod, nn.Linear):
        return output[0].numel() * mod.in_features
    return 0


def _describe(mod: nn.Module) -> str:
    kind = type(mod).__name__
    if isinstance(mod, nn.Conv2d):
        k = "x".join(map(str, mod.kernel_size))
        s = f"/{mod.stride[0]}" if mod.stride[0] > 1 else ""
        g = f", groups {mod.groups}" if mod.groups > 1 else ""
        return f"{kind} {k}{s}, {mod.in_channels}→{mod.out_channels}{g}"
    if isinstance(mod, nn.Linear):
        return f"{kind} {mod.in_features}→{mod.out_features}"
    if isinstance(mod, nn.BatchNorm2d):
        return f"{kind} {mod.num_features}"
    return kind


def _roll_up(
    rows: list[LayerRow], shapes: dict[str, tuple[int, ...]], model: nn.Module, out_shape: tuple[int, ...]
) -> tuple[StageRow, ...]:
    order: list[str] = []
    for r in rows:
        if r.stage not in order:
            order.append(r.stage)
    stages = []
    for name in order:
        members = [r for r in rows if r.stage == name]
        if name == HEAD:
            shape = out_shape
        elif name in shapes:
            shape = shapes[name]
        else:
            shape = members[-1].output_shape
        child = getattr(model, name, None)
        n_blocks = sum(1 for m in child.modules() if _is_block(m)) if isinstance(child, nn.Module) else 0
        stages.append(
            StageRow(
                name,
                shape,
                n_blocks,
                sum(r.params for r in members),
                sum(r.macs for r in members),
                sum(r.adds for r in members),
            )
        )
    return tuple(stages)
