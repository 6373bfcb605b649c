"""``python -m resviz cam``: attribution maps for image files, as overlay PNGs and raw ``.npz`` maps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resviz.commands import _bounds

NAME = "cam"
HELP = "Grad-CAM (or another attribution method) for image files: overlay PNG and raw map per image."
ORDER = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP...)")
    parser.add_argument("--model", default="resnet18", help="registered variant (default: resnet18)")
    parser.add_argument(
        "--weights", default="random", help="random, imagenet (downloaded once) or a checkpoint path"
    )
    from resviz.analysis.methods import method_help, option_help  # the table is torch-free

    parser.add_argument("--layer", help="dotted layer name for the CAM methods (default: the last stage)")
    # Checked in run(), not by argparse choices: a wrong name gets one sentence, not the usage text.
    parser.add_argument(
        "--method", default="gradcam", metavar="METHOD", help=f"default gradcam. {method_help()}"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a method option, repeatable: {option_help()}",
    )
    parser.add_argument(
        "--grid-layers",
        help="comma-separated layers: also write a grid per image (rows: these layers), <stem>_grid.png/.npz",
    )
    parser.add_argument(
        "--grid-methods", help="comma-separated methods for the grid's columns (default: the --method)"
    )
    parser.add_argument(
        "--twin",
        action="store_true",
        help="grid columns: the model with and without shortcuts (same weights)",
    )
    parser.add_argument("--target", help="class index or exact class name (default: the predicted class)")
    parser.add_argument(
        "--opacity", type=_bounds.real("--opacity", 0, 1), default=0.5, help="of the map over the image (0-1)"
    )
    parser.add_argument("--colormap", default="Jet", help="a plotly colorscale name (default: Jet)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the results")


def run(args: argparse.Namespace) -> int:
    from resviz.analysis.attribution import AttributionError, attribute_images, parse_target
    from resviz.analysis.methods import get_method, make_options
    from resviz.device import configure_cpu_threads
    from resviz.models.weights import load_model
    from resviz.plots.attribution import colormap_lut

    options = make_options(args.method, _key_values(args.option))
    grid_methods = _grid_methods(args)
    try:
        colormap_lut(args.colormap)  # a bad name fails before any work is done
    except ValueError as exc:
        raise AttributionError(str(exc)) from exc
    images, paths, bad = _read_images(args.images)
    if not images:
        return 2
    configure_cpu_threads()
    loaded = load_model(args.model, args.weights)
    if loaded.notice:
        print(f"note: {loaded.notice}", file=sys.stderr)
    target = parse_target(args.target, loaded.class_names, loaded.config.num_classes)
    spec = get_method(args.method)
    if spec.engine == "forward":
        print(f"note: {spec.label} costs {spec.cost_text}, per image.", file=sys.stderr)
    result = attribute_images(
        loaded, [im.image for im in images], args.method, layer=args.layer, target=target, options=options
    )
    views = loaded.preprocessing.array([im.image for im in images])
    _make_folder(args.out)
    for i, (image, stem) in enumerate(zip(images, _unique_stems(paths))):
        base = _write_outputs(args, result, views[i], i, stem)
        p = result.prediction
        top = ", ".join(f"{lab} {prob:.1%}" for lab, prob in zip(p.labels[i][:3], p.probs[i][:3]))
        print(f"{image.name}: explains {result.target_labels[i]!r}; top: {top} -> {base}.png, {base}.npz")
        if result.completeness is not None:
            print(_completeness_line(float(result.completeness[i])))
        if args.grid_layers:
            _write_grid(
                args, loaded, image.image, views[i], int(result.targets[i]), grid_methods, options, stem
            )
    return 2 if bad else 0


def _read_images(files: list[str]) -> tuple[list, list[str], int]:
    """Every file checked before the model loads: ``(images, their paths, how many were bad)``.

    A bad one is reported in a sentence and skipped: the good ones are still explained, and the
    exit status is 2 so scripts notice.
    """
    from resviz.errors import ImageError
    from resviz.images import load_file

    images, paths, bad = [], [], 0
    for path in files:
        try:
            images.append(load_file(path))
            paths.append(path)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
    return images, paths, bad


def _unique_stems(paths: list[str]) -> list[str]:
    """File stems, numbered where two inputs of the same name come from different folders."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def _make_folder(out: Path) -> None:
    from resviz.errors import ResvizError

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResvizError(f"Cannot create the output folder {out}: {exc.strerror}.") from exc


def _write_outputs(args: argparse.Namespace, result, view, i: int, stem: str) -> Path:
    """The overlay PNG and the raw-map npz of image ``i``; returns their common path without suffix."""
    from resviz.errors import ResvizError
    from resviz.plots.attribution import overlay, png_bytes

    base = args.out / f"{stem}_{args.method}"
    rgb = overlay(view, result.maps[i], opacity=args.opacity, colormap=args.colormap)
    png, npz = base.with_suffix(".png"), base.with_suffix(".npz")
    try:
        png.write_bytes(png_bytes(rgb))
        with npz.open("wb") as f:  # an open file: np.savez never renames what it is given
            _save_one(result, i, f)
    except OSError as exc:
        where = exc.filename or png
        raise ResvizError(f"Cannot write {where}: {exc.strerror or exc}.") from exc
    return base


def _key_values(pairs: list[str]) -> dict[str, str]:
    from resviz.errors import ResvizError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ResvizError(f"Give each option as KEY=VALUE; got {pair!r}.")
        out[key.strip()] = value.strip()
    return out


def _grid_methods(args: argparse.Namespace) -> list[str]:
    from resviz.analysis.methods import get_method

    names = [m.strip() for m in (args.grid_methods or args.method).split(",") if m.strip()]
    for name in names:
        get_method(name)  # an unknown name fails before any work is done
    return names


def _completeness_line(percent: float) -> str:
    hint = " (over 5%: more steps would help, --option steps=...)" if percent > 5 else ""
    return f"  completeness error {percent:.1f}%{hint}"


def _write_grid(args, loaded, image, view, target: int, methods, options, stem: str) -> None:
    """The comparison grid of one image (the page's grid, from the same library call) as PNG + npz."""
    import numpy as np

    from resviz.analysis.attribution import comparison_cells
    from resviz.models import make_twin
    from resviz.plots.attribution import grid_image, png_bytes

    layers = [name.strip() for name in args.grid_layers.split(",") if name.strip()]
    twin = make_twin(loaded.model).eval() if args.twin else None
    x = loaded.preprocessing.tensor([image])
    cells = comparison_cells(
        loaded.model,
        x,
        layers,
        methods,
        target=target,
        options={args.method: options},
        preprocessing=loaded.preprocessing,
        twin=twin,
    )
    columns = list(dict.fromkeys(col for _, col in cells))
    base = args.out / f"{stem}_grid"
    rgb = grid_image(view, cells, layers, columns, opacity=args.opacity, colormap=args.colormap)
    base.with_suffix(".png").write_bytes(png_bytes(rgb))
    keys = [f"{r} | {c}" for r in layers for c in columns if (r, c) in cells]
    with base.with_suffix(".npz").open("wb") as f:
        np.savez_compressed(
            f, maps=np.stack([cells[tuple(k.split(" | "))] for k in keys]), cells=np.array(keys)
        )
    print(f"  grid: rows {', '.join(layers)}; columns {', '.join(columns)} -> {base}.png, {base}.npz")


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
        **({} if result.completeness is None else {"completeness_percent": result.completeness[i]}),
    )
