"""``python -m resviz weights``: fetch torchvision's ImageNet weights into the cache, for later offline use.

The files go where torch hub keeps them (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``): copy that folder to a machine without internet and the app and
the CLI find them there. Each download is hash-checked against its file name, as torch hub does.
"""

from __future__ import annotations

import argparse
import sys

NAME = "weights"
HELP = "Download ImageNet weights into the cache (for a machine that goes offline later)."
ORDER = 15
DEFAULT_NAMES = (
    "resnet18",
    "resnet50",
)  # what the app offers first: the sidebar's default and the bottleneck


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        nargs="*",
        default=list(DEFAULT_NAMES),
        help=f"variants with ImageNet weights (default: {' '.join(DEFAULT_NAMES)}); 'all' for every one",
    )


class _Progress:
    """``name: 12 of 45 MB`` on stderr, rewritten in place every 10 % (every MB without a size)."""

    def __init__(self, name: str) -> None:
        self.name, self.shown = name, -1

    def __call__(self, done: int, total: int) -> None:
        step = int(10 * done / total) if total else done >> 20
        if step != self.shown or done == total:
            self.shown = step
            size = f" of {total / 1e6:.0f} MB" if total else " MB"
            print(f"\r{self.name}: {done / 1e6:.0f}{size}", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from resviz.models import list_models
    from resviz.models.weights import cached_weights_path, download_weights, is_cached

    names = list(args.names)
    if names == ["all"]:
        names = [s.name for s in list_models(plain=False) if s.pretrained_available]
    for name in names:
        if is_cached(name):
            print(f"{name}: already cached at {cached_weights_path(name)}")
            continue
        path = download_weights(name, progress=_Progress(name))
        print(file=sys.stderr)
        print(f"{name}: {path}")
    return 0
