"""Saved training runs: one folder per trained model, readable by every page.

A run folder holds ``model.pt`` (a plain state dict, read back with ``weights_only=True``),
``run.json`` (the variant's config, dataset, class names, preprocessing, seed, final errors, and the
resviz and torch versions) and ``curves.json`` (kept apart: a paper-scale run has 64k steps of
curves, and the sidebar reads every ``run.json`` on each rerun). The runs folder is
``$RESVIZ_RUNS_DIR``, else ``~/.cache/resviz/runs``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from resviz.errors import CheckpointError, ResvizError

if TYPE_CHECKING:
    from resviz.training import TrainedModel
    from resviz.training.results import TrainingCurves

META = "run.json"
WEIGHTS = "model.pt"
WEIGHTS_FP16 = "model.safetensors"  # float16 safetensors: what the bundled runs ship (half the size)
CURVES = "curves.json"
SNAPSHOTS = "snapshots"  # float16 weights at chosen steps of training: step-000050.safetensors, ...
BUNDLED_DIR = Path(__file__).parent / "bundled" / "runs"  # read-only runs that ship with resviz
STOPPED_EARLY = 0.1  # a run that did less than this share of its steps is "stopped early"
PARTIAL_PREFIX = ".partial-"
PARTIAL_MAX_AGE_S = 3600.0  # a half-written run older than this was left by a killed process


def default_runs_dir() -> Path:
    """``$RESVIZ_RUNS_DIR``, else ``~/.cache/resviz/runs`` (per user)."""
    env = os.environ.get("RESVIZ_RUNS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resviz" / "runs"


@dataclass(frozen=True)
class RunInfo:
    """What a run picker or the runs browser shows, read from ``run.json`` without loading weights."""

    path: Path
    name: str  # the variant, e.g. "plain56"
    dataset: str
    created: str  # local time, "2025-01-31 14:02"
    seed: int
    steps: int  # steps done
    train_error: float | None
    test_error: float | None
    planned_steps: int = 0  # steps the run was configured for
    pointing_game: float | None = None
    seconds: float = 0.0
    device: str = ""
    group: str = ""  # the training session: runs trained side by side share it
    title: str = ""  # a name the user gave the run
    bundled: bool = False  # ships with resviz: read-only
    samples: tuple[int | None, int | None] = (None, None)  # images behind the train / held-out errors
    owner: str = ""  # resviz.sharing.owner_token of the browser session that trained it ("" : none)

    @property
    def id(self) -> str:
        """Unique among the runs listed: the folder's name."""
        return self.path.name

    @property
    def stopped_early(self) -> bool:
        return self.planned_steps > 0 and self.steps < STOPPED_EARLY * self.planned_steps

    @property
    def short_label(self) -> str:
        """Fits a narrow select box and still tells runs apart: variant, data, where from."""
        return f"{self.title or self.name} · {self.dataset} · {'demo' if self.bundled else self.id[:15]}"

    @property
    def label(self) -> str:
        """Tells runs apart: the title (or variant), data, steps, error, and the id or origin."""
        err = f", train error {100 * self.train_error:.1f}%" if self.train_error is not None else ""
        early = ", stopped early" if self.stopped_early else ""
        head = f"{self.title} ({self.name})" if self.title else self.name
        where = "bundled demo" if self.bundled else self.id
        return f"{head} on {self.dataset}, {self.steps} steps{err}{early} · {where}"


def check_writable(root: str | os.PathLike[str] | None = None) -> Path:
    """The runs folder, created if needed; raises before any training when runs cannot be saved there.

    Raises:
        ResvizError: ``root`` is a file, or a folder this process cannot write.
    """
    root = Path(root).expanduser() if root is not None else default_runs_dir()
    if root.exists() and not root.is_dir():
        raise ResvizError(f"Runs are saved in a folder, but {root} is a file: choose another --out.")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=root))
        probe.rmdir()
    except OSError as exc:
        raise ResvizError(
            f"Runs cannot be saved in {root} ({exc.strerror or exc}): choose a folder you can write."
        ) from exc
    return root


