"""ResNet, its blocks and its plain twin, built from one :class:`ResNetConfig`.

Parameter names follow torchvision (``conv1``, ``bn1``, ``layerN.M.conv1``, ``downsample.0``,
``fc``) so that its ImageNet state dicts load with ``strict=True``. Two parameter-free taps,
``branch_out`` and ``shortcut_out``, make the residual explicit and hookable by name:

    out = relu(branch_out(F(x)) + shortcut_out(x))        # with a shortcut
    out = relu(branch_out(F(x)))                          # plain twin

He et al. 2015, https://arxiv.org/abs/1512.03385; pre-activation: He et al. 2016,
https://arxiv.org/abs/1603.05027.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.errors import ConfigError
from resviz.models.config import ResNetConfig, StageInfo


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def norm(channels: int, enabled: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if enabled else nn.Identity()


class PadShortcut(nn.Module):
    """Option A: a strided identity whose extra channels are zeros; it has no parameters."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ConfigError(
                f"Option A shortcuts can only add channels ({in_planes} -> {out_planes}); use option B."
            )
        self.stride = stride
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


def make_shortcut(in_planes: int, out_planes: int, stride: int, cfg: ResNetConfig) -> nn.Module | None:
    """The shortcut's layers, or None for a plain identity (torchvision's ``downsample``)."""
    changes_shape = stride != 1 or in_planes != out_planes
    if cfg.shortcut == "A":
        return PadShortcut(in_planes, out_planes, stride) if changes_shape else None
    if cfg.shortcut == "B" and not changes_shape:
        return None
    if cfg.preact:
        return nn.Sequential(conv1x1(in_planes, out_planes, stride))
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), norm(out_planes, cfg.batchnorm))


class ResidualBlock(nn.Module):
    """Common forward for every block: ``out = act(branch(x) * scale + shortcut(x))``."""

    expansion = 1
    downsample: nn.Module | None
    last_norm: str  # name of the branch's last BN, zeroed by ``zero_init_residual``
    last_conv: str  # name of the branch's last conv (zeroed instead in pre-activation blocks)

    def __init__(self, in_planes: int, out_planes: int, stride: int, cfg: ResNetConfig, skip: bool):
        super().__init__()
        self.stride = stride
        self.skip = skip
        self.preact = cfg.preact
        self.branch_scale = float(cfg.branch_scale)
        self.relu = nn.ReLU()  # never inplace: hooks must see the values the graph used
        self.downsample = make_shortcut(in_planes, out_planes, stride, cfg) if skip else None
        self.branch_out = nn.Identity()  # tap: F(x), just before the addition
        self.shortcut_out = nn.Identity()  # tap: the shortcut's output (unused in a plain block)

    def branch(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.preact:
            pre = self.relu(self.bn1(x))
            out = self.branch(pre)
            shortcut_in = pre if self.downsample is not None else x  # He et al. 2016, fig. 5
        else:
            out = self.branch(x)
            shortcut_in = x
        if self.branch_scale != 1.0:
            out = out * self.branch_scale
        out = self.branch_out(out)
        if self.skip:
            identity = self.downsample(shortcut_in) if self.downsample is not None else shortcut_in
            out = out + self.shortcut_out(identity)
        return out if self.preact else self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR family)."""

    expansion = 1
    last_norm = "bn2"
    last_conv = "conv2"

    def __init__(self, in_planes: int, planes: int, stride: int, cfg: ResNetConfig, skip: bool):
        super().__init__(in_planes, planes, stride, cfg, skip)
        bn = cfg.batchnorm
        self.conv1 = conv3x3(in_planes, planes, stride)
        # Pre-activation blocks normalise the input (bn1 sees in_planes channels) and end on a conv.
        self.bn1 = norm(in_planes if cfg.preact else planes, bn)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes, bn)

    def branch(self, x: Tensor) -> Tensor:
        if self.preact:  # x is already relu(bn1(input))
            return self.conv2(self.relu(self.bn2(self.conv1(x))))
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (stride and groups here, as torchvision's "ResNet v1.5"), 1x1 expand x4."""

    expansion = 4
    last_norm = "bn3"
    last_conv = "conv3"

    def __init__(self, in_planes: int, planes: int, stride: int, cfg: ResNetConfig, skip: bool):
        super().__init__(in_planes, planes * self.expansion, stride, cfg, skip)
        bn = cfg.batchnorm
        width = int(planes * (cfg.width_per_group / 64.0)) * cfg.groups
        self.conv1 = conv1x1(in_planes, width)
        self.bn1 = norm(in_planes if cfg.preact else width, bn)
        self.conv2 = conv3x3(width, width, stride, cfg.groups)
        self.bn2 = norm(width, bn)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm(width if cfg.preact else planes * self.expansion, bn)

    def branch(self, x: Tensor) -> Tensor:
        if self.preact:
            out = self.relu(self.bn2(self.conv1(x)))
            out = self.relu(self.bn3(self.conv2(out)))
            return self.conv3(out)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


