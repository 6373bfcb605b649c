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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from resviz.errors import CheckpointError, ResvizError

if TYPE_CHECKING:
    from resviz.models.weights import LoadedModel
    from resviz.training import TrainedModel

META = "run.json"
WEIGHTS = "model.pt"
CURVES = "curves.json"


def default_runs_dir() -> Path:
    """``$RESVIZ_RUNS_DIR``, else ``~/.cache/resviz/runs`` (per user)."""
    env = os.environ.get("RESVIZ_RUNS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resviz" / "runs"


@dataclass(frozen=True)
class RunInfo:
    """What a run picker shows, read from ``run.json`` without loading any weights."""

    path: Path
    name: str  # the variant, e.g. "plain56"
    dataset: str
    created: str  # local time, "2025-01-31 14:02"
    seed: int
    steps: int
    train_error: float | None
    test_error: float | None

    @property
    def label(self) -> str:
        err = f", train error {100 * self.train_error:.1f}%" if self.train_error is not None else ""
        return f"{self.name} on {self.dataset} ({self.steps} steps, seed {self.seed}{err}) · {self.created}"


def save_run(trained: TrainedModel, root: str | os.PathLike[str] | None = None) -> Path:
    """Save a trained model and its metadata in a new folder under ``root``; return the folder.

    The folder is written under a temporary name and renamed at the end, so :func:`list_runs`
    never sees half a run.
    """
    import torch

    root = Path(root).expanduser() if root is not None else default_runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    meta = trained.metadata()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta["created"] = time.strftime("%Y-%m-%d %H:%M")
    slug = re.sub(
        r"[^A-Za-z0-9_.-]+", "-", f"{stamp}-{trained.dataset}-{trained.name}-s{trained.config.seed}"
    )
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        torch.save(state, tmp / WEIGHTS)
        curves = meta.pop("curves", {})
        (tmp / CURVES).write_text(json.dumps(curves))
        (tmp / META).write_text(json.dumps(meta, indent=1))
        for n in range(1000):
            dest = root / (slug if n == 0 else f"{slug}-{n}")
            try:
                tmp.rename(dest)  # fails if dest exists (a second run in the same second)
                return dest
            except OSError:
                continue
        raise ResvizError(f"Could not find a free folder name for the run under {root}.")
    except BaseException:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
        raise


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    """Saved runs under ``root``, newest first; unreadable folders are skipped."""
    root = Path(root).expanduser() if root is not None else default_runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for meta_path in root.glob(f"*/{META}"):
        if meta_path.parent.name.startswith(".") or not (meta_path.parent / WEIGHTS).is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            runs.append(
                RunInfo(
                    path=meta_path.parent,
                    name=str(meta["name"]),
                    dataset=str(meta.get("dataset", "?")),
                    created=str(meta.get("created", "")),
                    seed=int(meta.get("seed", 0)),
                    steps=int(meta.get("steps_done", 0)),
                    train_error=_float(meta.get("final_train_error")),
                    test_error=_float(meta.get("final_test_error")),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a foreign or damaged folder is not a run
    return sorted(runs, key=lambda r: r.path.name, reverse=True)


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


def load_run(path: str | os.PathLike[str]) -> LoadedModel:
    """Rebuild a saved run's model in eval mode, with its class names and preprocessing.

    :func:`resviz.models.weights.load_model` calls this for a run folder (``--weights RUN_DIR``, the
    sidebar's saved runs); the weights are read and matched as a checkpoint's are.

    Raises:
        CheckpointError: the folder is not a run, or its weights do not fit its config.
    """
    from resviz.models import ResNetConfig, create_model
    from resviz.models.weights import LoadedModel, _load_strict, _read_state_dict
    from resviz.preprocessing import Preprocessing

    path = Path(path)
    meta = read_metadata(path)
    try:
        config = ResNetConfig.from_dict(dict(meta["variant_config"]))  # type: ignore[arg-type]
        preprocessing = Preprocessing.from_dict(dict(meta["preprocessing"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name}'s {META} is incomplete or damaged ({exc}).") from exc
    where = f"{path.name}/{WEIGHTS}"
    try:
        data = (path / WEIGHTS).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path.name}'s weights could not be read ({exc.strerror}).") from exc
    state = _read_state_dict(data, where)  # weights_only: a pickle that would run code is refused
    model = create_model(config)
    _load_strict(model, state, where, label="its saved configuration")
    names = meta.get("class_names")
    err = _float(meta.get("final_train_error"))
    return LoadedModel(
        model=model.eval(),
        name=str(meta.get("name", path.name)),
        weights="run",
        source=f"training run {path.name} ({meta.get('dataset')}"
        + (f", train error {100 * err:.1f}%)" if err is not None else ")"),
        preprocessing=preprocessing,
        class_names=tuple(str(n) for n in names) if isinstance(names, list) else None,
        metadata=meta,
    )


def _float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN (a run stopped before its first evaluation) is unknown
