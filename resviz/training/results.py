"""What training leaves behind: per-model curves, the trained models, and their tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from resviz.training.config import TrainConfig

if TYPE_CHECKING:
    from resviz.models.resnet import ResNet


@dataclass(frozen=True)
class TrainingCurves:
    """What one model did, step by step (CPU numpy arrays; errors are fractions in [0, 1]).

    ``loss`` and ``batch_error`` are per step, on the training mini-batch. ``train_error`` and
    ``test_error`` are measured every ``eval_every`` steps in eval mode, on (up to 1,000 images of)
    the training set and on the held-out set, at ``eval_steps``.
    """

    name: str
    plain: bool
    depth: int
    steps: np.ndarray
    loss: np.ndarray
    batch_error: np.ndarray
    seconds: np.ndarray  # cumulative training time of this model after each step
    eval_steps: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    diverged_at: int | None = None  # the step whose loss became NaN/inf; the model stopped there

    @property
    def final_train_error(self) -> float:
        return float(self.train_error[-1]) if len(self.train_error) else float("nan")

    @property
    def final_test_error(self) -> float:
        return float(self.test_error[-1]) if len(self.test_error) else float("nan")

    @property
    def seconds_per_step(self) -> float:
        return float(self.seconds[-1] / len(self.seconds)) if len(self.seconds) else float("nan")


@dataclass
class TrainedModel:
    """A model after training (eval mode, on the CPU) with everything needed to save and reload it."""

    name: str
    model: ResNet
    curves: TrainingCurves
    config: TrainConfig
    dataset: str
    class_names: tuple[str, ...]
    preprocessing_dict: dict[str, object]
    steps_done: int
    pointing_game: float | None = None  # share of held-out images whose Grad-CAM peak hits the object
    snapshots: dict[int, dict[str, Any]] = field(default_factory=dict)  # step -> float16 state dict

    def metadata(self) -> dict[str, object]:
        """JSON-ready description stored next to the weights (see :mod:`resviz.runs`)."""
        import resviz

        c = self.curves
        return {
            "name": self.name,
            "variant_config": self.model.config.to_dict(),
            "dataset": self.dataset,
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing_dict,
            "seed": self.config.seed,
            "steps_done": self.steps_done,
            "train_config": self.config.to_dict(),
            "final_train_error": c.final_train_error,
            "final_test_error": c.final_test_error,
            "seconds": float(c.seconds[-1]) if len(c.seconds) else 0.0,
            "pointing_game": self.pointing_game,
            "diverged_at_step": c.diverged_at,
            "curves": {
                "steps": c.steps.tolist(),
                "loss": c.loss.tolist(),
                "batch_error": c.batch_error.tolist(),
                "seconds": c.seconds.tolist(),
                "eval_steps": c.eval_steps.tolist(),
                "train_error": c.train_error.tolist(),
                "test_error": c.test_error.tolist(),
            },
            "versions": {"resviz": resviz.__version__, "torch": torch.__version__},
        }


def curve_rows(curves: Mapping[str, TrainingCurves] | Sequence[TrainingCurves]) -> list[dict[str, object]]:
    """Long format for a CSV: per model, one row per step (loss, mini-batch error, seconds) and one
    per evaluation (training and held-out error); empty cells where a row has no such value."""
    items = curves.values() if isinstance(curves, Mapping) else curves
    rows: list[dict[str, object]] = []
    for c in items:
        base = {"model": c.name, "kind": "plain" if c.plain else "residual", "depth": c.depth}
        for i, step in enumerate(c.steps):
            rows.append(
                {
                    **base,
                    "row": "step",
                    "step": int(step),
                    "loss": float(c.loss[i]),
                    "batch_error": float(c.batch_error[i]),
                    "seconds": float(c.seconds[i]),
                    "train_error": None,
                    "test_error": None,
                }
            )
        for i, step in enumerate(c.eval_steps):
            rows.append(
                {
                    **base,
                    "row": "evaluation",
                    "step": int(step),
                    "loss": None,
                    "batch_error": None,
                    "seconds": None,
                    "train_error": float(c.train_error[i]),
                    "test_error": float(c.test_error[i]),
                }
            )
    return rows


def summary_rows(curves: Mapping[str, TrainingCurves] | Sequence[TrainingCurves]) -> list[dict[str, object]]:
    """One row per model for a final table: errors in percent and seconds."""
    items = curves.values() if isinstance(curves, Mapping) else curves
    return [
        {
            "model": c.name,
            "kind": "plain" if c.plain else "residual",
            "depth": c.depth,
            "train error %": round(100 * c.final_train_error, 2),
            "held-out error %": round(100 * c.final_test_error, 2),
            "seconds": round(float(c.seconds[-1]) if len(c.seconds) else 0.0, 1),
        }
        for c in items
    ]
