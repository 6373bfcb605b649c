"""Benchmark (not a test): seconds per training step per model, and the degradation ordering.

Trains the default configuration (or another preset) once per seed and prints, for every model,
the final training error, held-out error, total seconds and seconds per step, then whether the
paper's ordering holds: plain-56 above plain-20 while ResNet-56 is at or below ResNet-20.

    OMP_NUM_THREADS=2 python bench/bench_training.py                    # digits, seeds 0 and 1
    python bench/bench_training.py --preset shapes --seeds 0 1 2
    python bench/bench_training.py --steps 50 --models plain20,resnet20  # just the speed
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resviz.device import configure_cpu_threads
from resviz.training import PRESETS, train


def ordering(errors: dict[str, float], tol: float = 0.01) -> str:
    """'yes'/'no' for the paper's two claims, or 'n/a' when the four models were not all trained.

    ``tol`` (one percentage point) keeps 0.1% vs 0.0% from counting as "ResNet-56 is worse": both
    have fit the training set.
    """
    need = ("plain20", "plain56", "resnet20", "resnet56")
    if not all(n in errors for n in need):
        return "n/a"
    degraded = errors["plain56"] > errors["plain20"] + tol  # clearly above, not within noise
    residual_ok = errors["resnet56"] <= errors["resnet20"] + tol
    return (
        f"plain56 > plain20: {'yes' if degraded else 'NO'}; "
        f"resnet56 <= resnet20 (+{100 * tol:.0f} pt): {'yes' if residual_ok else 'NO'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, help="override the preset's steps")
    parser.add_argument("--lr", type=float, help="override the preset's learning rate")
    parser.add_argument("--models", help="comma-separated, override the preset's models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (default: RESVIZ_THREADS or all cores)")
    args = parser.parse_args()
    threads = configure_cpu_threads(args.threads)
    base = PRESETS[args.preset].replace(device=args.device)
    if args.steps:
        base = base.replace(steps=args.steps, eval_every=max(1, args.steps // 20))
    if args.lr:
        base = base.replace(lr=args.lr)
    if args.models:
        base = base.replace(models=tuple(args.models.split(",")))
    print(
        f"preset {args.preset}: {base.dataset}, {base.steps} steps, batch {base.batch_size}, lr {base.lr}, "
        f"widths {base.widths or 'paper (16, 32, 64)'}; {threads} CPU thread(s)",
        flush=True,
    )
    for seed in args.seeds:
        start = time.perf_counter()
        results = train(base.replace(seed=seed))
        wall = time.perf_counter() - start
        print(f"\nseed {seed} ({wall:.0f} s for all models)")
        print(f"{'model':<10} {'train err %':>11} {'held-out %':>10} {'seconds':>8} {'s/step':>8}")
        errors = {}
        for r in results:
            c = r.curves
            errors[r.name] = c.final_train_error
            print(
                f"{r.name:<10} {100 * c.final_train_error:>11.1f} {100 * c.final_test_error:>10.1f} "
                f"{c.seconds[-1]:>8.1f} {c.seconds_per_step:>8.3f}"
            )
        print(f"ordering: {ordering(errors)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
