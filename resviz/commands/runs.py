"""``python -m resviz runs``: list, show, rename and delete saved runs (the bundled ones are read-only).

python -m resviz runs list [--json]
python -m resviz runs show demo-shapes-resnet56 --json
python -m resviz runs rename 20261202-101500-shapes-plain56-s0 "plain-56, long"
python -m resviz runs delete 20261202-101500-shapes-plain56-s0
"""

from __future__ import annotations

import argparse
import dataclasses
import json

NAME = "runs"
HELP = "List, show, rename or delete saved training runs (bundled demo runs included, read-only)."
ORDER = 65


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "show", "rename", "delete"])
    parser.add_argument("run", nargs="?", help="a run's id (its folder name), title or folder")
    parser.add_argument("title", nargs="?", help="the new title (rename)")
    parser.add_argument("--dir", help="runs folder (default: $RESVIZ_RUNS_DIR or ~/.cache/resviz/runs)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run_record(info) -> dict[str, object]:
    """What ``list`` and ``show`` print of a run: JSON-ready, errors as fractions, each with the
    number of images it was measured on and its 95% Wilson interval."""
    from resviz.stats import rate_of

    row = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    row["path"] = str(info.path)
    n_train, n_test = row.pop("samples")
    row["n_train_probe"], row["n_test"] = n_train, n_test
    for key, n in (("train_error", n_train), ("test_error", n_test), ("pointing_game", n_test)):
        value = row.get(key)
        ci = rate_of(value, n) if isinstance(value, float) and n else None
        row[f"{key}_ci95"] = [ci.low, ci.high] if ci else None
    return {"id": info.id, "label": info.label, "stopped_early": info.stopped_early, **row}


def run(args: argparse.Namespace) -> int:
    from resviz.errors import ResvizError
    from resviz.runs import clean_partial_runs, delete_run, find_run, read_metadata, rename_run, scan_runs
    from resviz.text import one_line

    clean_partial_runs(args.dir)  # half-written folders a killed process left (as the Runs page does)
    if args.action == "list":
        runs, unreadable = scan_runs(args.dir)
        if args.json:
            print(json.dumps([run_record(r) for r in runs], indent=1))
        else:
            _print_table(runs)
        for path in unreadable:
            print(f"note: {one_line(path)} is not a readable run (skipped)", file=__import__("sys").stderr)
        return 0
    if not args.run:
        raise ResvizError(f"Name the run to {args.action}: `python -m resviz runs list` shows their ids.")
    info = find_run(args.run, args.dir)
    if args.action == "show":
        meta = read_metadata(info.path)
        record = {
            **run_record(info),
            "train_config": meta.get("train_config"),
            "versions": meta.get("versions"),
        }
        print(json.dumps(record, indent=1) if args.json else _describe(record))
    elif args.action == "rename":
        if not args.title:
            raise ResvizError("Give the new title: `python -m resviz runs rename RUN TITLE`.")
        print(one_line(rename_run(info, args.title).label))
    else:
        delete_run(info)
        print(f"deleted {one_line(info.id)}")
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _print_table(runs) -> None:
    from resviz.text import one_line

    if not runs:
        print("No saved runs yet: train some with `python -m resviz train`.")
        return
    width = max(len(r.id) for r in runs)
    head = f"{'model':<10} {'data':<8} {'steps':>6} {'train %':>7} {'held-out %':>10} {'pointing %':>10}"
    print(f"{'id':<{width}}  {head}")
    for r in runs:
        note = " (bundled)" if r.bundled else (" (stopped early)" if r.stopped_early else "")
        print(
            f"{one_line(r.id):<{width}}  {one_line(r.name):<10} {one_line(r.dataset):<8} {r.steps:>6} "
            f"{_pct(r.train_error):>7} "
            f"{_pct(r.test_error):>10} {_pct(r.pointing_game):>10}{note}"
        )


def _describe(record: dict[str, object]) -> str:
    from resviz.text import one_line

    keys = ("id", "label", "name", "dataset", "steps", "train_error", "test_error", "pointing_game", "path")
    return "\n".join(f"{k:>14}: {one_line(record[k])}" for k in keys)
