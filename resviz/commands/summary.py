"""``python -m resviz summary NAME``: per-layer and per-stage table of a variant."""

from __future__ import annotations

import argparse
import json

from resviz.commands import _bounds
from resviz.models import get_spec, twin_name

NAME = "summary"
HELP = "Print a variant's layers and stages: output shapes, parameters, multiply-accumulates."
ORDER = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a variant from `python -m resviz models`, e.g. resnet50")
    parser.add_argument("--plain", action="store_true", help="summarize the plain twin instead")
    parser.add_argument(
        "--input-size",
        type=_bounds.count("--input-size", 8, _bounds.MAX_SIDE),
        default=None,
        metavar="N",
        help="input height = width (default: 224 for ImageNet nets, 32 for CIFAR)",
    )
    parser.add_argument("--layers", action="store_true", help="also print every layer")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.summary import summarize
    from resviz.errors import ConfigError

    name = twin_name(args.name) if args.plain else args.name
    spec = get_spec(name)
    size = args.input_size if args.input_size is not None else (224 if spec.config.stem == "imagenet" else 32)
    if size < 8 or size > 4096:
        raise ConfigError(f"--input-size must be between 8 and 4096 pixels, not {size}.")
    s = summarize(name, size)
    if args.json:
        print(
            json.dumps(
                {
                    "model": s.label,
                    "input_shape": list(s.input_shape),
                    "depth": s.depth,
                    "params": s.params,
                    "macs": s.macs,
                    "shortcut_adds": s.adds,
                    "stages": s.stage_records(),
                    "layers": s.layer_records(),
                },
                indent=2,
            )
        )
        return 0
    print(f"{s.label}: {spec.description}")
    print(
        f"input {'x'.join(map(str, s.input_shape))} | depth {s.depth} | params {s.params:,} | "
        f"MACs {s.macs / 1e9:.3f} G | shortcut additions {s.adds:,}"
    )
    if args.layers:
        print()
        _table(s.layer_records(), ["name", "type", "output_shape", "params", "macs", "adds"])
    print()
    _table(s.stage_records(), ["stage", "output_shape", "blocks", "params", "macs", "adds"])
    return 0


def _table(rows: list[dict], columns: list[str]) -> None:
    cells = [[f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) if v[:1].isdigit() else v.ljust(w) for v, w in zip(row, widths)))
