"""``python -m resviz lesion``: delete or swap blocks of a trained model and its plain twin at test time."""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING

from resviz.stats import rate_of

if TYPE_CHECKING:
    from resviz.analysis.lesion import LesionStudy

from resviz.commands import _bounds

NAME = "lesion"
HELP = "Lesion study (Veit et al. 2016): error after deleting or swapping blocks, ResNet against plain twin."
ORDER = 60


def int_list(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; an empty string gives ``()`` (skip that part)."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a registered variant (a run brings its own)")
    parser.add_argument(
        "--weights",
        required=True,
        help="a run folder (with a held-out set), a checkpoint, random or imagenet",
    )
    parser.add_argument(
        "--data",
        choices=["shapes", "digits"],
        help="the held-out set to judge on (default: the run's own; it must be the run's own)",
    )
    parser.add_argument(
        "--images", type=_bounds.count("--images"), default=500, help="held-out images to evaluate on"
    )
    parser.add_argument("--k", type=int_list, default=(1, 2, 4, 6, 8, 10), help="numbers of deleted blocks")
    parser.add_argument("--swaps", type=int_list, default=(1, 2, 4, 6), help="numbers of swapped pairs")
    parser.add_argument(
        "--draws",
        type=_bounds.count("--draws", 1, _bounds.MAX_DRAWS),
        default=5,
        help="random draws per number",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch",
        type=_bounds.count("--batch", 1, _bounds.MAX_BATCH),
        default=250,
        help="images per forward pass",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.lesion import LesionError, LesionSettings, lesion_study
    from resviz.device import configure_cpu_threads, resolve_device
    from resviz.models.weights import load_model

    configure_cpu_threads()
    settings = LesionSettings(
        n_images=args.images,
        ks=args.k,
        swap_ks=args.swaps,
        draws=args.draws,
        seed=args.seed,
        batch_size=args.batch,
    )
    loaded = load_model(args.model, args.weights, device=resolve_device(args.device))
    own = loaded.metadata.get("dataset") if loaded.weights == "run" else None
    if args.data is not None and own is not None and args.data != own:
        raise LesionError(
            f"{loaded.name} was trained on {own}, not {args.data}: its held-out set is {own}'s."
        )
    study = lesion_study(loaded, settings)
    if args.json:
        from resviz.analysis.pairs import untrained_warning

        doc = {**study_dict(study), "untrained_warning": untrained_warning(loaded)}
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        _print_text(study)
    return 0


def _num(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


def study_dict(study: LesionStudy) -> dict[str, object]:
    """The study as strict JSON: NaN (a deletion or swap that is not possible) is null."""

    def net(res) -> dict[str, object]:  # type: ignore[no-untyped-def]
        intact = rate_of(res.intact_error, res.n_images)
        ci = res.single_change_ci if res.single_change_ci is not None else [[math.nan] * 2] * len(res.blocks)
        return {
            "model": res.model,
            "intact_error": _num(res.intact_error),
            "intact_error_ci95": [_num(intact.low), _num(intact.high)],
            "n_images": res.n_images,
            "single": [
                {
                    "block": b.name,
                    "downsamples": b.downsamples,
                    "error": _num(e),
                    "change": _num(e - res.intact_error),
                    "change_ci95": [_num(lo), _num(hi)],  # paired bootstrap over the same images
                    "measurable": bool(sig),  # the interval excludes no change
                    "deletion": b.how,
                }
                for b, e, (lo, hi), sig in zip(
                    res.blocks, res.single_error.tolist(), ci, res.single_significant, strict=True
                )
            ],
            "delete_k": {
                str(k): [_num(e) for e in row] for k, row in zip(res.ks.tolist(), res.k_error.tolist())
            },
            "swap_k": {
                str(k): [_num(e) for e in row]
                for k, row in zip(res.swap_ks.tolist(), res.swap_error.tolist())
            },
        }

    return {
        "data": study.data,
        "images": study.n_images,
        "chance_error": _num(study.chance),
        "counterpart": study.how,
        "notes": list(study.notes),
        "residual": net(study.residual),
        "plain": net(study.plain),
    }


def _print_text(study: LesionStudy) -> None:
    import numpy as np

    res, plain = study.residual, study.plain
    print(f"{study.data}; chance {study.chance:.1%}; {study.how}")
    print(f"intact error: {res.model} {res.intact_error:.1%}, {plain.model} {plain.intact_error:.1%}")
    print(f"\nerror after deleting one block ({'↓'} = downsamples):")
    print(f"  {'block':<10} {res.model:>10} {plain.model:>10}")
    for b, e, p in zip(res.blocks, res.single_error, plain.single_error, strict=True):
        ptext = f"{p:>10.1%}" if np.isfinite(p) else f"{'-':>10}"
        print(f"  {b.name + (' ↓' if b.downsamples else ''):<10} {e:>10.1%} {ptext}")
    for kind, label in (("delete", "deleting k random blocks"), ("swap", "swapping k random pairs")):
        print(f"\nerror after {label} (mean over draws):")
        for r in (res, plain):
            ks, err = (r.ks, r.k_error) if kind == "delete" else (r.swap_ks, r.swap_error)
            with np.errstate(all="ignore"):
                cells = [
                    f"k={k}: {np.nanmean(e):.1%}" if np.isfinite(e).any() else f"k={k}: -"
                    for k, e in zip(ks, err)
                ]
            print(f"  {r.model:<10} " + ", ".join(cells))
    for note in study.notes:
        print(f"note: {note}")
