"""Benchmark (not a test): the loss landscape of a 56-layer pair, and vmap against a per-point loop.

Prints:

- seconds for the page's default landscape of a plain-56 / ResNet-56 pair (21 x 21 grid over
  [-1, 1]², 100 held-out shapes images, both nets, plus the 1D slices), against the 90 s goal;
- seconds per grid point for :mod:`resviz.analysis.landscape_eval`'s two methods on a smaller grid
  (the per-point loop and ``torch.func.vmap`` over 4 or 8 points at once), and their ratio;
- the landscapes' shape: loss at the centre and on the border, local minima on the grid.

The pair is the bundled demo run (resnet56 and plain56 trained on shapes) when it is there, else the
same architecture with random weights (the timings are the same; the shape is then meaningless).

    OMP_NUM_THREADS=2 python bench/bench_landscape.py
    python bench/bench_landscape.py --grid 5 --skip-default       # the method comparison only
    python bench/bench_landscape.py --device cuda

Timings are noisy on a shared machine: read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from resviz.analysis.landscape import evaluation_images, shape_summary, surface, twin_landscape
from resviz.analysis.landscape_eval import EvalOptions
from resviz.device import configure_cpu_threads, describe_device, resolve_device

GOAL_SECONDS = 90.0
PAGE_IMAGES = 100  # the page's (and the CLI's) default number of held-out images


def _pair(device: torch.device, n: int):
    """(residual, plain, x, y, where the weights come from)."""
    from resviz.analysis.pairs import held_out, model_pair
    from resviz.datasets import load_dataset
    from resviz.models import create_model
    from resviz.models.weights import load_model
    from resviz.runs import list_runs

    runs = [r for r in list_runs() if r.name == "resnet56" and r.dataset == "shapes"]
    if runs:
        loaded = load_model("resnet56", str(runs[0].path), device=device)
        pair = model_pair(loaded, device=device)
        x, y = evaluation_images(held_out(loaded, n), n)
        return pair.residual.model, pair.plain.model, x, y, f"run {runs[0].path.name}; {pair.how}"
    data = load_dataset("shapes", n_train=64, n_test=n)
    knobs = {
        "widths": (8, 16, 32),
        "stem_width": 8,
        "num_classes": data.num_classes,
        "in_channels": data.channels,
    }
    models = [create_model(name, seed=0, **knobs).to(device).eval() for name in ("resnet56", "plain56")]
    x, y = evaluation_images(data, n)
    return models[0], models[1], x, y, "random weights (no demo run here): timings only"


def _per_point(model, x, y, grid: int, options: EvalOptions) -> float:
    start = time.perf_counter()
    surface(model, x, y, grid=grid, span=1.0, options=options)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / grid**2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=5, help="grid of the method comparison (default 5)")
    parser.add_argument("--n", type=int, default=500, help="held-out images (default 500)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-default", action="store_true", help="skip the full 21 x 21 landscape")
    args = parser.parse_args()

    threads = configure_cpu_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; {threads} CPU threads")
    residual, plain, x, y, source = _pair(device, args.n)
    print(f"pair: {source}; {len(y)} images of {tuple(x.shape[1:])}")

    loop = _per_point(residual, x, y, args.grid, EvalOptions(method="loop"))
    print(f"per grid point, {args.grid}x{args.grid} grid, resnet56: loop {loop:.3f} s", flush=True)
    for k in (4, 8):
        vm = _per_point(residual, x, y, args.grid, EvalOptions(method="vmap", points_per_call=k))
        print(
            f"  vmap over {k} points: {vm:.3f} s per point; speed-up over the loop {loop / vm:.2f}x",
            flush=True,
        )

    if args.skip_default:
        return 0
    x, y = x[:PAGE_IMAGES], y[:PAGE_IMAGES]
    result = twin_landscape(residual, plain, x, y, grid=21, span=1.0, names=("resnet56", "plain56"))
    verdict = "within" if result.seconds <= GOAL_SECONDS else "over"
    print(
        f"default landscape (21x21 over [-1, 1]², {len(y)} images, both nets + 1D slices): "
        f"{result.seconds:.0f} s, {verdict} the {GOAL_SECONDS:.0f} s goal"
    )
    for s in (result.residual, result.plain):
        shape = shape_summary(s)
        print(
            f"  {s.model}: loss at θ {shape.centre:.3g}, border mean {shape.edge_mean:.3g} "
            f"({shape.edge_ratio:.1f}x), min {shape.minimum:.3g}, local minima {shape.local_minima}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
