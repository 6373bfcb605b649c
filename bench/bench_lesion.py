"""Benchmark (not a test): a full single-block lesion sweep of a ResNet-56 and its plain twin.

Prints, on 500 held-out 16x16 shapes images (batches of 250), for each network:

- the bare evaluation time of the intact model (``model(x)`` over the same batches);
- the time of the single-block sweep (intact error + every block deleted in turn), and that time in
  intact evaluations: the sweep reuses the intact activations, so it should cost about
  ``blocks / 2 + 1`` evaluations, well under ``blocks + 1``;
- the total for the pair, against the 15 s budget of the issue.

The networks are a saved ResNet-56 run and its twin when ``--run`` is given (the bundled demo pair),
else freshly built ones with the Training Lab's shapes widths (8/16/32): the time does not depend
on the weights.

    OMP_NUM_THREADS=2 python bench/bench_lesion.py
    python bench/bench_lesion.py --run ~/.cache/resviz/runs/<resnet56 run> --repeats 3

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

from resviz.analysis.lesion import single_sweep
from resviz.datasets import load_dataset
from resviz.device import configure_cpu_threads, describe_device
from resviz.hooks import preserve_model_state
from resviz.models import create_model, make_twin

BUDGET_S = 15.0


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _models(run: str | None):
    if run:
        from resviz.analysis.pairs import model_pair
        from resviz.models.weights import load_model

        pair = model_pair(load_model("resnet56", run))
        return pair.residual.name, pair.residual.model, pair.plain.name, pair.plain.model
    model = create_model("resnet56", seed=0, num_classes=6, widths=(8, 16, 32), stem_width=8).eval()
    return "resnet56", model, "plain56", make_twin(model).eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a saved resnet56 run folder (its twin run is found beside it)")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    threads = configure_cpu_threads()
    data = load_dataset("shapes", n_train=64, n_test=args.images, size=16)
    x, y = data.normalize(data.x_test), data.y_test
    print(f"{describe_device('cpu')}, {threads} threads; {len(y)} held-out shapes images, batch {args.batch}")
    res_name, res, plain_name, plain = _models(args.run)
    total = 0.0
    for name, model in ((res_name, res), (plain_name, plain)):
        n = len(model.named_blocks())
        with preserve_model_state(model), torch.inference_mode():

            def intact(model: torch.nn.Module = model) -> None:
                for i in range(0, len(y), args.batch):
                    model(x[i : i + args.batch])

            intact()  # warm-up
            bare = _median(intact, max(args.repeats, 3))
            sweep = _median(lambda m=model: single_sweep(m, x, y, batch_size=args.batch), args.repeats)
        total += sweep
        print(
            f"{name:>9}: intact evaluation {bare:.2f} s; single-block sweep of {n} blocks {sweep:.2f} s "
            f"= {sweep / bare:.1f} intact evaluations (blocks/2 + 1 = {n / 2 + 1:.1f}, blocks + 1 = {n + 1})"
        )
    verdict = "within" if total <= BUDGET_S else "OVER"
    print(f"both sweeps: {total:.1f} s ({verdict} the {BUDGET_S:.0f} s budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
