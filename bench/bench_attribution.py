"""Benchmark: prediction + Grad-CAM against the bare passes it cannot avoid, in one run.

    python bench/bench_attribution.py [--repeats 7] [--models resnet18 resnet50] [--batches 1 8]

For ResNet-18 and ResNet-50 at 224x224, one image and a batch of 8, it times each contender in
round-robin repeats (so drift in a shared machine's load hits every contender alike) and keeps the
fastest repeat of each: on a busy machine the minimum estimates the intrinsic cost far better than
the median (timeit's advice; seen here under load: one call's times ranged 50-290 ms):

- bare_out: a forward pass with autograd on + ``autograd.grad`` of the target logits to layer4's output;
- bare_in:  the same, but to layer4's *input* (the issue's reference: it includes layer4's backward);
- ours:     ``resviz.analysis.attribution.grad_cam``: top-5 + Grad-CAM, upsampled and normalized;
- captum:   captum's ``LayerGradCam`` with the target already known (+ the same upsampling);
- naive:    a separate no-grad forward to learn the predicted class, then captum as above.

and prints each as a ratio to bare_out and to bare_in. Random weights: speed does not depend on them.
Not a test: figures move with the machine's load; run it on a quiet machine to quote them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from captum.attr import LayerAttribution, LayerGradCam

if __package__ in (None, ""):  # run as a script: make the repository importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resviz.analysis.attribution import grad_cam
from resviz.device import configure_cpu_threads
from resviz.models import create_model


def bare(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *, to_input: bool) -> None:
    """Forward with autograd on, backward from the target logits to layer4's output (or input)."""
    saved: list[torch.Tensor] = []
    if to_input:
        handle = model.layer4.register_forward_pre_hook(lambda _m, args: saved.append(args[0]))
    else:
        handle = model.layer4.register_forward_hook(lambda _m, _a, out: saved.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    torch.autograd.grad(logits.gather(1, target[:, None]).sum(), saved[0])


def captum_known(model: torch.nn.Module, x: torch.Tensor, target: list[int]) -> None:
    cam = LayerGradCam(model, model.layer4).attribute(x, target=target, relu_attributions=True)
    LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode="bilinear")


def captum_naive(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        target = model(x).argmax(1).tolist()
    captum_known(model, x, target)


def contenders(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    with torch.no_grad():
        target = model(x).argmax(1)
    t_list = target.tolist()
    return {
        "bare_out": lambda: bare(model, x, target, to_input=False),
        "bare_in": lambda: bare(model, x, target, to_input=True),
        "ours": lambda: grad_cam(model, x, "layer4"),
        "captum": lambda: captum_known(model, x, t_list),
        "naive": lambda: captum_naive(model, x),
    }


def measure(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up: allocator, first-call dispatch, lazy imports
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    threads = configure_cpu_threads()
    print(
        f"torch {torch.__version__}, {threads} CPU thread(s), {args.size}x{args.size}, best of {args.repeats}"
    )
    header = f"{'model':<9} {'N':>2} {'bare_out ms':>11} {'bare_in ms':>10}   " + "   ".join(
        f"{k:>6}/out /in" for k in ("ours", "captum", "naive")
    )
    print(header)
    for name in args.models:
        model = create_model(name, seed=0).eval()
        for n in args.batches:
            x = torch.randn(n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
            res = measure(contenders(model, x), args.repeats)
            cells = "   ".join(
                f"{res[k] / res['bare_out']:>10.2f} {res[k] / res['bare_in']:>4.2f}"
                for k in ("ours", "captum", "naive")
            )
            print(
                f"{name:<9} {n:>2} {res['bare_out'] * 1e3:>11.1f} {res['bare_in'] * 1e3:>10.1f}   {cells}",
                flush=True,
            )


if __name__ == "__main__":
    main()
