"""Benchmark (not a test): how long the gradient-flow analysis of a twin pair takes, and what the
collection costs over a bare forward and backward pass.

Prints, for a 56-layer CIFAR twin pair at batch 32 (32x32 inputs, BatchNorm, Kaiming init):

- seconds for :func:`twin_profile` of the pair, with and without the shortcut/branch split;
- the overhead ratio: the analysis of one model over a bare ``loss.backward()`` of the same model on
  the same batch (median of several repeats; 1.0 would be free);
- the first/last block-output gradient-norm ratios of a depth sweep, with and without BatchNorm, so the
  figures quoted in the issue can be re-measured.

    OMP_NUM_THREADS=2 python bench/bench_gradients.py
    python bench/bench_gradients.py --device cuda --repeats 20
    python bench/bench_gradients.py --no-sweep

Timings are noisy on a shared machine: read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from resviz.analysis.batches import BatchSettings, make_batch
from resviz.analysis.depth_sweep import depth_sweep
from resviz.analysis.gradients import gradient_profile, twin_profile
from resviz.analysis.twins import TwinSettings, build_twins
from resviz.device import configure_cpu_threads, describe_device, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: allocator, cuDNN autotuning, lazy imports
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-sweep", action="store_true", help="skip the depth sweep")
    args = parser.parse_args()

    threads = configure_cpu_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; {threads} CPU threads")
    twins = TwinSettings(depth=args.depth)
    batch = BatchSettings(batch_size=args.batch, image_size=args.size)

    for split in (False, True):
        secs = _median_seconds(
            lambda s=split: twin_profile(twins, batch, device=device, split=s),
            device,
            max(1, args.repeats // 2),
        )
        what = "with shortcut/branch split" if split else "layer and block norms only"
        print(f"twin_profile {args.depth}-layer pair, batch {args.batch}, {what}: {secs:.2f} s")

    model, _ = build_twins(twins, device)
    x, y = make_batch(batch, num_classes=model.config.num_classes)
    x, y = x.to(device), y.to(device)

    def bare() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    # Interleaved, so that load from other processes hits the three alike.
    fns = {
        "bare": bare,
        "core": lambda: gradient_profile(model, x, y, split=False),
        "full": lambda: gradient_profile(model, x, y, split=True),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for k, fn in fns.items():
            times[k].append(_timed(fn, device))
    base, core, full = (statistics.median(times[k]) for k in ("bare", "core", "full"))
    print(
        f"one model: bare forward+backward {base * 1e3:.0f} ms; analysis {core * 1e3:.0f} ms "
        f"(overhead ratio {core / base:.2f}); with split {full * 1e3:.0f} ms (ratio {full / base:.2f})"
    )

    if not args.no_sweep:
        depths = (20, 32, 44, 56, 110)
        for bn in (True, False):
            sweep = depth_sweep(depths, TwinSettings(batchnorm=bn), batch, device=device)
            print(
                f"depth sweep, BatchNorm {'on' if bn else 'off'} "
                "(gradient norm at the first block's output / at the last's; loss):"
            )
            for i, d in enumerate(sweep.depths):
                print(
                    f"  {d:>4}: residual {sweep.residual_ratio[i]:9.3g}  plain {sweep.plain_ratio[i]:9.3g}"
                    f"   loss residual {sweep.residual_loss[i]:9.3g}  plain {sweep.plain_loss[i]:7.3g}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
