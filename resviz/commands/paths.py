"""``python -m resviz paths``: path lengths of a ResNet and the gradient each length carries."""

from __future__ import annotations

import argparse
import json
import math

from resviz.commands import _bounds

NAME = "paths"
HELP = (
    "Paths (Veit et al. 2016): path-length distribution and gradient per path length, trained and untrained."
)
ORDER = 61


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a registered residual variant (a run brings its own)")
    parser.add_argument("--weights", default="random", help="random, imagenet, a checkpoint or a run folder")
    parser.add_argument(
        "--samples",
        type=_bounds.count("--samples", 1, _bounds.MAX_DRAWS),
        default=8,
        help="sampled paths per length",
    )
    parser.add_argument(
        "--batch",
        type=_bounds.count("--batch", 1, _bounds.MAX_BATCH),
        default=16,
        help="images in the forward pass",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--coverage", type=float, default=0.9, help="share of the gradient the effective range holds"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.lesion import LesionError
    from resviz.analysis.paths import PathSettings, path_rows, path_study
    from resviz.device import configure_cpu_threads, resolve_device
    from resviz.models.weights import load_model

    configure_cpu_threads()
    if args.samples < 1 or args.batch < 1 or not 0 < args.coverage <= 1:
        raise LesionError("Samples and batch must be 1 or more, and the coverage between 0 and 1.")
    settings = PathSettings(
        samples=args.samples, batch_size=args.batch, seed=args.seed, coverage=args.coverage
    )
    loaded = load_model(args.model, args.weights, device=resolve_device(args.device))
    study = path_study(loaded, settings)
    profiles = [p for p in (study.untrained, study.trained) if p is not None]
    if args.json:
        doc = {
            "data": study.data,
            "profiles": [
                {
                    "model": p.model,
                    "weights": p.label,
                    "blocks": p.n,
                    "effective_range": list(p.effective),
                    "coverage": p.coverage,
                    "full_gradient_norm": _num(p.full_grad),
                }
                for p in profiles
            ],
            "lengths": [
                {k: _num(v) if isinstance(v, float) else v for k, v in r.items()} for r in path_rows(study)
            ],
        }
        print(json.dumps(doc, indent=2, allow_nan=False))
        return 0
    print(f"{study.data}")
    for p in profiles:
        lo, hi = p.effective
        print(f"\n{p.model} ({p.label}): {p.n} residual blocks, 2^{p.n} paths, mean length {p.mean_length:g}")
        print(f"  effective paths: lengths {lo} to {hi} carry {p.coverage:.0%} of the gradient")
        print(f"  {'k':>3} {'paths':>10} {'grad/path':>10} {'total':>10}")
        for k in range(p.n + 1):
            print(f"  {k:>3} {p.counts[k]:>10.3g} {p.grad[k]:>10.3e} {p.total[k]:>10.3e}")
    return 0


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