def save_run(
    trained: TrainedModel,
    root: str | os.PathLike[str] | None = None,
    *,
    group: str | None = None,
    folder: str | None = None,
    fp16: bool = False,
    owner: str = "",
) -> Path:
    """Save a trained model and its metadata in a new folder under ``root``; return the folder.

    Args:
        group: the training session's id, shared by the models trained side by side.
        folder: the folder's name (default: time, dataset, variant and seed); must be new.
        fp16: store the weights as float16 safetensors (what the bundled runs ship), not a float32 ``.pt``.
        owner: the token of the browser session that trained it (:func:`resviz.sharing.owner_token`).

    The folder is written under a temporary name and renamed at the end, so :func:`list_runs`
    never sees half a run.
    """
    root = check_writable(root)
    meta = trained.metadata()
    meta["created"] = time.strftime("%Y-%m-%d %H:%M")
    meta["group"] = group or uuid.uuid4().hex[:12]
    if owner:
        meta["owner"] = owner
    slug = folder or re.sub(
        r"[^A-Za-z0-9_.-]+",
        "-",
        f"{time.strftime('%Y%m%d-%H%M%S')}-{trained.dataset}-{trained.name}-s{trained.config.seed}",
    )
    tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=root))
    try:
        _write_weights(trained.model.state_dict(), tmp, fp16)
        _write_snapshots(trained.snapshots, tmp)
        (tmp / CURVES).write_text(json.dumps(meta.pop("curves", {})))
        (tmp / META).write_text(json.dumps(meta, indent=1))
        for n in range(1 if folder else 1000):
            dest = root / (slug if n == 0 else f"{slug}-{n}")
            try:
                tmp.rename(dest)  # fails if dest exists (a second run in the same second)
                return dest
            except OSError:
                continue
        raise ResvizError(f"Could not find a free folder name for the run under {root}.")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_weights(state: dict, folder: Path, fp16: bool) -> None:
    import torch

    state = {k: v.detach().cpu() for k, v in state.items()}
    if not fp16:
        torch.save(state, folder / WEIGHTS)
        return
    from safetensors.torch import save_file

    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in half.items()}, str(folder / WEIGHTS_FP16))


def _write_snapshots(snapshots: dict[int, dict], folder: Path) -> None:
    """The weights at chosen steps of training, float16, one safetensors file a step."""
    from safetensors.torch import save_file

    for step, state in snapshots.items():
        (folder / SNAPSHOTS).mkdir(exist_ok=True)
        tensors = {k: v.contiguous() for k, v in state.items()}
        save_file(tensors, str(folder / SNAPSHOTS / f"step-{step:06d}.safetensors"))


def weights_file(path: str | os.PathLike[str]) -> Path | None:
    """The weights file of run folder ``path`` (float32 ``.pt`` or float16 safetensors), or None."""
    for name in (WEIGHTS, WEIGHTS_FP16):
        if (Path(path) / name).is_file():
            return Path(path) / name
    return None


def clean_partial_runs(
    root: str | os.PathLike[str] | None = None, max_age_s: float = PARTIAL_MAX_AGE_S
) -> int:
    """Remove half-written runs that a killed process left behind; returns how many went.

    Only folders older than ``max_age_s`` go: a younger one may be a save in progress.
    """
    root = Path(root).expanduser() if root is not None else default_runs_dir()
    removed = 0
    for tmp in root.glob(f"{PARTIAL_PREFIX}*") if root.is_dir() else ():
        try:
            if time.time() - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp)
                removed += 1
        except OSError:
            continue
    return removed


