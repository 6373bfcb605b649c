"""The block-by-block layout of a config: channels, strides and the kind of each shortcut.

Pure Python (no torch), so the app can draw a network before torch is loaded. It mirrors
:func:`resviz.models.resnet.make_shortcut`; a test checks the two agree for every variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from resviz.models.config import ResNetConfig

ShortcutKind = Literal["identity", "projection", "padding", "none"]


@dataclass(frozen=True)
class BlockInfo:
    name: str  # "layer2.0"
    stage: str  # "layer2"
    in_channels: int
    out_channels: int
    stride: int
    shortcut: ShortcutKind


def block_layout(config: ResNetConfig) -> list[BlockInfo]:
    """One :class:`BlockInfo` per residual block, in forward order."""
    blocks = []
    in_ch = config.stem_width
    for s, (n, width) in enumerate(zip(config.layers, config.widths)):
        out_ch = width * config.expansion
        for b in range(n):
            name = f"layer{s + 1}.{b}"
            stride = 2 if (s > 0 and b == 0) else 1
            changes = stride != 1 or in_ch != out_ch
            kind: ShortcutKind
            if not config.block_has_skip(name):
                kind = "none"
            elif config.shortcut == "C" or (config.shortcut == "B" and changes):
                kind = "projection"
            elif config.shortcut == "A" and changes:
                kind = "padding"
            else:
                kind = "identity"
            blocks.append(BlockInfo(name, f"layer{s + 1}", in_ch, out_ch, stride, kind))
            in_ch = out_ch
    return blocks
