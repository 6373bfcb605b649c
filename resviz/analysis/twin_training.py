"""Train a twin pair side by side on the same batches, recording gradient norms at every step.

What Gradient Flow's training tab shows: how the per-layer gradient norms of a residual network and
its plain twin evolve once SGD starts. The step is the one every trainer takes
(:func:`resviz.training.sgd.sgd_step`); the gradient norms are read between its backward pass and
its optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from resviz.analysis.batches import BatchSettings, make_batch
from resviz.analysis.gradients import weighted_layers
from resviz.analysis.norms import tensor_norms
from resviz.analysis.twins import TwinSettings, build_twins, model_name
from resviz.device import model_device
from resviz.errors import ConfigError
from resviz.training.sgd import Member, per_step, sgd_optimizer, sgd_step


@dataclass(frozen=True)
class TrainingRun:
    """Per-step gradient norms and losses of a twin pair trained side by side.

    ``*_grad`` arrays are ``(S, L)``: steps by weighted layers (the plain twin's layers, which both
    models have; the residual model's shortcut projections are left out). Losses are ``(S,)``.
    """

    layer_names: tuple[str, ...]
    layer_depth: np.ndarray  # (L,)
    residual_grad: np.ndarray  # (S, L)
    plain_grad: np.ndarray  # (S, L)
    residual_loss: np.ndarray  # (S,)
    plain_loss: np.ndarray  # (S,)
    lr: float
    momentum: float
    weight_decay: float

    @property
    def steps(self) -> int:
        return int(self.residual_loss.shape[0])


class TwinTrainer:
    """Trains a twin pair side by side on the same batches, recording gradient norms every step.

    Mutable on purpose: a page runs a few steps per chunk and keeps the trainer between reruns, so
    a stopped run keeps what it computed. Both models are built here from the settings' seed, so no
    model shared with another session is ever trained.

    The paper's optimizer: SGD with momentum 0.9 and weight decay 1e-4 (He et al. 2015, sec. 4.2).
    With the digits source each step draws a new minibatch; with random inputs or the sample images
    every step reuses the analysis batch, since fresh noise holds nothing to learn. A model whose
    loss stops being finite stays where it was (:func:`~resviz.training.sgd.sgd_step`); its later
    steps are NaN in the result.
    """

    def __init__(
        self,
        twins: TwinSettings,
        batch: BatchSettings,
        *,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        device: str = "auto",
    ) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"The learning rate must be a positive number, not {lr}.")
        self.twins, self.batch = twins, batch
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        residual, plain = build_twins(twins, device)
        self.members = tuple(
            Member(model_name(m), m, m, sgd_optimizer(m, lr, momentum, weight_decay))
            for m in (residual, plain)
        )
        # The plain twin's layers exist in both models: compare those (shortcut projections aside).
        self._layers = weighted_layers(plain)
        modules = dict(residual.named_modules())
        self._weights = {
            self.members[0].name: [modules[n].weight for n, _, _, _ in self._layers],
            self.members[1].name: [m.weight for _, m, _, _ in self._layers],
        }
        self._grads: dict[str, dict[int, np.ndarray]] = {m.name: {} for m in self.members}
        self.steps_done = 0

    def step(self, n: int = 1) -> None:
        """Run ``n`` optimizer steps on both models (the same batch for both at every step)."""
        residual = self.members[0].model
        cfg = residual.config
        device = model_device(residual)
        for _ in range(n):
            draw = self.steps_done if self.batch.source == "digits" else 0
            x, y = make_batch(self.batch, in_channels=cfg.in_channels, num_classes=cfg.num_classes, step=draw)
            sgd_step(
                self.members,
                x.to(device),
                y.to(device),
                step=self.steps_done + 1,
                lr=self.lr,
                after_backward=self._record_grads,
            )
            self.steps_done += 1

    def _record_grads(self, member: Member) -> None:
        norms = tensor_norms([w.grad for w in self._weights[member.name]])
        self._grads[member.name][self.steps_done + 1] = norms

    def result(self) -> TrainingRun:
        """What has been recorded so far, as CPU arrays."""
        n, n_layers = self.steps_done, len(self._layers)

        def grid(member: Member) -> np.ndarray:
            out = np.full((n, n_layers), np.nan)
            for step, norms in self._grads[member.name].items():
                out[step - 1] = norms
            return out

        def losses(member: Member) -> np.ndarray:
            return per_step(member.history.loss, member.history.steps, n)

        residual, plain = self.members
        return TrainingRun(
            layer_names=tuple(name for name, _, _, _ in self._layers),
            layer_depth=np.array([d for _, _, d, _ in self._layers], dtype=np.int64),
            residual_grad=grid(residual),
            plain_grad=grid(plain),
            residual_loss=losses(residual),
            plain_loss=losses(plain),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )


def train_twins(
    twins: TwinSettings,
    batch: BatchSettings,
    steps: int,
    *,
    lr: float = 0.1,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> TrainingRun:
    """Train the twin pair ``steps`` SGD steps; the per-step record (see :class:`TwinTrainer`)."""
    trainer = TwinTrainer(twins, batch, lr=lr, device=device)
    for i in range(steps):
        trainer.step()
        if progress is not None:
            progress(i + 1, steps)
    return trainer.result()


def training_rows(run: TrainingRun) -> list[dict[str, object]]:
    """Long format: one row per step and layer, both models side by side, with the step's losses."""
    rows: list[dict[str, object]] = []
    for s in range(run.steps):
        for i, name in enumerate(run.layer_names):
            rows.append(
                {
                    "step": s + 1,
                    "layer": name,
                    "depth": int(run.layer_depth[i]),
                    "residual_grad_norm": float(run.residual_grad[s, i]),
                    "plain_grad_norm": float(run.plain_grad[s, i]),
                    "residual_loss": float(run.residual_loss[s]),
                    "plain_loss": float(run.plain_loss[s]),
                }
            )
    return rows