def scan_runs(
    root: str | os.PathLike[str] | None = None, *, bundled: bool = True
) -> tuple[list[RunInfo], list[Path]]:
    """The runs under ``root`` (then the bundled ones), newest first, and the folders that are not runs."""
    roots = [Path(root).expanduser() if root is not None else default_runs_dir()]
    if bundled and BUNDLED_DIR.is_dir():
        roots.append(BUNDLED_DIR)
    runs, unreadable = [], []
    for r in roots:
        for folder in sorted(r.iterdir()) if r.is_dir() else ():
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            if _outside(folder, r):  # a link to a run elsewhere: listing it would let it be changed
                unreadable.append(folder)
                continue
            info = _read_info(folder, bundled=r == BUNDLED_DIR)
            if info is None:
                unreadable.append(folder)
            else:
                runs.append(info)
    runs.sort(key=lambda i: (i.bundled, i.created, i.id), reverse=True)
    runs.sort(key=lambda i: i.bundled)  # saved runs first (newest first), then the bundled ones
    return runs, unreadable


def list_runs(root: str | os.PathLike[str] | None = None, *, bundled: bool = True) -> list[RunInfo]:
    """Saved runs under ``root`` (newest first), then the bundled ones; unreadable folders are skipped."""
    return scan_runs(root, bundled=bundled)[0]


def find_run(key: str, root: str | os.PathLike[str] | None = None) -> RunInfo:
    """The run whose id (folder name) or title is ``key``, or whose folder is ``key``.

    Raises:
        CheckpointError: no such run, or a title that several runs share.
    """
    runs = list_runs(root)
    exact = [r for r in runs if key in (r.id, str(r.path))]
    titled = [r for r in runs if r.title == key]
    if exact:
        return exact[0]
    if len(titled) == 1:
        return titled[0]
    if titled:
        raise CheckpointError(
            f"{len(titled)} runs are titled {key!r}: name one by its id ({titled[0].id}, ...)."
        )
    ids = ", ".join(r.id for r in runs[:6]) or "none yet"
    raise CheckpointError(f"No run {key!r}; runs: {ids}{', ...' if len(runs) > 6 else ''}.")


def rename_run(info: RunInfo, title: str) -> RunInfo:
    """Give a saved run a title (shown instead of its variant name); bundled runs are read-only."""
    _refuse_bundled(info, "renamed")
    meta = read_metadata(info.path)
    meta["title"] = title.strip()
    _atomic_write(info.path / META, json.dumps(meta, indent=1))
    new = _read_info(info.path, bundled=False)
    assert new is not None
    return new


def delete_run(info: RunInfo) -> None:
    """Delete a saved run's folder; bundled runs are read-only."""
    _refuse_bundled(info, "deleted")
    shutil.rmtree(info.path)


def _refuse_bundled(info: RunInfo, what: str) -> None:
    if info.bundled or info.path.resolve().is_relative_to(BUNDLED_DIR.resolve()):
        raise ResvizError(f"{info.id} ships with resviz and cannot be {what}.")
    if _outside(info.path, info.path.parent):
        raise ResvizError(f"{info.id} is a link to a folder outside the runs folder and cannot be {what}.")


def _outside(folder: Path, root: Path) -> bool:
    """Whether ``folder`` is a symlink, or resolves outside ``root`` (what rename or delete would touch)."""
    try:
        return folder.is_symlink() or folder.resolve().parent != root.resolve()
    except OSError:
        return True


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{PARTIAL_PREFIX}{path.name}")
    tmp.write_text(text)
    tmp.replace(path)


