"""The one description of a ResNet: a frozen config, free of torch so the app can list models fast.

Every variant in the zoo is a :class:`ResNetConfig`; :class:`resviz.models.resnet.ResNet` builds
any of them. The knobs are the ones that matter when exploring skip connections: the shortcut on or
off (for the whole network or single blocks), its kind (option A/B/C of He et al. 2015, section 3.3),
BatchNorm, pre-activation (He et al. 2016), zero-init of each branch's last BN (Goyal et al. 2017),
SkipInit-style branch scaling (De & Smith 2020) and the initialization scheme.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from resviz.errors import ConfigError

BlockKind = Literal["basic", "bottleneck"]
Stem = Literal["imagenet", "cifar"]
Shortcut = Literal["A", "B", "C"]
Init = Literal["kaiming", "xavier", "default"]

BLOCK_KINDS: tuple[str, ...] = ("basic", "bottleneck")
STEMS: tuple[str, ...] = ("imagenet", "cifar")
SHORTCUTS: dict[str, str] = {
    "A": "identity; zero-padded, strided identity where the shape changes (no parameters)",
    "B": "identity; 1x1 projection where the shape changes",
    "C": "1x1 projection on every block",
}
INITS: tuple[str, ...] = ("kaiming", "xavier", "default")


# Hard caps, checked before anything is built: a checkpoint or run.json declaring a million classes
# (an 88-byte file can) would otherwise make the server allocate gigabytes. Each is well above any
# real network: ImageNet-21k has 21,843 classes, the paper's deepest net (ResNet-1202) 600 blocks.
MAX_CLASSES = 25_000
MAX_IN_CHANNELS = 16  # images have 1, 3 or 4 channels
MAX_BLOCKS = 1_000  # summed over the stages
MAX_WIDTH = 8_192  # a stage's or the stem's width, a group count, a group's width


@dataclass(frozen=True)
class StageInfo:
    """One stage of a ResNet, as timm's ``feature_info`` describes it.

    Lives here, free of torch, so that a config can answer before any model is built; a
    :class:`resviz.models.resnet.ResNet` hands out the same tuple as ``model.feature_info``.
    """

    name: str  # "layer1": the stage's module name
    channels: int  # output channels of the stage
    reduction: int  # total stride at the stage's output relative to the input (4 = H/4 x W/4)
    blocks: tuple[str, ...]  # dotted block names in forward order: "layer1.0", "layer1.1", ...


@dataclass(frozen=True)
class ResNetConfig:
    """Everything needed to build one ResNet; ``dataclasses.replace`` makes a variant of it."""

    block: BlockKind = "basic"  # residual branch: two 3x3 convs, or 1x1-3x3-1x1 (expansion 4)
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage; a stage after the first halves H and W
    widths: tuple[int, ...] = (64, 128, 256, 512)  # branch width per stage (before expansion)
    stem: Stem = "imagenet"  # 7x7/2 conv + 3x3/2 max-pool, or one 3x3 conv (CIFAR, section 4.2)
    stem_width: int = 64  # channels out of the stem
    num_classes: int = 1000
    in_channels: int = 3
    skip: bool = True  # False gives the plain twin: no identity and no projection shortcut anywhere
    no_skip_blocks: frozenset[str] = field(default_factory=frozenset)  # e.g. {"layer3.1"}: shortcut cut
    shortcut: Shortcut = "B"
    preact: bool = False  # BN-ReLU-conv ordering of "Identity Mappings in Deep Residual Networks"
    batchnorm: bool = True  # False puts nn.Identity where each BatchNorm was (names stay free)
    groups: int = 1  # ResNeXt cardinality
    width_per_group: int = 64  # ResNeXt / Wide ResNet bottleneck width (64 = plain ResNet)
    zero_init_residual: bool = (
        False  # last BN of each branch starts at gamma=0: each block starts as identity
    )
    branch_scale: float = 1.0  # F(x) is multiplied by this before the addition (SkipInit/Fixup-style taming)
    init: Init = (
        "kaiming"  # conv init: torchvision's kaiming_normal(fan_out), xavier_normal, or torch's default
    )

    def __post_init__(self) -> None:
        # Lists from JSON or a CLI become tuples so the config stays hashable (a cache key).
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "no_skip_blocks", frozenset(self.no_skip_blocks))
        self.validate()

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def depth(self) -> int:
        """Weighted layers counted as in the paper: stem conv + convs in every branch + the classifier."""
        per_block = 3 if self.block == "bottleneck" else 2
        return 1 + per_block * sum(self.layers) + 1

    @property
    def feature_info(self) -> tuple[StageInfo, ...]:
        """The stages this config builds: name, output channels, total stride and block names."""
        # The ImageNet stem halves H and W twice (7x7/2 conv, 3x3/2 max-pool); the CIFAR stem keeps
        # them. Every stage after the first halves them again in its first block.
        stem = 4 if self.stem == "imagenet" else 1
        return tuple(
            StageInfo(
                name=f"layer{s + 1}",
                channels=width * self.expansion,
                reduction=stem * 2**s,
                blocks=tuple(f"layer{s + 1}.{b}" for b in range(n)),
            )
            for s, (n, width) in enumerate(zip(self.layers, self.widths, strict=True))
        )

    @property
    def block_names(self) -> tuple[str, ...]:
        """Every block's dotted name in forward order (what ``no_skip_blocks`` may name)."""
        return tuple(b for stage in self.feature_info for b in stage.blocks)

    def block_has_skip(self, block_name: str) -> bool:
        return self.skip and block_name not in self.no_skip_blocks

    def replace(self, **changes: object) -> ResNetConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["widths"] = list(self.widths)
        d["no_skip_blocks"] = sorted(self.no_skip_blocks)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ResNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown config field(s) {unknown}; expected some of {sorted(known)}.")
        return cls(**data)  # type: ignore[arg-type]

    def validate(self) -> None:
        if self.block not in BLOCK_KINDS:
            raise ConfigError(f"Block must be one of {list(BLOCK_KINDS)}, not {self.block!r}.")
        if self.stem not in STEMS:
            raise ConfigError(f"Stem must be one of {list(STEMS)}, not {self.stem!r}.")
        if self.shortcut not in SHORTCUTS:
            raise ConfigError(f"Shortcut option must be one of {list(SHORTCUTS)}, not {self.shortcut!r}.")
        if self.init not in INITS:
            raise ConfigError(f"Initialization must be one of {list(INITS)}, not {self.init!r}.")
        if not self.layers or any(n < 1 for n in self.layers):
            raise ConfigError(f"Every stage needs at least one block; got layers={list(self.layers)}.")
        if len(self.widths) != len(self.layers):
            raise ConfigError(
                f"Give one width per stage: {len(self.layers)} stages but {len(self.widths)} widths."
            )
        if any(w < 1 for w in self.widths) or self.stem_width < 1:
            raise ConfigError("Widths must be positive.")
        if self.num_classes < 1 or self.in_channels < 1:
            raise ConfigError("num_classes and in_channels must be positive.")
        if self.num_classes > MAX_CLASSES:
            raise ConfigError(
                f"{self.num_classes} classes is more than resviz builds (at most {MAX_CLASSES})."
            )
        if self.in_channels > MAX_IN_CHANNELS:
            raise ConfigError(
                f"{self.in_channels} input channels is more than resviz builds (at most {MAX_IN_CHANNELS})."
            )
        if sum(self.layers) > MAX_BLOCKS:
            raise ConfigError(f"{sum(self.layers)} blocks is more than resviz builds (at most {MAX_BLOCKS}).")
        if max(*self.widths, self.stem_width, self.groups, self.width_per_group) > MAX_WIDTH:
            raise ConfigError(f"A width or group count over {MAX_WIDTH} is more than resviz builds.")
        if self.groups < 1 or self.width_per_group < 1:
            raise ConfigError("groups and width_per_group must be positive.")
        if self.block == "basic" and (self.groups != 1 or self.width_per_group != 64):
            raise ConfigError(
                "Grouped (ResNeXt) and wide branches need bottleneck blocks; basic blocks take "
                "groups=1 and width_per_group=64."
            )
        if self.block == "bottleneck":
            for w in self.widths:
                mid = int(w * (self.width_per_group / 64.0)) * self.groups
                if mid < 1 or mid % self.groups:
                    raise ConfigError(
                        f"Stage width {w} with groups={self.groups} and width_per_group="
                        f"{self.width_per_group} gives no valid grouped 3x3 conv."
                    )
        unknown = sorted(set(self.no_skip_blocks) - set(self.block_names))
        if unknown:
            raise ConfigError(
                f"No block named {unknown[0]!r}; blocks are named like {self.block_names[0]!r} "
                f"... {self.block_names[-1]!r}."
            )
        if not (self.branch_scale == self.branch_scale) or abs(self.branch_scale) > 1e6:
            raise ConfigError("branch_scale must be a finite number.")
