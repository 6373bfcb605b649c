"""Named variants: each is data (a config), never a subclass. Torch-free until a model is built.

Every residual variant has a registered *plain twin* with the same layers and no shortcut at all:
``resnet56`` <-> ``plain56``, ``resnet50`` <-> ``plain50``, ``resnext50_32x4d`` <->
``plain_resnext50_32x4d``. CIFAR depths that are not registered (any ``6n+2``, e.g. ``resnet38``
or ``plain200``) resolve on the fly, so depth sweeps can go where they like.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

from resviz.errors import ConfigError, UnknownModelError
from resviz.models.config import ResNetConfig

if TYPE_CHECKING:
    from resviz.models.resnet import ResNet

Family = Literal["imagenet", "cifar", "tiny"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered variant: its config plus what the app needs to describe and load it."""

    name: str
    config: ResNetConfig
    family: Family
    description: str
    twin: str  # the same network with (or without) shortcuts
    torchvision: str | None = None  # torchvision builder whose weights load into this variant

    @property
    def plain(self) -> bool:
        return not self.config.skip

    @property
    def pretrained_available(self) -> bool:
        return self.torchvision is not None and not self.plain


_REGISTRY: dict[str, ModelSpec] = {}

IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)


def twin_name(name: str) -> str:
    """``resnet56`` -> ``plain56``; ``wide_resnet50_2`` -> ``plain_wide_resnet50_2``; and back."""
    if m := re.fullmatch(r"resnet(\d+)", name):
        return f"plain{m.group(1)}"
    if m := re.fullmatch(r"plain(\d+)", name):
        return f"resnet{m.group(1)}"
    if name.startswith("plain_"):
        return name.removeprefix("plain_")
    return f"plain_{name}"


def register(
    name: str,
    config: ResNetConfig,
    family: Family,
    description: str,
    torchvision: str | None = None,
) -> None:
    """Register ``name`` and its plain twin."""
    plain = twin_name(name)
    for n in (name, plain):
        if n in _REGISTRY:
            raise ValueError(f"{n} is registered twice")
    _REGISTRY[name] = ModelSpec(name, config, family, description, plain, torchvision)
    _REGISTRY[plain] = ModelSpec(
        plain,
        config.replace(skip=False),
        family,
        f"{description}, without shortcuts (plain twin)",
        name,
        torchvision,
    )


def _register_defaults() -> None:
    imagenet = {
        "resnet18": ("basic", (2, 2, 2, 2), {}),
        "resnet34": ("basic", (3, 4, 6, 3), {}),
        "resnet50": ("bottleneck", (3, 4, 6, 3), {}),
        "resnet101": ("bottleneck", (3, 4, 23, 3), {}),
        "resnet152": ("bottleneck", (3, 8, 36, 3), {}),
        "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), {"width_per_group": 128}),
        "wide_resnet101_2": ("bottleneck", (3, 4, 23, 3), {"width_per_group": 128}),
        "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), {"groups": 32, "width_per_group": 4}),
        "resnext101_32x8d": ("bottleneck", (3, 4, 23, 3), {"groups": 32, "width_per_group": 8}),
        "resnext101_64x4d": ("bottleneck", (3, 4, 23, 3), {"groups": 64, "width_per_group": 4}),
    }
    for name, (block, layers, extra) in imagenet.items():
        cfg = ResNetConfig(block=block, layers=layers, widths=IMAGENET_WIDTHS, **extra)
        label = name.replace("_", " ").replace("resnet", "ResNet-").replace("resnext", "ResNeXt-")
        register(name, cfg, "imagenet", f"{label} (ImageNet, {cfg.depth} layers)", torchvision=name)
        pre = cfg.replace(preact=True)
        register(f"preact_{name}", pre, "imagenet", f"pre-activation {label} (He et al. 2016)")

    for depth in (20, 32, 44, 56, 110, 1202):
        register(
            f"resnet{depth}",
            cifar_config(depth),
            "cifar",
            f"ResNet-{depth} for CIFAR (He et al. 2015, section 4.2; option A shortcuts)",
        )
        register(
            f"preact_resnet{depth}",
            cifar_config(depth, preact=True),
            "cifar",
            f"pre-activation ResNet-{depth} for CIFAR (He et al. 2016)",
        )
    for depth in (164, 1001):  # the bottleneck CIFAR nets of "Identity Mappings", 9n+2 layers
        n = (depth - 2) // 9
        cfg = ResNetConfig(
            block="bottleneck",
            layers=(n, n, n),
            widths=CIFAR_WIDTHS,
            stem="cifar",
            stem_width=16,
            num_classes=10,
            shortcut="B",
            preact=True,
        )
        register(f"preact_resnet{depth}", cfg, "cifar", f"pre-activation bottleneck ResNet-{depth} for CIFAR")

    # Tiny variants: test fixtures and fast defaults. One block a stage, a few channels.
    register(
        "resnet8",
        cifar_config(8),
        "tiny",
        "ResNet-8: the smallest CIFAR ResNet (one block a stage)",
    )
    register(
        "resnet_tiny",
        ResNetConfig(block="basic", layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=8),
        "tiny",
        "tiny ImageNet-style ResNet (basic blocks, 8-64 channels)",
    )
    register(
        "resnet_tiny_bottleneck",
        ResNetConfig(block="bottleneck", layers=(1, 1, 1, 1), widths=(4, 8, 16, 32), stem_width=8),
        "tiny",
        "tiny ImageNet-style ResNet (bottleneck blocks, 16-128 channels)",
    )
    register(
        "resnext_tiny",
        ResNetConfig(
            block="bottleneck",
            layers=(1, 1, 1, 1),
            widths=(8, 16, 32, 64),
            stem_width=8,
            groups=4,
            width_per_group=16,
        ),
        "tiny",
        "tiny ResNeXt (4 groups)",
    )
    register(
        "preact_resnet_tiny",
        ResNetConfig(block="basic", layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=8, preact=True),
        "tiny",
        "tiny pre-activation ResNet",
    )


