"""``python -m resviz gradflow``: per-layer gradient norms of a residual net and its plain twin."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.gradients import TwinProfile
    from resviz.analysis.twin_training import TrainingRun
    from resviz.analysis.twins import TwinSettings

from resviz.commands import _bounds

NAME = "gradflow"
HELP = "Gradient norms per layer of a ResNet and its plain twin (same seed, same batch)."
ORDER = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--depth",
        type=int,
        default=56,
        help="CIFAR depth 6n+2 (20, 32, 44, 56, 110, ...), or 18/34 with --imagenet",
    )
    parser.add_argument("--imagenet", action="store_true", help="the ImageNet-style pair (depth 18 or 34)")
    parser.add_argument("--no-bn", action="store_true", help="without BatchNorm")
    parser.add_argument("--init", choices=["kaiming", "xavier", "default"], default="kaiming")
    parser.add_argument("--zero-init", action="store_true", help="each branch's last layer starts at zero")
    parser.add_argument("--branch-scale", type=float, default=1.0, help="multiply each branch by this")
    parser.add_argument(
        "--source",
        choices=["random", "samples", "digits"],
        default="random",
        help="where the batch comes from",
    )
    parser.add_argument("--labels", choices=["random", "true"], default="random")
    parser.add_argument(
        "--batch", type=_bounds.count("--batch", 1, _bounds.MAX_BATCH), default=32, help="batch size"
    )
    parser.add_argument(
        "--size", type=_bounds.count("--size", 8, _bounds.MAX_SIDE), default=32, help="input height and width"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="also train both twins this many SGD steps and report the last step's norms",
    )
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    out.add_argument(
        "--csv",
        type=_bounds.output_file(stdout=True),
        metavar="FILE",
        help="write the per-layer table to FILE ('-' for stdout); with --steps, the per-step table "
        "goes to FILE with _training before its suffix (after a blank line on stdout)",
    )


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.gradients import twin_profile
    from resviz.analysis.twin_training import train_twins
    from resviz.analysis.twins import TwinSettings
    from resviz.device import configure_cpu_threads
    from resviz.errors import ConfigError

    configure_cpu_threads()
    twins = TwinSettings(
        depth=args.depth,
        imagenet=args.imagenet,
        batchnorm=not args.no_bn,
        init=args.init,
        zero_init_residual=args.zero_init,
        branch_scale=args.branch_scale,
        seed=args.seed,
    )
    batch = BatchSettings(args.source, args.labels, args.batch, args.size, args.seed)
    if args.steps < 0:
        raise ConfigError(f"--steps must be 0 or more, not {args.steps}.")
    pair = twin_profile(twins, batch, device=args.device)
    run_ = train_twins(twins, batch, args.steps, lr=args.lr, device=args.device) if args.steps else None
    if args.json:
        _print_json(twins, batch, pair, run_)
    elif args.csv:
        _write_csv(args.csv, pair, run_)
    else:
        _print_table(pair)
        if run_ is not None:
            _print_training(run_, pair, args.steps, args.lr)
    return 0


def _training_summary(run_: TrainingRun | None) -> dict[str, object] | None:
    if run_ is None:
        return None
    return {
        "layers": list(run_.layer_names),
        "residual_loss": run_.residual_loss.tolist(),
        "plain_loss": run_.plain_loss.tolist(),
        "residual_grad_last_step": run_.residual_grad[-1].tolist(),
        "plain_grad_last_step": run_.plain_grad[-1].tolist(),
    }


def _print_json(
    twins: TwinSettings, batch: BatchSettings, pair: TwinProfile, run_: TrainingRun | None
) -> None:
    from resviz.analysis.gradients import profile_rows
    from resviz.analysis.twins import settings_dict

    doc = {
        "twins": settings_dict(twins),
        "batch": settings_dict(batch),
        "loss": {"residual": pair.residual.loss, "plain": pair.plain.loss},
        "first_last_ratio": {
            "residual": pair.residual.first_last_ratio,
            "plain": pair.plain.first_last_ratio,
        },
        "layers": profile_rows(pair),
        "training": _training_summary(run_),
    }
    # Strict JSON: a diverged loss or an overflowed norm is null, never Infinity/NaN.
    print(json.dumps(_finite_or_null(doc), indent=2, allow_nan=False))


def _write_csv(csv: str, pair: TwinProfile, run_: TrainingRun | None) -> None:
    from resviz.analysis.gradients import profile_rows
    from resviz.analysis.twin_training import training_rows
    from resviz.export import to_csv

    tables = [(csv, profile_rows(pair))]
    if run_ is not None:
        tables.append((_training_path(csv), training_rows(run_)))
    for i, (path, table) in enumerate(tables):
        if csv == "-":
            sys.stdout.write(("\n" if i else "") + to_csv(table))
        else:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(to_csv(table))
            print(f"wrote {len(table)} rows to {path}")


def _print_training(run_: TrainingRun, pair: TwinProfile, steps: int, lr: float) -> None:
    print(f"\nafter {steps} SGD steps (lr {lr:g}):")
    print(
        f"  loss  {pair.residual.model}: {run_.residual_loss[-1]:.4g}   "
        f"{pair.plain.model}: {run_.plain_loss[-1]:.4g}"
    )
    width = max(len(n) for n in run_.layer_names)
    for name, r, p in zip(run_.layer_names, run_.residual_grad[-1], run_.plain_grad[-1]):
        print(f"  {name:<{width}}  {r:>11.3e}  {p:>11.3e}")


def _training_path(path: str) -> str:
    """``norms.csv`` -> ``norms_training.csv`` (``-`` stays stdout)."""
    if path == "-":
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}_training{p.suffix}"))


def _finite_or_null(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def _print_table(pair) -> None:  # type: ignore[no-untyped-def]
    res, plain = pair.residual, pair.plain
    plain_by_name = dict(zip(plain.layer_names, plain.grad_norm))
    width = max(len(n) for n in res.layer_names)
    print(f"{'depth':>5}  {'layer':<{width}}  {res.model:>11}  {plain.model:>11}")
    for name, depth, g in zip(res.layer_names, res.layer_depth, res.grad_norm):
        p = plain_by_name.get(name)
        p_text = f"{p:>11.3e}" if p is not None else f"{'-':>11}"
        print(f"{int(depth):>5}  {name:<{width}}  {g:>11.3e}  {p_text}")
    print(f"loss: {res.model} {res.loss:.4g}, {plain.model} {plain.loss:.4g}")
    print(
        f"first/last block-output gradient-norm ratio: {res.model} {res.first_last_ratio:.3g}, "
        f"{plain.model} {plain.first_last_ratio:.3g}"
    )
