"""``python -m resviz features IMAGE --model NAME``: a layer's feature maps as a PNG grid (and .npz)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from resviz.commands import _bounds
from resviz.errors import ResvizError

NAME = "features"
HELP = "Save the feature maps of one layer for an image as a PNG grid (and the activations as .npz)."
ORDER = 30


def _out_file(text: str) -> Path:
    """An output file; its folder may be missing (created at the end), but must be creatable."""
    return Path(_bounds.output_file(parents=True)(text))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="image file (PNG, JPEG, WebP, BMP, GIF, TIFF)")
    parser.add_argument("--model", required=True, help="registered variant, e.g. resnet18 or resnet20")
    parser.add_argument("--weights", default="random", help="random, imagenet or a checkpoint path")
    parser.add_argument("--layer", default=None, help="dotted module name (default: the first block)")
    parser.add_argument(
        "--top-k", type=int, default=None, help="the K most active channels (default: all, up to 64)"
    )
    parser.add_argument("--out", type=_out_file, required=True, help="PNG file to write the grid to")
    parser.add_argument("--npz", type=_out_file, default=None, help="also save the layer's activations here")
    parser.add_argument(
        "--max-mb",
        type=_bounds.real("--max-mb", 0, _bounds.MAX_MB, above_lo=True),
        default=2048,
        help="refuse captures larger than this",
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from resviz.analysis.features import capture_activations, channel_range, layer_options, top_channels
    from resviz.device import configure_cpu_threads
    from resviz.images import load_file
    from resviz.models.weights import load_model
    from resviz.plots.features import mosaic_png, tile_maps

    if args.top_k is not None and args.top_k < 1:
        raise ResvizError("--top-k must be at least 1.")
    image = load_file(args.image)  # checked before the model is built: bad input fails fast
    configure_cpu_threads()
    loaded = load_model(args.model, args.weights, download=True)
    model = loaded.model
    options = layer_options(model)
    layer = args.layer or options.default
    blocks = [layer] if layer in options.blocks else []
    x = loaded.preprocessing.tensor([image.image])
    acts = capture_activations(
        model, x, [] if blocks else [layer], blocks=blocks, max_bytes=int(args.max_mb * 2**20)
    )
    maps = acts.maps[layer][0]
    if maps.ndim != 3:
        raise ResvizError(f"{layer} outputs {maps.ndim}-D features, not channel maps; pick a conv layer.")
    channels = top_channels(maps, args.top_k) if args.top_k else channel_range(maps.shape[0], 0, 64)
    png = mosaic_png(tile_maps(maps[channels], [str(c) for c in channels]))
    _write(args.out, lambda f: f.write(png))
    if args.npz is not None:
        arrays = {k: v[0] for k, v in acts.maps.items()}
        # Through an open file: np.savez given a path would append ".npz" to a name without it.
        _write(args.npz, lambda f: np.savez(f, **arrays, channels=channels, layer=layer))
    if loaded.notice:
        print(f"note: {loaded.notice}")
    print(f"{layer}: {maps.shape[0]} channels of {maps.shape[1]}x{maps.shape[2]}; wrote {args.out}")
    return 0


def _write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create ``path`` (and its folder) and ``write`` into it; an OSError becomes one sentence."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            write(f)
    except IsADirectoryError as exc:
        raise ResvizError(f"Cannot write {path}: it is a folder; give a file name.") from exc
    except OSError as exc:
        raise ResvizError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
