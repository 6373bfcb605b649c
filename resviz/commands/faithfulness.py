"""``python -m resviz faithfulness``: which attribution method is faithful, for a net and its plain twin."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resviz.analysis.faithfulness_report import FaithfulnessReport
    from resviz.datasets import ImageDataset
    from resviz.models.weights import LoadedModel

from resviz.commands import _bounds

NAME = "faithfulness"
HELP = (
    "Deletion/insertion AUC, ROAD and the pointing game of attribution methods, "
    "for a ResNet and its plain twin on held-out images."
)
ORDER = 55
DATASETS = ("shapes", "digits")  # built in: no download


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="resnet20", help="registered variant (default: resnet20)")
    parser.add_argument(
        "--weights", default="random", help="random, imagenet, a checkpoint path or a saved run folder"
    )
    # Not argparse choices: those would import torch (via the analysis module) for every --help.
    parser.add_argument(
        "--methods",
        help="comma-separated attribution methods, 'random' for the chance reference "
        "(default: gradcam, gradcampp where available, saliency, random)",
    )
    parser.add_argument(
        "--data",
        choices=DATASETS,
        help="held-out images of this built-in dataset (default: the run's own, else shapes)",
    )
    parser.add_argument("--n", type=_bounds.count("--n"), default=64, help="held-out images (default: 64)")
    parser.add_argument("--layer", help="layer of the CAM methods (default: the last stage)")
    parser.add_argument("--target", choices=["label", "predicted"], default="label", help="class to explain")
    parser.add_argument(
        "--steps",
        type=_bounds.count("--steps", 1, _bounds.MAX_STEPS),
        help="deletion/insertion steps (default: 10)",
    )
    parser.add_argument(
        "--road-percentiles", help="comma-separated ROAD thresholds in percent (default: 20,40,60,80)"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the random reference and ROAD's noise")
    parser.add_argument("--device", default="auto")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    out.add_argument(
        "--csv",
        type=_bounds.output_file(stdout=True),
        metavar="FILE",
        help="write the table to FILE ('-' for stdout)",
    )


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.deletion import STEPS
    from resviz.analysis.faithfulness import FaithfulnessError, default_methods, evaluate
    from resviz.analysis.pairs import model_pair
    from resviz.analysis.road import PERCENTILES
    from resviz.device import configure_cpu_threads, resolve_device
    from resviz.models.weights import load_model

    if args.n < 1:
        raise FaithfulnessError(f"--n must be at least 1, not {args.n}.")
    methods = _split(args.methods, str) or default_methods()
    percentiles = _split(args.road_percentiles, float) or PERCENTILES
    steps = STEPS if args.steps is None else args.steps
    _check_methods(methods)
    configure_cpu_threads()
    loaded = load_model(args.model, args.weights, device=resolve_device(args.device))
    if loaded.notice:
        print(f"note: {loaded.notice}", file=sys.stderr)
    data = _data(loaded, args.data, args.n)
    pair = model_pair(loaded)
    x = data.normalize(data.x_test)
    # Each method keeps a map per image and scores every deletion/insertion step of every image:
    # refuse a set whose float32 copies would not fit, before the first forward pass.
    per_image = x[0].numel() * 4 * (steps + 2) * len(methods) * 2  # both nets
    _bounds.check_memory(len(x) * per_image, f"Faithfulness on {len(x)} images with {steps} steps")
    masks = data.masks_test.numpy() if data.masks_test is not None else None
    report = evaluate(
        [(pair.residual.name, pair.residual.model), (pair.plain.name, pair.plain.model)],
        x,
        targets=data.y_test if args.target == "label" else None,
        masks=masks,
        methods=methods,
        layer=args.layer,
        steps=steps,
        percentiles=percentiles,
        seed=args.seed,
        how=pair.how,
        source=f"{len(x)} held-out {data.name} images",
    )
    if args.json:
        from resviz.analysis.pairs import untrained_warning

        print(json.dumps({**report.to_dict(), "untrained_warning": untrained_warning(loaded)}, indent=1))
    elif args.csv:
        _write(args.csv, report.to_csv())
    else:
        _print_table(report)
    return 0


def _split(text: str | None, kind: type) -> tuple:
    from resviz.analysis.faithfulness import FaithfulnessError

    if not text:
        return ()
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise FaithfulnessError(f"Cannot read {text!r} as a comma-separated list of numbers.") from None


def _check_methods(methods: tuple[str, ...]) -> None:
    """Fail on an unknown method before a model is loaded."""
    from resviz.analysis.attribution import METHODS
    from resviz.analysis.faithfulness import REFERENCE, FaithfulnessError

    unknown = [m for m in methods if m not in METHODS and m != REFERENCE]
    if unknown:
        choices = ", ".join([*METHODS, REFERENCE])
        raise FaithfulnessError(f"Unknown method(s) {', '.join(unknown)}; choose from {choices}.")


def _data(loaded: LoadedModel, name: str | None, n: int) -> ImageDataset:
    """The run's held-out set when it fits the request, else built-in dataset ``name`` at the model's size."""
    from resviz.analysis.faithfulness import FaithfulnessError
    from resviz.analysis.pairs import held_out
    from resviz.datasets import load_dataset

    data = held_out(loaded, n)
    if data is None or (name is not None and data.name != name):
        name = name or "shapes"
        size = loaded.preprocessing.crop if name == "shapes" else None
        data = load_dataset(name, n_train=64 if name == "shapes" else None, n_test=n, size=size)
        data = _first(data, n)
    if data.channels != loaded.config.in_channels:
        raise FaithfulnessError(
            f"{data.name} images have {data.channels} channel(s) and {loaded.name} takes "
            f"{loaded.config.in_channels}; choose the other dataset or model."
        )
    if data.num_classes > loaded.config.num_classes:
        raise FaithfulnessError(
            f"{data.name} has {data.num_classes} classes and {loaded.name} only "
            f"{loaded.config.num_classes}; use a model trained on it or with more classes."
        )
    return data


def _first(data: ImageDataset, n: int) -> ImageDataset:
    import dataclasses

    masks = data.masks_test[:n] if data.masks_test is not None else None
    return dataclasses.replace(data, x_test=data.x_test[:n], y_test=data.y_test[:n], masks_test=masks)


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    from pathlib import Path

    from resviz.errors import ResvizError

    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise ResvizError(f"Cannot write {path}: {exc.strerror or exc}.") from exc


def _print_table(report: FaithfulnessReport) -> None:
    from resviz.analysis.faithfulness_report import METRICS

    print(f"{report.source}; {report.how}")
    keys = report.metrics
    names = "".join(f"{METRICS[k].label:>16}" for k in keys)
    ways = "".join(f"{'higher better' if METRICS[k].higher_is_better else 'lower better':>16}" for k in keys)
    print(f"{'net':<10} {'method':<22}{names}{'seconds':>9}")
    print(f"{'':<33}{ways}")
    for row in report.rows():
        cells = "".join(f"{'-' if row[k] is None else format(row[k], '.3f'):>16}" for k in keys)
        print(f"{row['net']:<10} {row['method']:<22}{cells}{row['seconds'] or 0:>9.1f}")
    if not report.complete:
        print("(stopped before the end: rows without numbers were not reached)")
