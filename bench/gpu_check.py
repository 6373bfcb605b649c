"""The GPU check (`make gpu-check`): one table that says whether resviz is right and fast on CUDA.

    python bench/gpu_check.py [--out table.md] [--budget 480] [--skip-tests] [--skip-bench]

Rows, in order, each with its seconds on the GPU and the peak GPU memory it allocated
(``torch.cuda.max_memory_allocated``; "-" for a row run in a child process):

- the gpu-marked tests (``pytest -m gpu`` over the test files that have such tests);
- every page's main computation on CUDA against the same call on the CPU, on the bundled demo
  run's held-out images: feature capture and depth statistics (Feature Maps), gradient norms
  (Gradient Flow), Grad-CAM and a few other methods (Attribution), the lesion sweep and a
  landscape slice (Why it works). The "diff" is the largest absolute difference over the result's
  arrays divided by the largest magnitude of the CPU result: cuDNN uses TF32 for convolutions on
  Ampere and later by default, so about 1e-3 is expected, hence the 2e-2 bound;
- training with and without bfloat16 autocast (the training's AMP, on by default on CUDA): both
  must lower the loss alike; the seconds per step of each are quoted;
- the CUDA benchmarks' ratios, a fast subset of ``make bench`` (the benchmarks that take a
  ``--device``: forward pass against torchvision, gradient-profile overhead, landscape vmap
  speed-up, seconds per training step); the others measure CPU-only code.

Without a CUDA device it prints one line and exits 0 (``--device cpu`` runs the whole table on
the CPU against itself: a dry run of this script, for its own development). Exit 1 when a row
fails or was not run.
Stays within ``--budget`` seconds: a step that would start after it is reported as not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE = 2e-2  # relative to the CPU result's scale; TF32 convolutions give about 1e-3
LESION_TOLERANCE = 0.02  # error rates: a few of 500 images may flip on a near tie


@dataclass
class Row:
    step: str
    result: str  # "ok", "FAIL", "not run"
    detail: str
    seconds: float | None = None
    peak_mib: float | None = None
    own_process: bool = False  # ran in a child process: this process's peak says nothing of it


# --------------------------------------------------------------------------- comparing results


def arrays(value: object, prefix: str = "") -> dict[str, object]:
    """Every numpy array and float of a (nested) frozen result, keyed by its path."""
    import numpy as np

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, object] = {}
        for f in dataclasses.fields(value):
            out.update(arrays(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            out.update(arrays(v, f"{prefix}{k}."))
        return out
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        return {prefix.rstrip("."): value.astype(np.float64)}
    if isinstance(value, float):
        return {prefix.rstrip("."): np.float64(value)}
    return {}


def difference(cpu: object, gpu: object) -> tuple[float, str]:
    """Largest ``|gpu - cpu| / max|cpu|`` over the arrays of two results, and where it is."""
    import numpy as np

    a, b = arrays(cpu), arrays(gpu)
    if a.keys() != b.keys():
        return float("inf"), f"different fields: {sorted(a.keys() ^ b.keys())[:3]}"
    worst, where = 0.0, ""
    for key, ref in a.items():
        got = b[key]
        if np.shape(ref) != np.shape(got):
            return float("inf"), f"{key}: shape {np.shape(got)} vs {np.shape(ref)}"
        nan_ref, nan_got = np.isnan(ref), np.isnan(got)
        if not np.array_equal(nan_ref, nan_got):
            return float("inf"), f"{key}: NaN in different places"
        if nan_ref.all():
            continue
        scale = max(float(np.nanmax(np.abs(ref))), 1e-12)
        err = float(np.nanmax(np.abs(got - ref))) / scale
        if err > worst:
            worst, where = err, key
    return worst, where


# --------------------------------------------------------------------------- the steps


class Check:
    def __init__(self, device: str, budget: float) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.start = time.monotonic()
        self.budget = budget
        self.rows: list[Row] = []

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def _sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def _reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def _peak(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.step}: {row.result} {row.detail}", flush=True)

    def step(self, name: str, fn: Callable[[], Row], need: float = 10.0) -> None:
        """Run ``fn`` unless the budget is spent; an exception is a failed row, never the end."""
        if self.left() < need:
            self.add(Row(name, "not run", f"time budget ({self.budget:.0f} s) spent"))
            return
        self._reset_peak()
        t = time.perf_counter()
        try:
            row = fn()
        except Exception as exc:  # a broken step is the finding: report it and go on
            row = Row(name, "FAIL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        self._sync()
        row.step = name
        if row.seconds is None:
            row.seconds = time.perf_counter() - t
        if row.peak_mib is None and not row.own_process:
            row.peak_mib = self._peak()
        self.add(row)

    def same(self, fn: Callable[[object], object], tol: float = TOLERANCE) -> Row:
        """``fn(device)`` on the CPU and here; the row says how far apart the two results are."""
        cpu = self.torch.device("cpu")
        t = time.perf_counter()
        ref = fn(cpu)
        t_cpu = time.perf_counter() - t
        fn(self.device)  # warm-up: cuDNN picks its algorithms, kernels load
        self._sync()
        self._reset_peak()
        t = time.perf_counter()
        got = fn(self.device)
        self._sync()
        t_dev = time.perf_counter() - t
        err, where = difference(ref, got)
        ok = err <= tol
        detail = (
            f"diff {err:.1e} (bound {tol:.0e}{', at ' + where if not ok else ''}); {t_cpu:.2f} s on the CPU"
        )
        return Row("", "ok" if ok else "FAIL", detail, seconds=t_dev, peak_mib=self._peak())


def run_script(args: list[str], timeout: float) -> tuple[int, str]:
    """A benchmark or pytest in its own process: exit status and everything it printed."""
    try:
        proc = subprocess.run(
            [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return 124, out
    return proc.returncode, proc.stdout + proc.stderr


def gpu_tests(check: Check) -> Row:
    files = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py") if "mark.gpu" in p.read_text()
    )
    # -o addopts: the project's default deselects the gpu mark; -p no:cacheprovider: read-only trees.
    args = ["-m", "pytest", "-q", "-m", "gpu", "-o", "addopts=", "-p", "no:cacheprovider", *files]
    rc, out = run_script(args, min(180.0, check.left()))
    summary = next(
        (ln for ln in reversed(out.splitlines()) if re.search(r"passed|failed|error|skipped|deselected", ln)),
        "",
    )
    return Row(
        "", "ok" if rc == 0 else "FAIL", f"{summary.strip('= ')} ({len(files)} files)", own_process=True
    )


# (label, script arguments, regex whose groups make the detail, format of the detail)
BENCHES = (
    (
        "bench: forward vs torchvision (ratio)",
        ["bench/bench_models.py", "--repeats", "5", "--batch", "8"],
        r"(resnet\d+): .*ratio ([\d.]+)",
    ),
    (
        "bench: gradient profile overhead (ratio)",
        ["bench/bench_gradients.py", "--no-sweep", "--repeats", "5"],
        r"(overhead) ratio ([\d.]+)",
    ),
    (
        "bench: landscape vmap speed-up",
        ["bench/bench_landscape.py", "--skip-default", "--n", "500"],
        r"vmap over (\d+) points: .* loop ([\d.]+x)",
    ),
    (
        "bench: training s/step (fp32 loop, AMP on)",
        ["bench/bench_training.py", "--steps", "60", "--models", "plain20,resnet20", "--seeds", "0"],
        r"^(plain20|resnet20) .* ([\d.]+)$",
    ),
)


def bench(check: Check, args: list[str], pattern: str) -> Row:
    rc, out = run_script([*args, "--device", str(check.device)], min(150.0, check.left()))
    found = re.findall(pattern, out, flags=re.MULTILINE)
    last = (out.strip().splitlines() or [""])[-1][:120]
    detail = ", ".join(" ".join(g) for g in found) if found else f"exit {rc}: {last}"
    return Row("", "ok" if rc == 0 and found else "FAIL", detail, own_process=True)


def page_steps(check: Check) -> list[tuple[str, Callable[[], Row]]]:
    """The pages' computations, each as the page calls it, on a model loaded per device."""
    import torch

    from resviz.analysis import attribution, features, gradients, landscape, lesion
    from resviz.analysis.pairs import held_out
    from resviz.models.weights import load_model
    from resviz.runs import BUNDLED_DIR

    run = BUNDLED_DIR / "demo-shapes-resnet56"
    models: dict[str, object] = {}

    def loaded(device):
        key = str(device)
        if key not in models:
            models[key] = load_model("resnet56", str(run), device=device)
        return models[key]

    data = held_out(loaded("cpu"), 500)
    x_all, y_all = landscape.evaluation_images(data, 500)
    x, y = x_all[:16], y_all[:16]

    def model(device):
        return loaded(device).model

    def on(device, *tensors):
        return [t.to(device) for t in tensors]

    target = 1  # not the argmax of every image: the maps of a class that is not the prediction
    steps = [
        (
            "Feature Maps: capture (3 layers, 1 block)",
            lambda d: features.capture_activations(
                model(d), *on(d, x), layers=["conv1", "layer1", "layer3"], blocks=["layer2.0"]
            ),
        ),
        ("Feature Maps: depth statistics", lambda d: features.depth_statistics(model(d), *on(d, x))),
        ("Gradient Flow: gradient norms", lambda d: gradients.gradient_profile(model(d), *on(d, x, y))),
        (
            "Attribution: Grad-CAM",
            lambda d: attribution.attribute(model(d), *on(d, x[:4]), "gradcam", target=target),
        ),
        (
            "Attribution: Score-CAM",
            lambda d: attribution.attribute(model(d), *on(d, x[:4]), "scorecam", target=target),
        ),
        (
            "Attribution: FullGrad",
            lambda d: attribution.attribute(model(d), *on(d, x[:4]), "fullgrad", target=target),
        ),
        (
            "Attribution: Integrated Gradients",
            lambda d: attribution.attribute(model(d), *on(d, x[:4]), "integrated_gradients", target=target),
        ),
    ]
    rows = [(name, lambda fn=fn: check.same(fn)) for name, fn in steps]

    def sweep(d):
        from resviz.hooks import preserve_model_state

        m = model(d)
        with torch.no_grad(), preserve_model_state(m):
            m.eval()
            intact, errors = lesion.single_sweep(m, *on(d, x_all, y_all))
        return {"intact": intact, "errors": errors}

    rows.append(("Why: lesion sweep (500 images)", lambda: check.same(sweep, LESION_TOLERANCE)))
    rows.append(
        (
            "Why: landscape slice (9 points, 500 images)",
            lambda: check.same(lambda d: landscape.direction_slice(model(d), *on(d, x_all, y_all), grid=9)),
        )
    )
    return rows


