"""The one SGD step every trainer in resviz takes: several models, the same mini-batch.

:class:`~resviz.training.trainer.Trainer` (the Training Lab, ``resviz train``) and
:class:`~resviz.analysis.twin_training.TwinTrainer` (Gradient Flow's training tab) both step their
models through :func:`sgd_step`; what they record beyond the loss, mini-batch error and time (the
twin trainer's per-layer gradient norms) comes from the ``after_backward`` callback, which sees
each model's gradients before its optimizer uses them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.device import oom_guard


@dataclass
class History:
    """What one model did, step by step and at each evaluation (growing Python lists)."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    batch_error: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # cumulative training time after each step
    eval_steps: list[int] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)


@dataclass
class Member:
    """One model being trained, with its optimizer and history."""

    name: str
    model: nn.Module  # the bare model (DDP wraps it in ``net`` under torchrun)
    net: nn.Module
    optimizer: torch.optim.Optimizer
    history: History = field(default_factory=History)
    diverged_at: int | None = None  # set when its loss became non-finite: no more updates


def sgd_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """The paper's optimizer; weight decay on every parameter, BatchNorm's included."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


AfterBackward = Callable[[Member], None]


def sgd_step(
    members: Sequence[Member],
    x: Tensor,
    y: Tensor,
    *,
    step: int,
    lr: float,
    autocast: bool = False,
    distributed: bool = False,
    after_backward: AfterBackward | None = None,
) -> None:
    """One SGD step of every member that has not diverged, on the same batch.

    Args:
        members: the models; each is put in train mode.
        x: ``(N, C, H, W)`` inputs on the models' device.
        y: ``(N,)`` class indices.
        step: the 1-based number of this step, recorded in each history.
        lr: the learning rate of this step.
        autocast: bfloat16 autocast on the inputs' device (CUDA).
        distributed: all-reduce the loss and error over the process group, so that every process
            reaches the same verdict on divergence.
        after_backward: called with each member once its gradients are computed, before its
            optimizer step (also at the step where its loss stops being finite).
    """
    for m in members:
        if m.diverged_at is not None:
            continue  # it stays where it diverged; the others train on
        start = time.perf_counter()
        for group in m.optimizer.param_groups:
            group["lr"] = lr
        m.net.train()
        cast = torch.autocast(x.device.type, torch.bfloat16) if autocast else nullcontext()
        with oom_guard(f"Training {m.name}"), cast:
            logits = m.net(x)
            loss = F.cross_entropy(logits.float(), y)
        m.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward(m)
        wrong = (logits.argmax(1) != y).sum().float()
        count = torch.tensor(float(len(y)), device=x.device)
        stats = torch.stack([loss.detach().float() * len(y), wrong, count])
        if distributed:
            torch.distributed.all_reduce(stats)
        total_loss, wrong_n, n = stats.tolist()
        if not math.isfinite(total_loss):
            # One diverged model must not throw away the run: mark it, keep its last finite
            # weights (no step on a NaN gradient), and let the others go on.
            m.diverged_at = step
            m.optimizer.zero_grad(set_to_none=True)
            continue
        m.optimizer.step()
        h = m.history
        h.steps.append(step)
        h.loss.append(total_loss / n)
        h.batch_error.append(wrong_n / n)
        h.seconds.append((h.seconds[-1] if h.seconds else 0.0) + time.perf_counter() - start)


def per_step(values: Sequence[float], steps: Sequence[int], n_steps: int) -> np.ndarray:
    """``(n_steps,)`` float64: ``values`` placed at their 1-based ``steps``, NaN where a model did not
    step (after it diverged)."""
    out = np.full(n_steps, np.nan)
    if len(steps):
        out[np.asarray(steps, dtype=np.int64) - 1] = values
    return out
