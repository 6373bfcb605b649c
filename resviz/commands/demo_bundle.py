"""``python -m resviz demo-bundle``: bundle the demo group that ``make demo-weights`` trained.

    python -m resviz demo-bundle /tmp/demo/seed0 /tmp/demo/seed1 /tmp/demo/seed2

Seed 0's four runs become ``resviz/bundled/runs/demo-shapes-*`` (weights, curves, snapshots); every
seed's figures go to ``resviz/bundled/demo/seeds.json``; then seed 0's slow "Why it works" results
are computed once and stored beside them, so the app shows them at once on a first visit.
"""

from __future__ import annotations

import argparse
import sys

NAME = "demo-bundle"
HELP = "Bundle the demo group trained by `make demo-weights` (seed 0's weights, every seed's curves)."
ORDER = 62


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "seed_dirs", nargs="+", help="one runs folder per seed (`resviz train --preset demo --out`)"
    )
    parser.add_argument("--out", help="the bundle folder (default: resviz/bundled)")
    parser.add_argument("--no-results", action="store_true", help="skip the precomputed slow results")


def run(args: argparse.Namespace) -> int:
    from resviz.demo import BUNDLED, assemble, degradation_checks, load_seeds

    out = args.out or BUNDLED
    seeds_file = assemble(args.seed_dirs, out)
    print(f"wrote {seeds_file}", file=sys.stderr)
    for check in degradation_checks(load_seeds(seeds_file)):
        print(f"seed {check.seed}: {'ok  ' if check.holds else 'FAIL'} {check.claim}: {check.figure}")
    if not args.no_results:
        from resviz.demo_results import precompute

        for path in precompute(out):
            print(f"wrote {path}", file=sys.stderr)
    return 0
