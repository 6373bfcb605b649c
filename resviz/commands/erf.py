"""``python -m resviz erf``: the effective receptive field of a layer's centre unit, plain vs residual."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resviz.analysis.erf import ErfPair, ErfSweep

NAME = "erf"
HELP = "Effective receptive field (Luo et al. 2016) of a layer's centre unit, a model against its twin."
ORDER = 61


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="resnet20", help="a variant from `python -m resviz models`")
    parser.add_argument(
        "--weights",
        default="random",
        help="random, imagenet, a checkpoint path, or a saved run's folder, id or title",
    )
    parser.add_argument("--layer", default="layer1", help="dotted layer name, e.g. layer1 or layer2.0")
    parser.add_argument(
        "--n", type=int, default=32, help="inputs averaged (held-out images of a run, else random)"
    )
    parser.add_argument("--mass", type=float, default=0.95, help="share of the gradient the ERF square holds")
    parser.add_argument(
        "--depths", help="instead: CIFAR twins at initialization at these depths (6n+2), e.g. 8,20,56,110"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.erf import erf_pair, erf_sweep
    from resviz.device import configure_cpu_threads
    from resviz.errors import ConfigError
    from resviz.models.weights import load_model

    configure_cpu_threads()
    if not 0.0 < args.mass <= 1.0:
        raise ConfigError(f"--mass must be in (0, 1], not {args.mass}.")
    if args.depths:
        sweep = erf_sweep(args.depths, n=min(args.n, 16), seed=args.seed)
        _sweep_out(sweep, args.mass, args.json)
        return 0
    loaded = load_model(args.model, _weights(args.weights), seed=args.seed)
    pair = erf_pair(loaded, args.layer, n=args.n, seed=args.seed)
    _pair_out(pair, args.mass, args.json)
    return 0


def _weights(text: str) -> str:
    """A saved run's id or title becomes its folder; anything else is for :func:`load_model`."""
    import os

    from resviz.errors import CheckpointError
    from resviz.runs import find_run

    if text in ("random", "imagenet") or os.path.exists(text):
        return text
    try:
        return str(find_run(text).path)
    except CheckpointError:
        return text  # load_model says the checkpoint file is missing


def _pair_out(pair: ErfPair, mass: float, as_json: bool) -> None:
    maps = (pair.residual, pair.plain)
    if as_json:
        doc = {
            "source": pair.source,
            "layer": pair.residual.layer,
            "mass": mass,
            "theoretical_rf": pair.residual.theoretical,
            "erf": {m.model: m.size(mass) for m in maps},
            "input_size": list(pair.residual.map.shape),
        }
        print(json.dumps(doc, indent=2))
        return
    print(pair.source)
    print(f"layer {pair.residual.layer}: theoretical receptive field {pair.residual.theoretical} px")
    for m in maps:
        print(f"  {m.model}: {mass:.0%} of the gradient within {m.size(mass)} px (input {m.map.shape[0]} px)")


def _sweep_out(sweep: ErfSweep, mass: float, as_json: bool) -> None:
    from resviz.analysis.erf import sweep_rows

    rows = sweep_rows(sweep, mass)
    if as_json:
        print(json.dumps({"setting": sweep.setting, "depths": rows}, indent=2))
        return
    print(sweep.setting)
    print(f"{'depth':>5}  {'theoretical':>11}  {'plain ERF':>9}  {'residual ERF':>12}")
    for r in rows:
        print(f"{r['depth']:>5}  {r['theoretical_rf']:>11}  {r['plain_erf']:>9}  {r['residual_erf']:>12}")