BLOCKS: dict[str, type[ResidualBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A residual network (or its plain twin) built from a :class:`ResNetConfig`.

    Args:
        config: the architecture; ``config.skip=False`` builds the plain twin.

    Attributes:
        feature_info: one :class:`StageInfo` per stage (name, output channels, total stride, block
            names), the one way to ask a model for its stages and blocks; ``named_blocks()`` gives
            the block modules themselves.

    Shape:
        input ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``.
    """

    feature_info: tuple[StageInfo, ...]

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        block = BLOCKS[cfg.block]
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(cfg.in_channels, cfg.stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(cfg.in_channels, cfg.stem_width)
        # A pre-activation CIFAR net starts its first block with BN-ReLU, so its stem is the conv alone.
        self.bn1 = None if (cfg.preact and cfg.stem == "cifar") else norm(cfg.stem_width, cfg.batchnorm)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if cfg.stem == "imagenet" else None

        # The config describes the stages; building from that description keeps the modules' names
        # and feature_info from ever disagreeing.
        self.feature_info = cfg.feature_info
        in_planes = cfg.stem_width
        for s, (stage, width) in enumerate(zip(self.feature_info, cfg.widths, strict=True)):
            blocks = []
            for b, block_name in enumerate(stage.blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(block(in_planes, width, stride, cfg, cfg.block_has_skip(block_name)))
                in_planes = width * block.expansion
            self.add_module(stage.name, nn.Sequential(*blocks))
        self.final_bn = norm(in_planes, cfg.batchnorm) if cfg.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_planes, cfg.num_classes)
        self.num_features = in_planes
        if self.fc.weight.device.type != "meta":  # a shape-only copy has no values to initialise
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the config says (torchvision's scheme for ``init="kaiming"``)."""
        cfg = self.config
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if cfg.init == "kaiming":
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif cfg.init == "xavier":
                    nn.init.xavier_normal_(m.weight)
                else:
                    m.reset_parameters()
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                if cfg.init == "xavier":
                    nn.init.xavier_normal_(m.weight)
                    nn.init.zeros_(m.bias)
                else:
                    m.reset_parameters()
        if cfg.zero_init_residual:
            # Each block starts as the identity (Goyal et al. 2017, https://arxiv.org/abs/1706.02677).
            for _, m in self.named_blocks():
                last = getattr(m, m.last_conv if cfg.preact or not cfg.batchnorm else m.last_norm)
                nn.init.zeros_(last.weight)

    def named_blocks(self) -> list[tuple[str, ResidualBlock]]:
        """``(dotted name, block)`` for every residual block, in forward order."""
        return [(name, self.get_submodule(name)) for s in self.feature_info for name in s.blocks]  # type: ignore[misc]

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and stages: ``(N, C, H, W)`` -> ``(N, num_features, H', W')``."""
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.feature_info:
            x = getattr(self, stage.name)(x)
        if self.final_bn is not None:
            x = self.relu(self.final_bn(x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
