"""Our ResNet builder vs torchvision's on the same weights: forward time ratio (the taps cost nothing).

Also the time of a model summary (meta device, no arithmetic). Not a test: timings are noisy.
Usage: ``python bench/bench_models.py [--device auto] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resviz.analysis.summary import summarize
from resviz.device import configure_cpu_threads, describe_device, resolve_device
from resviz.models import create_model


def timed(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    import torchvision

    configure_cpu_threads()
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"device: {describe_device(device)}")
    for name in ("resnet18", "resnet50"):
        reference = torchvision.models.get_model(name).eval().to(device)
        ours = create_model(name).eval().to(device)
        ours.load_state_dict(reference.state_dict())
        x = torch.randn(args.batch, 3, 224, 224, device=device)
        with torch.no_grad():
            for _ in range(2):  # warm-up
                ours(x), reference(x)
            t_ref = t_ours = 0.0
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                t_ref += timed(partial(reference, x), 1, sync)
                t_ours += timed(partial(ours, x), 1, sync)
        t = time.perf_counter()
        summarize(name, 224)
        t_sum = time.perf_counter() - t
        print(
            f"{name}: forward batch {args.batch} at 224: torchvision {1e3 * t_ref / args.repeats:.1f} ms, "
            f"resviz {1e3 * t_ours / args.repeats:.1f} ms, ratio {t_ours / t_ref:.3f}; "
            f"summary {1e3 * t_sum:.0f} ms"
        )


if __name__ == "__main__":
    main()