def amp_row(check: Check) -> Row:
    """Training with bfloat16 autocast against float32: the same recipe must lower the loss alike."""
    from resviz.training import PRESETS, train

    base = PRESETS["cpu"].replace(models=("resnet20",), steps=60, eval_every=30, device=str(check.device))
    curves = {}
    for amp in (False, True):
        check._reset_peak()
        curves[amp] = train(base.replace(amp=amp))[0].curves
    fp32, bf16 = curves[False], curves[True]
    first, last = float(fp32.loss[:5].mean()), (float(fp32.loss[-10:].mean()), float(bf16.loss[-10:].mean()))
    # Both must have learned (last loss well under the first) and agree within 15% of the drop.
    drop = first - last[0]
    ok = drop > 0 and abs(last[1] - last[0]) <= 0.15 * drop + 0.05
    detail = (
        f"loss {first:.2f} -> fp32 {last[0]:.3f}, bf16 {last[1]:.3f}; "
        f"s/step fp32 {fp32.seconds_per_step * 1e3:.1f} ms, bf16 {bf16.seconds_per_step * 1e3:.1f} ms"
    )
    return Row("", "ok" if ok else "FAIL", detail)


# --------------------------------------------------------------------------- the table


def table(rows: list[Row], header: str) -> str:
    def mib(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [
        header,
        "",
        "| step | result | detail | seconds | peak GPU MiB |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.step} | {r.result} | {r.detail} | {sec(r.seconds)} | {mib(r.peak_mib)} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}); nothing to check, skipped.")
        return 0

    from resviz.device import configure_cpu_threads, describe_device

    threads = configure_cpu_threads()
    check = Check(args.device, args.budget)
    header = (
        f"gpu-check on {describe_device(check.device)}; torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}; CPU side {threads} threads; budget {args.budget:.0f} s"
    )
    print(header, flush=True)
    if not args.skip_tests:
        check.step("pytest -m gpu", lambda: gpu_tests(check), need=30)
    try:
        steps = page_steps(check)
    except Exception as exc:
        check.add(Row("pages: loading the demo run", "FAIL", f"{type(exc).__name__}: {exc}"[:160]))
        steps = []
    for name, fn in steps:
        check.step(name, fn)
    check.step("Training: bfloat16 autocast vs float32 (resnet20, 60 steps)", lambda: amp_row(check), 30)
    if not args.skip_bench:
        for name, script, pattern in BENCHES:
            check.step(name, lambda s=script, p=pattern: bench(check, s, p), need=40)

    text = table(check.rows, header)
    text += f"\n\ntotal {time.monotonic() - check.start:.0f} s"
    print("\n" + text, flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    # A step left out for time is a finding too: the check is meant to fit in its budget.
    return 0 if all(r.result == "ok" for r in check.rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
