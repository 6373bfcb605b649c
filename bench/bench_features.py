"""Capturing every block's output of ResNet-50 vs a bare forward pass, in the same run.

Issue 3 measured 1.0-1.07 with plain hooks; this prints ours and plain hooks' (a forward hook per
block storing ``output.detach()``), both over the same bare passes (medians of interleaved repeats).
Not a test: timings on a shared machine are noisy. Usage: ``python bench/bench_features.py [--size 224]``;
``RESVIZ_MALLOC_TUNING=0`` measures with glibc's default allocator settings (see
:func:`resviz.device.tune_cpu_allocator`: most of the capture overhead there is fresh pages).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resviz.analysis.features import capture_activations
from resviz.device import configure_cpu_threads, tune_cpu_allocator
from resviz.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    configure_cpu_threads()
    model = create_model(args.model, seed=0).eval()
    x = torch.randn(1, 3, args.size, args.size)
    named = model.named_blocks()
    blocks = [name for name, _ in named]

    def bare() -> None:
        with torch.no_grad():
            model(x)

    def captured() -> None:
        capture_activations(model, x, blocks, max_bytes=None)

    modules = [m for _, m in named]

    def plain_hooks() -> None:
        store = []
        handles = [m.register_forward_hook(lambda _m, _i, o: store.append(o.detach())) for m in modules]
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()

    bare(), captured(), plain_hooks()  # warm-up
    t_bare, t_cap, t_plain = [], [], []
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all alike
        for fn, times in ((bare, t_bare), (captured, t_cap), (plain_hooks, t_plain)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    b, c, p = (statistics.median(t) for t in (t_bare, t_cap, t_plain))
    tuned = "tuned" if tune_cpu_allocator() else "default (RESVIZ_MALLOC_TUNING=0 or not glibc)"
    print(
        f"{args.model} {args.size}x{args.size}, {len(blocks)} blocks, {torch.get_num_threads()} thread(s), "
        f"allocator {tuned}"
    )
    print(
        f"bare forward {b * 1e3:.1f} ms; capture every block: resviz {c * 1e3:.1f} ms, ratio {c / b:.3f}; "
        f"plain hooks {p * 1e3:.1f} ms, ratio {p / b:.3f}"
    )


if __name__ == "__main__":
    main()
