"""Has a model learned anything? The check behind "this comparison shows an untrained net".

A residual network compared with a plain twin that never left chance compares training with no
training, whatever the chart shows. A model counts as *at chance* when its final training loss is
within 5% of ln(classes) (the loss of a uniform guess), or its training error is within 2 points of
always answering the most common class. Both thresholds are the issue's, stated where they are used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

LOSS_MARGIN = 0.05  # final loss within 5% of ln(classes)
ERROR_MARGIN = 0.02  # training error within 2 points of the majority-class error
FINAL_STEPS = 20  # the final training loss: the mean of the last mini-batch losses


@dataclass(frozen=True)
class Learned:
    """What a trained model's record says about it."""

    name: str
    final_loss: float | None  # mean mini-batch loss over the last FINAL_STEPS steps
    train_error: float | None
    uniform_loss: float  # ln(classes)
    majority_error: float  # error of always answering the most common class

    @property
    def at_chance(self) -> bool:
        near_loss = self.final_loss is not None and self.final_loss >= (1 - LOSS_MARGIN) * self.uniform_loss
        near_error = self.train_error is not None and self.train_error >= self.majority_error - ERROR_MARGIN
        return near_loss or near_error

    def why(self) -> str:
        """The evidence, in numbers, for a caption."""
        parts = []
        if self.final_loss is not None:
            parts.append(
                f"training loss {self.final_loss:.2f}, a uniform guess scores {self.uniform_loss:.2f}"
            )
        if self.train_error is not None:
            parts.append(
                f"training error {100 * self.train_error:.0f}%, always answering the most common "
                f"class errs {100 * self.majority_error:.0f}%"
            )
        return "; ".join(parts)


def learned_from_run(
    meta: Mapping[str, object], curves: Mapping[str, object] | None, majority_error: float | None = None
) -> Learned:
    """:class:`Learned` from a run's ``run.json`` and ``curves.json`` contents."""
    classes = len(meta.get("class_names") or ()) or 2  # type: ignore[arg-type]
    losses = [float(v) for v in (curves or {}).get("loss", []) if v is not None]  # type: ignore[union-attr]
    losses = [v for v in losses if math.isfinite(v)]
    final = sum(losses[-FINAL_STEPS:]) / len(losses[-FINAL_STEPS:]) if losses else None
    err = meta.get("final_train_error")
    return Learned(
        name=str(meta.get("name", "model")),
        final_loss=final,
        train_error=float(err) if isinstance(err, int | float) else None,
        uniform_loss=math.log(classes),
        majority_error=majority_error if majority_error is not None else 1 - 1 / classes,
    )


def untrained_words(learned: Learned) -> str:
    """One sentence a student understands, for beside a chart."""
    return (
        f"{learned.name} has not learned anything yet ({learned.why()}): this comparison shows an "
        "untrained net, not what its architecture can do."
    )


def vacuous_comparison(*models: Learned) -> str | None:
    """A warning when any of the compared models is at chance, else None."""
    stuck = [m for m in models if m.at_chance]
    return " ".join(untrained_words(m) for m in stuck) or None
