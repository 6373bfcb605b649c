"""``python -m resviz models``: list the registered variants."""

from __future__ import annotations

import argparse
import json

from resviz.models import list_models

NAME = "models"
HELP = "List the model variants (residual and plain twins)."
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", choices=["imagenet", "cifar", "tiny"], help="only this family")
    parser.add_argument(
        "--plain",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only plain twins (--plain) or only residual nets (--no-plain)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    specs = list_models(args.family, plain=args.plain)
    if args.json:
        rows = [
            {
                "name": s.name,
                "family": s.family,
                "plain": s.plain,
                "twin": s.twin,
                "depth": s.config.depth,
                "pretrained": s.pretrained_available,
                "description": s.description,
                "config": s.config.to_dict(),
            }
            for s in specs
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(s.name) for s in specs)
    for s in specs:
        flag = "pretrained" if s.pretrained_available else ""
        print(f"{s.name:<{width}}  {s.family:<8}  {s.config.depth:>5} layers  {flag:<10}  {s.description}")
    return 0
