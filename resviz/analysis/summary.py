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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
    meta_model, label = _meta_copy(model, label)
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    c = in_channels or _input_channels(meta_model)
    recorder = _Recorder(meta_model)
    with forward_hooks(meta_model, recorder.hooks()), _shapes_only(meta_model), torch.no_grad():
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
        depth=weighted_depth(meta_model),
    )


def summarize_torchvision(name: str, input_size: int = 224) -> ModelSummary:
    """Summarize a torchvision classifier (e.g. ``"vgg16"``) built on the meta device."""
    import torchvision

    extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None, **extra)
    return summarize(model, input_size, label=name)


COMPARISON_MODELS = ("alexnet", "vgg16", "googlenet", "mobilenet_v2", "densenet121")


def weighted_depth(model: nn.Module) -> int:
    """Conv and linear layers on the longest path from input to output (the paper's "depth").

    ResNet-50 gives 50 (projection shortcuts are not on the longest path), VGG-16 16, GoogLeNet 22.
    Falls back to counting every conv and linear layer when the model cannot be traced.
    """
    weighted = (nn.Conv2d, nn.Linear)
    try:
        graph = torch.fx.symbolic_trace(model.eval()).graph
    except Exception:  # untraceable control flow: an upper bound is the best we can say
        return sum(isinstance(m, weighted) for m in model.modules())
    modules = dict(model.named_modules())
    depth: dict[torch.fx.Node, int] = {}
    for node in graph.nodes:
        here = int(node.op == "call_module" and isinstance(modules.get(node.target), weighted))
        depth[node] = here + max((depth[n] for n in node.all_input_nodes), default=0)
    return max(depth.values(), default=0)


# --------------------------------------------------------------------------- helpers


def _meta_copy(model: str | ResNetConfig | nn.Module, label: str | None) -> tuple[nn.Module, str]:
    from resviz.models.resnet import ResNet

    if isinstance(model, str):
        config, label = get_spec(model).config, label or model
    elif isinstance(model, ResNetConfig):
        config, label = model, label or "custom ResNet"
    elif isinstance(model, ResNet):
        config, label = model.config, label or type(model).__name__
    else:
        label = label or type(model).__name__
        if all(p.device.type == "meta" for p in model.parameters()):
            return model.eval(), label
        return copy.deepcopy(model).to("meta").eval(), label
    with torch.device("meta"):
        return ResNet(config).eval(), label


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
