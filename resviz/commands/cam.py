"""``python -m resviz cam``: attribution maps for image files, as overlay PNGs and raw ``.npz`` maps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "cam"
HELP = "Grad-CAM (or another attribution method) for image files: overlay PNG and raw map per image."
ORDER = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP...)")
    parser.add_argument("--model", default="resnet18", help="registered variant (default: resnet18)")
    parser.add_argument(
        "--weights", default="random", help="random, imagenet (downloaded once) or a checkpoint path"
    )
    parser.add_argument("--layer", help="dotted layer name for Grad-CAM (default: the last stage)")
    # Not argparse choices: those would import torch (via the analysis module) for every --help.
    parser.add_argument(
        "--method",
        default="gradcam",
        help="gradcam (default), guided_gradcam, saliency, integrated_gradients or occlusion",
    )
    parser.add_argument("--target", help="class index or exact class name (default: the predicted class)")
    parser.add_argument("--opacity", type=float, default=0.5, help="of the map over the image (0-1)")
    parser.add_argument("--colormap", default="Jet", help="a plotly colorscale name (default: Jet)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the results")


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.attribution import METHODS, AttributionError, attribute_images, parse_target
    from resviz.device import configure_cpu_threads
    from resviz.errors import ImageError
    from resviz.images import load_file
    from resviz.models.weights import load_model
    from resviz.plots.attribution import colormap_lut, overlay, png_bytes

    if args.method not in METHODS:
        raise AttributionError(f"Unknown method {args.method!r}; choose one of {', '.join(METHODS)}.")
    try:
        colormap_lut(args.colormap)  # a bad name fails before any work is done
    except ValueError as exc:
        raise AttributionError(str(exc)) from exc
    # Every file is checked before the model loads. A bad one is reported in a sentence and skipped:
    # the good ones are still explained, and the exit status is 2 so scripts notice.
    images, paths, bad = [], [], 0
    for path in args.images:
        try:
            images.append(load_file(path))
            paths.append(path)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
    if not images:
        return 2
    configure_cpu_threads()
    loaded = load_model(args.model, args.weights)
    if loaded.notice:
        print(f"note: {loaded.notice}", file=sys.stderr)
    target = parse_target(args.target, loaded.class_names, loaded.config.num_classes)
    result = attribute_images(
        loaded, [im.image for im in images], args.method, layer=args.layer, target=target
    )
    views = loaded.preprocessing.array([im.image for im in images])
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from resviz.errors import ResvizError

        raise ResvizError(f"Cannot create the output folder {args.out}: {exc.strerror}.") from exc
    stems: dict[str, int] = {}
    for i, (image, path) in enumerate(zip(images, paths)):
        stem = Path(path).stem
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:  # two inputs with the same name from different folders
            stem = f"{stem}_{stems[stem]}"
        base = args.out / f"{stem}_{args.method}"
        rgb = overlay(views[i], result.maps[i], opacity=args.opacity, colormap=args.colormap)
        png, npz = base.with_suffix(".png"), base.with_suffix(".npz")
        try:
            png.write_bytes(png_bytes(rgb))
            with npz.open("wb") as f:  # an open file: np.savez never renames what it is given
                _save_one(result, i, f)
        except OSError as exc:
            from resviz.errors import ResvizError

            where = exc.filename or png
            raise ResvizError(f"Cannot write {where}: {exc.strerror or exc}.") from exc
        p = result.prediction
        top = ", ".join(f"{lab} {prob:.1%}" for lab, prob in zip(p.labels[i][:3], p.probs[i][:3]))
        print(f"{image.name}: explains {result.target_labels[i]!r}; top: {top} -> {base}.png, {base}.npz")
    return 2 if bad else 0


def _save_one(result, i: int, path) -> None:  # a path or an open binary file
    import numpy as np

    p = result.prediction
    np.savez_compressed(
        path,
        map=result.maps[i],
        raw=result.raw[i],
        target=result.targets[i],
        target_label=np.array(result.target_labels[i]),
        top_indices=p.indices[i],
        top_probs=p.probs[i],
        method=np.array(result.method),
        layer=np.array(result.layer or ""),
    )
