"""A residual network and its plain twin, built from one seed: the pair every gradient analysis compares.

The twins (He et al. 2015, https://arxiv.org/abs/1512.03385) have the same layers and, wherever
their layers correspond, the same weights (:func:`resviz.models.make_twin`); the shortcut is the
only difference between them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

from resviz.device import resolve_device
from resviz.errors import ConfigError, ResvizError
from resviz.models import cifar_config, create_model, get_spec, make_twin
from resviz.models.config import INITS, ResNetConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from resviz.models.resnet import ResNet

CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS: tuple[int, ...] = (18, 34)


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


def build_twins(settings: TwinSettings, device: str | torch.device = "cpu") -> tuple[ResNet, ResNet]:
    """The residual network and its plain twin, identical wherever their layers correspond.

    Returns:
        ``(residual, plain)``, in train mode, on ``device``.
    """
    residual = create_model(settings.config(), seed=settings.seed)
    plain = make_twin(residual)
    dev = resolve_device(device)
    return residual.to(dev).train(), plain.to(dev).train()


def twin_names(config: ResNetConfig) -> tuple[str, str]:
    """``("resnetN", "plainN")`` for a twin pair of depth N."""
    return f"resnet{config.depth}", f"plain{config.depth}"


def model_name(model: ResNet) -> str:
    """``resnetN`` or ``plainN``: what a model of a twin pair is called in charts and tables."""
    residual, plain = twin_names(model.config)
    return residual if model.config.skip else plain


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


def settings_dict(obj: DataclassInstance) -> dict[str, object]:
    """Plain-JSON form of a settings dataclass (:class:`TwinSettings`, a batch's settings)."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
