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

Then the CAM family at layer4 (pytorch-grad-cam, the ``grad-cam`` package, as the reference when it is
installed): each gradient CAM alone against the bare_in floor and against pytorch-grad-cam's same
method; all gradient CAMs at once against a single Grad-CAM; Score-CAM and Ablation-CAM against
pytorch-grad-cam's with its default batch sizes (16 and 32), with the maps' Pearson correlation and
largest difference (``--cam-size``, ``--cam-model``: the forward-pass CAMs cost one pass per channel).
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
from resviz.analysis.cams import GRADIENT_CAMS
from resviz.analysis.cams_forward import forward_cam
from resviz.analysis.grad_cam import gradient_cams
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
    parser.add_argument("--cam-model", default="resnet18")
    parser.add_argument("--cam-size", type=int, default=224, help="input side for the CAM family")
    parser.add_argument("--cam-batch", type=int, default=1, help="images for the CAM family")
    parser.add_argument("--skip-gradcam", action="store_true", help="only the CAM family")
    parser.add_argument("--skip-gradient-cams", action="store_true", help="only Score-CAM and Ablation-CAM")
    parser.add_argument("--forward-cams", nargs="+", default=["scorecam", "ablationcam"])
    args = parser.parse_args()
    threads = configure_cpu_threads()
    print(
        f"torch {torch.__version__}, {threads} CPU thread(s), {args.size}x{args.size}, best of {args.repeats}"
    )
    header = f"{'model':<9} {'N':>2} {'bare_out ms':>11} {'bare_in ms':>10}   " + "   ".join(
        f"{k:>6}/out /in" for k in ("ours", "captum", "naive")
    )
    if not args.skip_gradcam:
        _bench_grad_cam(args, header)
    try:
        import pytorch_grad_cam  # noqa: F401

        have_pgc = True
    except ImportError:
        have_pgc = False
        print("pytorch-grad-cam (pip install grad-cam) is not installed: no reference timings.")
    model = create_model(args.cam_model, seed=0).eval()
    x = torch.randn(
        args.cam_batch, 3, args.cam_size, args.cam_size, generator=torch.Generator().manual_seed(0)
    )
    side = f"{args.cam_size}x{args.cam_size}"
    print(f"\nCAM family at {args.cam_model}.layer4, {args.cam_batch} image(s) at {side}")
    if not args.skip_gradient_cams:
        bench_gradient_cams(model, x, args.repeats, have_pgc)
    bench_forward_cams(model, x, have_pgc, args.forward_cams)


def _bench_grad_cam(args: argparse.Namespace, header: str) -> None:
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


PGC_NAMES = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "gradcam_elementwise": "GradCAMElementWise",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}


def _pgc(model: torch.nn.Module, method: str, x: torch.Tensor, targets: list[int]):
    """pytorch-grad-cam's implementation of ``method`` as a zero-argument call (its default batch sizes)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pgc, PGC_NAMES[method])
    wanted = [ClassifierOutputTarget(t) for t in targets]

    def run():
        with cls(model=model, target_layers=[model.layer4]) as cam:
            return cam(input_tensor=x, targets=wanted)

    return run


def _agreement(ours, ref) -> str:
    import numpy as np

    r = min(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(ours, ref))
    return f"pearson {r:.5f}, max diff {float(np.abs(ours - ref).max()):.4f}"


def bench_gradient_cams(model: torch.nn.Module, x: torch.Tensor, repeats: int, have_pgc: bool) -> None:
    with torch.no_grad():
        target = model(x).argmax(1)
    t_list = target.tolist()
    fns: dict[str, Callable[[], object]] = {"bare_in": lambda: bare(model, x, target, to_input=True)}
    for m in GRADIENT_CAMS:
        fns[m] = lambda m=m: gradient_cams(model, x, ["layer4"], [m], target=t_list)
        if have_pgc:
            fns[f"pgc_{m}"] = _pgc(model, m, x, t_list)
    fns["all"] = lambda: gradient_cams(model, x, ["layer4"], list(GRADIENT_CAMS), target=t_list)
    res = measure(fns, repeats)
    print(f"{'method':<20} {'ms':>7} {'/bare_in':>8} {'pgc ms':>8} {'pgc/ours':>8}")
    for m in GRADIENT_CAMS:
        pgc = (
            f"{res[f'pgc_{m}'] * 1e3:>8.1f} {res[f'pgc_{m}'] / res[m]:>8.2f}"
            if have_pgc
            else "       -        -"
        )
        print(f"{m:<20} {res[m] * 1e3:>7.1f} {res[m] / res['bare_in']:>8.2f} {pgc}")
    print(
        f"all {len(GRADIENT_CAMS)} gradient CAMs at once: {res['all'] * 1e3:.1f} ms = "
        f"{res['all'] / res['gradcam']:.2f}x one Grad-CAM",
        flush=True,
    )


def bench_forward_cams(model: torch.nn.Module, x: torch.Tensor, have_pgc: bool, methods: list[str]) -> None:
    """One timed run each (they take seconds): ours with batch 64 against pytorch-grad-cam's defaults."""
    import contextlib
    import io

    with torch.no_grad():
        t_list = model(x).argmax(1).tolist()
    for m in methods:
        forward_cam(model, x[:1], "layer4", m, batch_size=64, target=t_list[:1])  # warm-up
        t0 = time.perf_counter()
        ours = forward_cam(model, x, "layer4", m, batch_size=64, target=t_list)
        t_ours = time.perf_counter() - t0
        line = f"{m:<12} ours {t_ours:>7.2f} s"
        if have_pgc:
            with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bars
                t0 = time.perf_counter()
                ref = _pgc(model, m, x, t_list)()
                t_ref = time.perf_counter() - t0
            agree = _agreement(ours.maps, ref)
            line += f"   pytorch-grad-cam {t_ref:>7.2f} s = {t_ref / t_ours:.2f}x ours; {agree}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