def cifar_config(depth: int, **knobs: object) -> ResNetConfig:
    """The CIFAR ResNet of depth ``6n+2``: three stages of ``n`` basic blocks, 16/32/64 channels."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"A CIFAR ResNet has 6n+2 layers (8, 14, 20, 26, 32, ...); {depth} is not.")
    n = (depth - 2) // 6
    base = ResNetConfig(
        block="basic",
        layers=(n, n, n),
        widths=CIFAR_WIDTHS,
        stem="cifar",
        stem_width=16,
        num_classes=10,
        shortcut="A",
    )
    return base.replace(**knobs) if knobs else base


def list_models(family: Family | None = None, *, plain: bool | None = None) -> list[ModelSpec]:
    """Registered variants, optionally filtered by family and by residual/plain."""
    return [
        s
        for s in _REGISTRY.values()
        if (family is None or s.family == family) and (plain is None or s.plain == plain)
    ]


def model_names() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered (or on-the-fly CIFAR ``resnetN``/``plainN``) variant."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if m := re.fullmatch(r"(resnet|plain)(\d+)", name):
        depth = int(m.group(2))
        if depth >= 8 and (depth - 2) % 6 == 0:
            skip = m.group(1) == "resnet"
            return ModelSpec(
                name,
                cifar_config(depth, skip=skip),
                "cifar",
                f"{'ResNet' if skip else 'plain net'}-{depth} for CIFAR (custom depth)",
                twin_name(name),
            )
    close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    base = ", ".join(s.name for s in _REGISTRY.values() if not s.plain and not s.name.startswith("preact_"))
    raise UnknownModelError(
        f"Unknown model {name!r}: {hint}choose one of {base} (preact_NAME for pre-activation, "
        "plainN or plain_NAME for a plain twin; `python -m resviz models` lists all)."
    )


def get_config(name: str, **knobs: object) -> ResNetConfig:
    """The config of ``name`` with knobs changed, e.g. ``get_config("resnet56", batchnorm=False)``."""
    cfg = get_spec(name).config
    if not knobs:
        return cfg
    valid = {f.name for f in fields(ResNetConfig)}
    unknown = sorted(set(knobs) - valid)
    if unknown:
        raise ConfigError(f"Unknown knob(s) {unknown}; valid knobs are {sorted(valid)}.")
    return cfg.replace(**knobs)


def create_model(name: str | ResNetConfig, *, seed: int | None = None, **knobs: object) -> ResNet:
    """Build a registered variant (random weights), e.g. ``create_model("resnet20", num_classes=4)``.

    Args:
        name: a registered name (see :func:`model_names`) or a :class:`ResNetConfig`.
        seed: seeds the initialization, so two calls give identical weights.
        **knobs: any :class:`ResNetConfig` field to override.
    """
    from resviz.models.resnet import ResNet

    cfg = name.replace(**knobs) if isinstance(name, ResNetConfig) else get_config(name, **knobs)
    if seed is None:
        return ResNet(cfg)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet(cfg)


def make_twin(model: ResNet) -> ResNet:
    """The same network with shortcuts flipped (residual <-> plain), sharing every parameter value
    the two have in common, so that the shortcut is the only difference between them."""
    from resviz.device import model_device
    from resviz.models.resnet import ResNet

    twin = ResNet(model.config.replace(skip=not model.config.skip, no_skip_blocks=frozenset()))
    ours = model.state_dict()
    theirs = twin.state_dict()
    shared = {k: v for k, v in ours.items() if k in theirs and theirs[k].shape == v.shape}
    twin.load_state_dict(shared, strict=False)
    return twin.to(model_device(model))


_register_defaults()
