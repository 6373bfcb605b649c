"""``python -m resviz train``: the degradation experiment from a shell, on one process or many.

    python -m resviz train --data digits --models plain20,plain56,resnet20,resnet56 --steps 300
    torchrun --nproc_per_node=2 -m resviz train --data shapes --steps 400 --out runs/

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins one process group (NCCL on GPUs, Gloo
on CPUs) and takes an equal slice of each global batch; only rank 0 prints and saves.
"""

from __future__ import annotations

import argparse
import os
import sys

from resviz.commands import _bounds
from resviz.datasets import DATASETS

NAME = "train"
HELP = "Train plain and residual networks side by side (the degradation experiment) and save the runs."
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from resviz.training import PRESETS

    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="starting configuration (cpu: digits in about 1 minute on 2 cores; shapes; paper: CIFAR-10 "
        "on a GPU); default: the preset of --data if it has one, else cpu",
    )
    parser.add_argument("--data", choices=sorted(DATASETS), help="dataset (default: the preset's)")
    parser.add_argument("--data-root", help="the folder for --data folder; where CIFAR-10/MNIST live")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10/MNIST")
    parser.add_argument("--models", help="comma-separated names, e.g. plain20,plain56,resnet20,resnet56")
    parser.add_argument("--size", type=int, choices=(16, 32), help="image side for --data shapes or folder")
    parser.add_argument(
        "--steps", type=_bounds.count("--steps", 1, _bounds.MAX_TRAIN_STEPS), help="SGD steps"
    )
    parser.add_argument(
        "--batch-size",
        type=_bounds.count("--batch-size", 1, _bounds.MAX_TRAIN_BATCH),
        help="global batch (split over processes)",
    )
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--widths", type=_widths, help="stage widths, e.g. 8,16,32 (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-every",
        type=_bounds.count("--eval-every", 1, _bounds.MAX_TRAIN_STEPS),
        help="steps between evaluations",
    )
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--threads", type=_bounds.threads, help="CPU threads per process")
    parser.add_argument("--out", help="runs folder (default: $RESVIZ_RUNS_DIR or ~/.cache/resviz/runs)")
    parser.add_argument("--no-save", action="store_true", help="do not save the trained models")
    parser.add_argument(
        "--bundle",
        type=_bounds.name("--bundle"),
        metavar="NAME",
        help="save as a bundled run: float16 safetensors in folders NAME-<model>, one group NAME "
        "(how resviz/bundled/runs is made: `make demo-weights`)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the final table")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive(w.strip()) for w in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"give positive whole numbers like 8,16,32, not {text!r}") from None


def build_config(args: argparse.Namespace):
    """The preset (by default the one named like --data, else cpu) with the command line's overrides."""
    from resviz.training import PRESETS

    preset = args.preset or next(
        (name for name, c in PRESETS.items() if args.data and c.dataset == args.data), "cpu"
    )
    cfg = PRESETS[preset]
    changes: dict[str, object] = {"seed": args.seed, "device": args.device}
    if args.data:
        changes["dataset"] = args.data
    if args.data_root:
        changes["data_root"] = args.data_root
    # Always set: the paper preset (picked by --data cifar10) downloads by default, and a command
    # line without --download must not reach the network.
    changes["download"] = bool(args.download)
    if args.models:
        changes["models"] = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if args.size:
        changes["size"] = args.size
    if args.steps:
        changes["steps"] = args.steps
        changes["eval_every"] = max(1, args.steps // 20)
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.lr:
        changes["lr"] = args.lr
    if args.widths:
        changes["widths"] = args.widths
    if args.eval_every:
        changes["eval_every"] = args.eval_every
    return cfg.replace(**changes)


def _init_distributed(device: str) -> tuple[int, int, str]:
    """Join torchrun's process group when launched by it; (rank, world size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch
    import torch.distributed as dist

    from resviz.device import resolve_device

    resolved = resolve_device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if resolved.type == "cuda":
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, f"cuda:{local}"
    dist.init_process_group("gloo")
    return dist.get_rank(), world, "cpu"


def run(args: argparse.Namespace) -> int:
    from resviz.device import configure_cpu_threads
    from resviz.runs import check_writable, clean_partial_runs
    from resviz.training import Trainer, summary_rows

    if not args.no_save:
        check_writable(args.out)  # a read-only or wrong --out is said now, not after training
        clean_partial_runs(args.out)  # half-written folders a killed run left behind
    rank, world, device = _init_distributed(args.device)
    try:
        configure_cpu_threads(args.threads)
        cfg = build_config(args).replace(device=device)
        trainer = Trainer(cfg)
        if rank == 0:
            print(
                f"{trainer.data.summary()}; {len(cfg.models)} models, {cfg.steps} steps, "
                f"batch {cfg.batch_size}, lr {cfg.lr}, {world} process(es) on {trainer.device}",
                flush=True,
            )
        interval = max(1, cfg.steps // 20)

        def report(t: Trainer) -> None:
            if rank != 0 or args.quiet or (t.step_index % interval and not t.done):
                return
            parts = [
                f"{m.name} loss {m.history.loss[-1]:.3f} err {100 * m.history.batch_error[-1]:.0f}%"
                for m in t.members
            ]
            print(f"step {t.step_index}/{cfg.steps}: " + " | ".join(parts), flush=True)

        trainer.run(report)
        results = trainer.results()
        if rank == 0:
            if trainer.data.masks_test is not None:
                from resviz.analysis.faithfulness import pointing_game

                for r in results:
                    r.pointing_game = pointing_game(r.model, trainer.data)
            rows = summary_rows([r.curves for r in results])
            print(f"\n{'model':<10} {'train err %':>11} {'held-out %':>10} {'seconds':>8} {'pointing %':>10}")
            for row, r in zip(rows, results):
                hits = f"{100 * r.pointing_game:.1f}" if r.pointing_game is not None else "-"
                print(
                    f"{row['model']:<10} {row['train error %']:>11.2f} {row['held-out error %']:>10.2f} "
                    f"{row['seconds']:>8.1f} {hits:>10}"
                )
            if not args.no_save:
                _save(results, args)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _save(results: list, args: argparse.Namespace) -> None:
    """Save every trained model; if the runs folder fails now, save them in a temporary folder instead."""
    import tempfile
    import uuid

    from resviz.errors import ResvizError
    from resviz.runs import save_run

    group = args.bundle or uuid.uuid4().hex[:12]
    for r in results:
        folder = f"{args.bundle}-{r.name}" if args.bundle else None
        try:
            path = save_run(r, args.out, group=group, folder=folder, fp16=bool(args.bundle))
        except (ResvizError, OSError) as exc:
            rescue = tempfile.mkdtemp(prefix="resviz-runs-")
            path = save_run(r, rescue, group=group, folder=folder, fp16=bool(args.bundle))
            print(f"could not save {r.name} in {args.out} ({exc}); saved it in {rescue}", file=sys.stderr)
        print(f"saved {r.name} -> {path}", file=sys.stderr)
