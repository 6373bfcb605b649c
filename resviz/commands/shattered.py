"""``python -m resviz shattered``: lag-1 autocorrelation of the input gradient against depth."""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resviz.analysis.shattered import LinePair, ShatteredSweep

NAME = "shattered"
HELP = "Shattered gradients (Balduzzi et al. 2017): gradient autocorrelation along a line, plain vs residual."
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--depths",
        default="2,10,20,50",
        help="hidden layers of the 1D toy nets, e.g. 2,10,20,50 (with --conv: CIFAR depths 6n+2)",
    )
    parser.add_argument("--conv", action="store_true", help="CIFAR twins on a line between two random images")
    parser.add_argument("--width", type=int, default=200, help="toy nets: units per layer")
    parser.add_argument("--points", type=int, default=256, help="inputs along the line")
    parser.add_argument(
        "--repeats", type=int, default=4, help="toy nets: networks per depth (lag-1 averaged)"
    )
    parser.add_argument("--no-bn", action="store_true", help="toy nets without BatchNorm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trained",
        metavar="RUN",
        help="also measure a saved run (its id, title or folder, or a variant name such as resnet56 for "
        "the newest run of it) and its counterpart, on a line between two of its held-out images",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.shattered import ToySettings, conv_sweep, line_pair, toy_sweep
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    run_model = resolve_run(args.trained) if args.trained else None  # a bad name fails before any work
    if args.conv:
        sweep = conv_sweep(args.depths, points=args.points, seed=args.seed)
    else:
        settings = ToySettings(
            width=args.width,
            points=args.points,
            batchnorm=not args.no_bn,
            repeats=args.repeats,
            seed=args.seed,
        )
        sweep = toy_sweep(args.depths, settings)
    trained = line_pair(run_model, points=args.points, seed=args.seed) if run_model is not None else None
    if args.json:
        print(json.dumps(_doc(sweep, trained), indent=2, allow_nan=False))
    else:
        _print(sweep, trained)
    return 0


def resolve_run(text: str):  # type: ignore[no-untyped-def]
    """A run's folder, id or title (:func:`resviz.runs.find_run`), or a variant name for the newest
    run of that variant, as a :class:`resviz.models.weights.LoadedModel`."""
    from resviz.errors import CheckpointError
    from resviz.models.weights import load_model
    from resviz.runs import find_run, list_runs

    try:
        path = find_run(text).path
    except CheckpointError:
        newest = next((r for r in list_runs() if r.name == text), None)
        if newest is None:
            raise
        path = newest.path
    return load_model("resnet20", path)  # a run brings its own variant


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _doc(sweep: ShatteredSweep, trained: LinePair | None) -> dict[str, object]:
    from resviz.analysis.shattered import sweep_rows

    doc: dict[str, object] = {"setting": sweep.setting, "depths": sweep_rows(sweep)}
    if trained is not None:
        doc["trained"] = {
            "source": trained.source,
            "output": trained.residual.output,
            "lag1": {
                trained.residual.model: _num(trained.residual.lag1),
                trained.plain.model: _num(trained.plain.lag1),
            },
        }
    return doc


def _print(sweep: ShatteredSweep, trained: LinePair | None) -> None:
    print(sweep.setting)
    print(f"{'depth':>5}  {'plain lag-1':>12}  {'residual lag-1':>14}")
    for d, p, r in zip(sweep.depths, sweep.plain_lag1, sweep.residual_lag1):
        print(f"{int(d):>5}  {p:>12.3f}  {r:>14.3f}")
    if trained is not None:
        print(f"\n{trained.source}; d({trained.residual.output})/d(input):")
        for line in (trained.residual, trained.plain):
            print(f"  {line.model}: lag-1 autocorrelation {line.lag1:.3f}")
