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

Then the CAM family at layer4 (pytorch-grad-cam, the ``grad-cam`` package, and torch-cam, the
``torchcam`` package, as the references when installed): each gradient CAM alone against the bare_in
floor (FullGrad, which needs the gradient down to the image, also against bare_x: forward + backward to
the input) and against the reference's same method; all one-pass gradient CAMs at once against a
single Grad-CAM; then the per-channel CAMs, Score-CAM and Ablation-CAM against pytorch-grad-cam's and
SS-CAM and IS-CAM against torch-cam's, each reference with its default batch size (16, 32, 32, 32),
with the maps' Pearson correlation and largest difference (``--forward-size``, ``--samples``: these
cost one pass per channel, per sample). Smooth Grad-CAM++ and SS-CAM get the same seeded noise on
both sides. Not a test: figures move with the machine's load; run it on a quiet machine to quote them.
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

from resviz.analysis.attribution import attribute, grad_cam
from resviz.analysis.cams import GRADIENT_CAMS
from resviz.analysis.cams_forward import forward_cam
from resviz.analysis.grad_cam import gradient_cams
from resviz.analysis.methods import (
    IntegratedScoreCamOptions,
    SmoothGradCamppOptions,
    SmoothScoreCamOptions,
)
from resviz.device import configure_cpu_threads
from resviz.models import create_model


def bare_x(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> None:
    """Forward with autograd on from the image, backward from the target logits to the image."""
    xg = x.clone().requires_grad_(True)
    torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), xg)


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
    parser.add_argument("--forward-cams", nargs="+", default=["scorecam", "ablationcam", "sscam", "iscam"])
    parser.add_argument("--forward-size", type=int, default=112, help="input side for the per-channel CAMs")
    parser.add_argument("--samples", type=int, default=2, help="samples of SS-CAM, IS-CAM, Smooth Grad-CAM++")
    parser.add_argument("--rounds", type=int, default=2, help="alternated runs of each per-channel CAM")
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
    have_pgc, have_tc = _installed("pytorch_grad_cam"), _installed("torchcam")
    if not have_pgc:
        print("pytorch-grad-cam (pip install grad-cam) is not installed: no reference timings.")
    if not have_tc:
        print("torch-cam (pip install torchcam) is not installed: no reference timings for its methods.")
    model = create_model(args.cam_model, seed=0).eval()
    x = torch.randn(
        args.cam_batch, 3, args.cam_size, args.cam_size, generator=torch.Generator().manual_seed(0)
    )
    side = f"{args.cam_size}x{args.cam_size}"
    print(f"\nCAM family at {args.cam_model}.layer4, {args.cam_batch} image(s) at {side}")
    if not args.skip_gradient_cams:
        bench_gradient_cams(model, x, args.repeats, have_pgc, have_tc, args.samples)
    xf = torch.randn(
        args.cam_batch, 3, args.forward_size, args.forward_size, generator=torch.Generator().manual_seed(0)
    )
    print(
        f"\nPer-channel CAMs at {args.cam_model}.layer4, {args.cam_batch} image(s) at "
        f"{args.forward_size}x{args.forward_size}, {args.samples} samples for SS-CAM and IS-CAM"
    )
    bench_forward_cams(model, xf, have_pgc, have_tc, args.forward_cams, args.samples, args.rounds)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


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
    "fem": "FEM",
    "kpca_cam": "KPCA_CAM",
    "shapleycam": "ShapleyCAM",
    "fullgrad": "FullGrad",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}
TORCHCAM_NAMES = {"smoothgradcampp": "SmoothGradCAMpp", "sscam": "SSCAM", "iscam": "ISCAM"}
SEED = 0  # the noise of Smooth Grad-CAM++ and SS-CAM, on both sides


def _pgc(model: torch.nn.Module, method: str, x: torch.Tensor, targets: list[int]):
    """pytorch-grad-cam's implementation of ``method`` as a zero-argument call (its default batch sizes)."""
    import contextlib
    import io

    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pgc, PGC_NAMES[method])
    wanted = [ClassifierOutputTarget(t) for t in targets]
    layers = [] if method == "fullgrad" else [model.layer4]

    def run():
        with contextlib.redirect_stdout(io.StringIO()), cls(model=model, target_layers=layers) as cam:
            return cam(input_tensor=x, targets=wanted)

    return run