def _read_info(folder: Path, *, bundled: bool) -> RunInfo | None:
    """A run folder's :class:`RunInfo`, or None when it is not a readable run."""
    if weights_file(folder) is None:
        return None
    try:
        meta = json.loads((folder / META).read_text())
        tc = meta.get("train_config") or {}
        return RunInfo(
            path=folder,
            name=str(meta["name"]),
            dataset=str(meta.get("dataset", "?")),
            created=str(meta.get("created", "")),
            seed=int(meta.get("seed", 0)),
            steps=int(meta.get("steps_done", 0)),
            train_error=_float(meta.get("final_train_error")),
            test_error=_float(meta.get("final_test_error")),
            planned_steps=int(tc.get("steps", 0)),
            pointing_game=_float(meta.get("pointing_game")),
            seconds=float(meta.get("seconds") or 0.0),
            device=str(tc.get("device", "")),
            group=str(meta.get("group", "")),
            title=str(meta.get("title", "")),
            bundled=bundled,
            owner=str(meta.get("owner", "")),
            samples=error_samples(meta),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a foreign or damaged folder is not a run


def read_metadata(path: str | os.PathLike[str]) -> dict[str, object]:
    """The ``run.json`` of a run folder."""
    path = Path(path)
    try:
        return json.loads((path / META).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a saved run (no readable {META}).") from exc


def read_curves(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """The per-step curves of a run (``{}`` when the file is missing)."""
    try:
        return json.loads((Path(path) / CURVES).read_text())
    except (OSError, ValueError):
        return {}


def _float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN (a run stopped before its first evaluation) is unknown


# Images the trainer evaluates on: the first 1,000 training images, and the whole held-out set.
_DEFAULT_SIZES = {"shapes": (2000, 500), "digits": (1500, 297)}


def error_samples(meta: Mapping[str, object]) -> tuple[int | None, int | None]:
    """``(training-probe images, held-out images)`` behind a run's stored errors (None: unknown)."""
    tc = dict(meta.get("train_config") or {})  # type: ignore[arg-type]
    n_train, n_test = _DEFAULT_SIZES.get(str(meta.get("dataset")), (None, None))
    n_train = tc.get("n_train") or n_train
    n_test = tc.get("n_test") or n_test
    return (min(1000, int(n_train)) if n_train else None), (int(n_test) if n_test else None)


def run_rows(runs: list[RunInfo]) -> list[dict[str, object]]:
    """The runs browser's table (and its CSV): one flat record per run, errors in percent."""

    def pct(x: float | None) -> float | None:
        return None if x is None else round(100 * x, 2)

    return [
        {
            "id": r.id,
            "title": r.title or r.name,
            "model": r.name,
            "dataset": r.dataset,
            "created": r.created,
            "steps": r.steps,
            "of steps": r.planned_steps,
            "training error %": pct(r.train_error),
            "training error 95% CI": _interval(r.train_error, r.samples[0]),
            "held-out error %": pct(r.test_error),
            "held-out error 95% CI": _interval(r.test_error, r.samples[1]),
            "held-out images": r.samples[1],
            "pointing game %": pct(r.pointing_game),
            "seconds": round(r.seconds, 1),
            "device": r.device,
            "origin": "bundled" if r.bundled else ("stopped early" if r.stopped_early else "saved"),
        }
        for r in runs
    ]


def _interval(share: float | None, n: int | None) -> str | None:
    """'a-b%', a 95% Wilson interval, for a table cell."""
    from resviz.stats import rate_of

    if share is None or not n:
        return None
    r = rate_of(share, n)
    return f"{100 * r.low:.1f}-{100 * r.high:.1f}%"


def run_curves(info: RunInfo) -> TrainingCurves:
    """A run's saved per-step curves, named by its label's head so that overlaid runs stay apart."""
    import numpy as np

    from resviz.models import get_config
    from resviz.training.results import TrainingCurves

    raw = read_curves(info.path)

    def arr(key: str, dtype: type = float) -> np.ndarray:
        return np.asarray(raw.get(key, []), dtype=dtype)

    try:
        cfg = get_config(info.name)
        plain, depth = not cfg.skip, cfg.depth
    except ResvizError:
        plain, depth = info.name.startswith("plain"), 0
    return TrainingCurves(
        name=f"{info.title or info.name} · {'demo' if info.bundled else info.id[:15]}",
        plain=plain,
        depth=depth,
        steps=arr("steps", int),
        loss=arr("loss"),
        batch_error=arr("batch_error"),
        seconds=arr("seconds"),
        eval_steps=arr("eval_steps", int),
        train_error=arr("train_error"),
        test_error=arr("test_error"),
    )
