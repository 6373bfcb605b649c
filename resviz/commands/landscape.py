"""``python -m resviz landscape``: the loss surface around trained weights (Li et al. 2018).

    python -m resviz landscape --model resnet56 --weights RUNDIR --grid 21 --range 1 --n 100 --json
    torchrun --nproc_per_node=2 -m resviz landscape --model resnet56 --weights RUNDIR --npz out.npz

(``--images`` is ``--n``'s other name: torchrun's argument parser reads ``--n`` anywhere on the line
as an ambiguous abbreviation of its own options and refuses to start.)

The evaluation images are the first ``--n`` held-out images of the run's dataset; for weights that
are not a run (random, a checkpoint), ``--data`` names the dataset and the model is built for it.
Under ``torchrun`` (``WORLD_SIZE`` > 1) each process evaluates every ``WORLD_SIZE``-th grid point
and rank 0 gathers them (Gloo on CPUs, NCCL on GPUs) and alone writes the output.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from resviz.commands import _bounds

NAME = "landscape"
HELP = "Loss landscape around a model's weights along filter-normalized random directions (2D grid)."
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="variant, e.g. resnet56 (a run brings its own)")
    parser.add_argument("--weights", default="random", help="random, a checkpoint file or a run folder")
    parser.add_argument("--plain", action="store_true", help="use the plain counterpart of the model")
    parser.add_argument(
        "--data", choices=["shapes", "digits"], help="dataset, for weights that are not a run"
    )
    parser.add_argument(
        "--grid",
        type=_bounds.count("--grid", 2, _bounds.MAX_GRID),
        default=21,
        help="grid points a side (default 21)",
    )
    parser.add_argument(
        "--range",
        type=_bounds.real("--range", 0, 100, above_lo=True),
        default=1.0,
        dest="span",
        help="α, β in [-R, R] (default 1)",
    )
    parser.add_argument(
        "--n",
        "--images",
        type=_bounds.count("--n", 1, _bounds.MAX_IMAGES),
        default=100,
        dest="n",
        help="held-out images to evaluate on (default 100, as on the page); under torchrun write --images: "
        "torchrun's own parser takes --n for an abbreviation of its options",
    )
    parser.add_argument(
        "--seeds", type=_bounds.seed_pair, default=(0, 1), help="seeds of the two directions (default 0,1)"
    )
    parser.add_argument("--method", choices=["auto", "loop", "vmap"], default="auto")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the grid and its summary as JSON on stdout")
    out.add_argument(
        "--npz",
        type=_bounds.output_file(".npz"),
        metavar="FILE",
        help="write alpha, beta, loss, accuracy to FILE",
    )


def _inputs(args: argparse.Namespace, device: str):  # -> (LoadedModel, x, y)
    from resviz.analysis.landscape import evaluation_images
    from resviz.analysis.pairs import held_out, model_pair
    from resviz.datasets import load_dataset
    from resviz.errors import ConfigError
    from resviz.models import get_spec, twin_name
    from resviz.models.weights import WeightsSpec, load_model

    get_spec(args.model)  # an unknown name fails here, in one sentence, before any loading
    spec = WeightsSpec.parse(args.weights)
    if spec.kind == "run":
        loaded = load_model(args.model, spec, device=device)
        data = held_out(loaded, args.n)
        if data is None:
            raise ConfigError("This run's dataset has no built-in held-out set; use --data shapes or digits.")
        if args.plain and loaded.config.skip:
            loaded = model_pair(loaded, device=device).plain
    else:
        if args.data is None:
            raise ConfigError(
                f"{spec.kind.capitalize()} weights have no held-out set: add --data shapes or digits."
            )
        data = load_dataset(
            args.data,
            n_train=64 if args.data == "shapes" else None,
            n_test=args.n if args.data == "shapes" else None,
        )
        name = twin_name(args.model) if args.plain and get_spec(args.model).config.skip else args.model
        knobs = {"num_classes": data.num_classes, "in_channels": data.channels}
        loaded = load_model(name, spec, device=device, **knobs)
    x, y = evaluation_images(data, args.n)
    return loaded, x, y


def _gather(loss: np.ndarray, acc: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """Every process's share summed into one grid (each point was evaluated by exactly one)."""
    import torch
    import torch.distributed as dist

    mine = (np.arange(loss.size) % world == rank).reshape(loss.shape)
    both = torch.from_numpy(np.stack([np.where(mine, loss, 0.0), np.where(mine, acc, 0.0)]))
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    both = both.to(backend_device)
    dist.all_reduce(both)  # NaN or inf from a diverged point survives the sum, as it should
    both = both.cpu().numpy()
    return both[0], both[1]


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from resviz.analysis.landscape import grid_coords, shape_summary, surface
    from resviz.analysis.landscape_eval import EvalOptions
    from resviz.commands.train import _init_distributed
    from resviz.device import configure_cpu_threads, resolve_device
    from resviz.errors import ConfigError

    grid_coords(args.grid, args.span)  # bad sizes fail before anything is loaded
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, not {args.n}.")
    seeds = args.seeds
    rank, world, device = _init_distributed(args.device)
    try:
        configure_cpu_threads()
        device = str(resolve_device(device))
        loaded, x, y = _inputs(args, device)
        start = time.perf_counter()
        result = surface(
            loaded.model,
            x,
            y,
            grid=args.grid,
            span=args.span,
            seeds=seeds,
            name=loaded.name,
            shard=(rank, world),
            options=EvalOptions(method=args.method),
        )
        if world > 1:
            loss, acc = _gather(result.loss, result.accuracy, rank, world)
            result = dataclasses.replace(result, loss=loss, accuracy=acc)
        seconds = time.perf_counter() - start
        if rank == 0:
            _write(args, loaded, result, shape_summary(result), seconds, world)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _centre_error(result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The trained weights' error on the evaluation images, with its 95% Wilson interval."""
    from resviz.stats import rate_of

    c = len(result.alpha) // 2
    acc = float(result.accuracy[c, c])
    if not np.isfinite(acc):
        return {"value": None, "n": result.n_images, "ci95": None}
    return rate_of(1.0 - acc, result.n_images).to_dict()


def _write(args, loaded, result, shape, seconds: float, world: int) -> None:
    from resviz.analysis.pairs import untrained_warning

    summary = {
        "untrained_warning": untrained_warning(loaded),
        "model": result.model,
        "weights": loaded.source,
        "grid": args.grid,
        "range": args.span,
        "n_images": result.n_images,
        "seeds": list(result.seeds),
        "processes": world,
        "seconds": round(seconds, 3),
        "centre_loss": shape.centre,
        "edge_mean_loss": shape.edge_mean,
        "edge_over_centre": shape.edge_ratio,
        "local_minima": shape.local_minima,
        "local_minima_tolerance": shape.tolerance,  # relative depth below every neighbour
        "centre_is_lowest": shape.centre_is_lowest,
        "centre_error": _centre_error(result),
        "batchnorm": "eval mode, the model's running statistics",
    }
    if args.npz:
        np.savez(args.npz, alpha=result.alpha, beta=result.beta, loss=result.loss, accuracy=result.accuracy)
        print(f"wrote {args.grid}x{args.grid} grid to {args.npz}")
    if args.json:
        doc = {
            **summary,
            "alpha": result.alpha.tolist(),
            "beta": result.beta.tolist(),
            "loss": result.loss.tolist(),
            "accuracy": result.accuracy.tolist(),
        }
        print(json.dumps(_finite_or_null(doc), indent=1, allow_nan=False))
    else:
        for key, value in summary.items():
            print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


def _finite_or_null(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return value