def _torchcam(model: torch.nn.Module, method: str, x: torch.Tensor, targets: list[int], samples: int):
    """torch-cam's implementation as a zero-argument call (its default batch size and noise level),
    its map upsampled to the input and scaled as ours; the global generator seeded as our ``seed``."""
    import torch.nn.functional as F
    import torchcam.methods as tcm

    from resviz.analysis.attribution_core import normalize_maps

    cls = getattr(tcm, TORCHCAM_NAMES[method])

    def run():
        with cls(model, "layer4", num_samples=samples, input_shape=tuple(x.shape[1:])) as extractor:
            with torch.no_grad():
                model(x)
            torch.manual_seed(SEED)
            cam = extractor(class_idx=targets)[0]
        up = F.interpolate(cam[:, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return normalize_maps(up[:, 0]).numpy()

    return run


def _ours(model: torch.nn.Module, method: str, x: torch.Tensor, targets: list[int], samples: int):
    """Our implementation as a zero-argument call; the noisy and sampled ones with ``samples``."""
    options = {
        "smoothgradcampp": SmoothGradCamppOptions(num_samples=samples, seed=SEED),
        "sscam": SmoothScoreCamOptions(num_samples=samples, std=2.0, seed=SEED),  # torch-cam's std
        "iscam": IntegratedScoreCamOptions(num_samples=samples),
    }.get(method)
    if method in GRADIENT_CAMS:
        return lambda: gradient_cams(model, x, ["layer4"], [method], target=targets)[("layer4", method)]
    if method in ("scorecam", "ablationcam"):
        return lambda: forward_cam(model, x, "layer4", method, batch_size=64, target=targets)
    layer = None if method == "fullgrad" else "layer4"
    return lambda: attribute(model, x, method, layer=layer, target=targets, options=options)


def _agreement(ours, ref) -> str:
    """The worst Pearson correlation over the images whose maps are not blank, and the largest
    difference (the issue's tolerance: >= 0.999 and <= 0.01)."""
    import numpy as np

    rs = [
        float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        for a, b in zip(ours, ref)
        if a.std() > 1e-6 and b.std() > 1e-6
    ]
    r = f"pearson {min(rs):.5f}" if rs else "blank maps"
    return f"{r}, max diff {float(np.abs(ours - ref).max()):.4f}"


def bench_gradient_cams(
    model: torch.nn.Module, x: torch.Tensor, repeats: int, have_pgc: bool, have_tc: bool, samples: int
) -> None:
    with torch.no_grad():
        target = model(x).argmax(1)
    t_list = target.tolist()
    fns: dict[str, Callable[[], object]] = {
        "bare_in": lambda: bare(model, x, target, to_input=True),
        "bare_x": lambda: bare_x(model, x, target),
    }
    methods = [*GRADIENT_CAMS, "shapleycam", "fullgrad", "smoothgradcampp"]
    refs: dict[str, str] = {}
    for m in methods:
        fns[m] = _ours(model, m, x, t_list, samples)
        if have_pgc and m in PGC_NAMES:
            fns[f"ref_{m}"], refs[m] = _pgc(model, m, x, t_list), "pytorch-grad-cam"
        elif have_tc and m in TORCHCAM_NAMES:
            fns[f"ref_{m}"], refs[m] = _torchcam(model, m, x, t_list, samples), "torch-cam"
    fns["all"] = lambda: gradient_cams(model, x, ["layer4"], list(GRADIENT_CAMS), target=t_list)
    res = measure(fns, repeats)
    print(f"{'method':<20} {'ms':>7} {'/bare_in':>8} {'/bare_x':>7} {'ref ms':>8} {'ref/ours':>8}  reference")
    for m in methods:
        ref = (
            f"{res[f'ref_{m}'] * 1e3:>8.1f} {res[f'ref_{m}'] / res[m]:>8.2f}  {refs[m]}" if m in refs else ""
        )
        floors = f"{res[m] / res['bare_in']:>8.2f} {res[m] / res['bare_x']:>7.2f}"
        print(f"{m:<20} {res[m] * 1e3:>7.1f} {floors} {ref}")
    print(
        f"all {len(GRADIENT_CAMS)} one-pass gradient CAMs at once: {res['all'] * 1e3:.1f} ms = "
        f"{res['all'] / res['gradcam']:.2f}x one Grad-CAM; Smooth Grad-CAM++ with {samples} samples",
        flush=True,
    )
    if refs:
        print(
            "maps:",
            "; ".join(f"{m} {_agreement(fns[m]().maps, fns[f'ref_{m}']())}" for m in refs),
            flush=True,
        )


def bench_forward_cams(
    model: torch.nn.Module,
    x: torch.Tensor,
    have_pgc: bool,
    have_tc: bool,
    methods: list[str],
    samples: int,
    rounds: int = 2,
) -> None:
    """Ours (batch 64) against the reference (its default batch size), alternated ``rounds`` times,
    the fastest run of each kept: they take seconds each, and a shared machine's load drifts."""
    import contextlib
    import io

    with torch.no_grad():
        t_list = model(x).argmax(1).tolist()
    for m in methods:
        _ours(model, m, x[:1], t_list[:1], 1)()  # warm-up
        fns = {"ours": _ours(model, m, x, t_list, samples)}
        if m in TORCHCAM_NAMES and have_tc:
            fns["ref"], name = _torchcam(model, m, x, t_list, samples), "torch-cam"
        elif m in PGC_NAMES and have_pgc:
            fns["ref"], name = _pgc(model, m, x, t_list), "pytorch-grad-cam"
        best, out = dict.fromkeys(fns, float("inf")), {}
        for _ in range(rounds):
            for key, fn in fns.items():
                with contextlib.redirect_stderr(io.StringIO()):  # pytorch-grad-cam's tqdm bars
                    t0 = time.perf_counter()
                    out[key] = fn()
                    best[key] = min(best[key], time.perf_counter() - t0)
        line = f"{m:<12} ours {best['ours']:>7.2f} s"
        if "ref" in fns:
            ratio, agree = best["ref"] / best["ours"], _agreement(out["ours"].maps, out["ref"])
            line += f"   {name} {best['ref']:>7.2f} s = {ratio:.2f}x ours; {agree}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
