"""Train plain and residual networks side by side: the degradation experiment of He et al. 2015.

Fig. 1 and Fig. 6 of https://arxiv.org/abs/1512.03385: a deeper *plain* network has a higher
*training* error than a shallower one, while the residual network of the same depth does not. The
:class:`Trainer` steps every model on the same mini-batch (:func:`resviz.training.sgd.sgd_step`),
one step at a time, so a page can draw all the curves as they grow.

Runs are seeded and repeatable: each model is built from its seed, and the batches come from a
generator of their own. Each run builds its own models, so nothing here ever touches a model that
the app shares between sessions. Under ``torchrun`` the models are wrapped for distributed data
parallel training (:mod:`resviz.training.distributed`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.datasets import ImageDataset, load_dataset
from resviz.device import resolve_device
from resviz.errors import ConfigError
from resviz.models import create_model, get_config
from resviz.training.config import TrainConfig
from resviz.training.distributed import plain_batchnorm, wrap_ddp
from resviz.training.results import TrainedModel, TrainingCurves
from resviz.training.sgd import Member, sgd_optimizer, sgd_step

Callback = Callable[["Trainer"], None]


class Trainer:
    """Steps several models on the same mini-batches.

    Args:
        config: the experiment.
        dataset: an already loaded dataset (else ``config.dataset`` is loaded).

    Raises:
        ResvizError: a dataset that is not available, an unknown model, a device that is missing.
    """

    def __init__(self, config: TrainConfig, dataset: ImageDataset | None = None) -> None:
        self.config = config
        self.data = dataset or load_dataset(
            config.dataset,
            seed=config.data_seed,
            size=config.size,
            n_train=config.n_train,
            n_test=config.n_test,
            root=config.data_root,
            download=config.download,
        )
        self.device = resolve_device(config.device)
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.world = torch.distributed.get_world_size() if self.distributed else 1
        if config.batch_size % self.world:
            raise ConfigError(
                f"The batch of {config.batch_size} does not split evenly over {self.world} processes."
            )
        cuda = self.device.type == "cuda"
        self.amp = config.amp and cuda
        self.memory_format = (
            torch.channels_last if (config.channels_last and cuda) else torch.contiguous_format
        )
        # The whole (small, uint8) dataset moves to the device once; batches are sliced there.
        self.x_train = self.data.x_train.to(self.device)
        self.y_train = self.data.y_train.to(self.device)
        self.x_test = self.data.x_test.to(self.device)
        self.y_test = self.data.y_test.to(self.device)
        n_probe = min(1000, len(self.y_train))
        self.train_probe = torch.arange(n_probe, device=self.device)  # fixed images for the train-error curve
        self.members = [self._build(name) for name in config.models]
        self._batches = torch.Generator().manual_seed(config.seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._aug = torch.Generator().manual_seed(config.seed + 1)
        self.step_index = 0
        # step -> model name -> float16 CPU state dict (config.snapshots): how the weights moved
        self.snapshots: dict[int, dict[str, dict[str, Tensor]]] = {}
        self._snapshot()

    def _snapshot(self) -> None:
        if self.step_index in self.config.snapshots:
            self.snapshots[self.step_index] = {
                m.name: {
                    k: v.detach().to("cpu", torch.float16, copy=True) for k, v in m.model.state_dict().items()
                }
                for m in self.members
            }

    def _build(self, name: str) -> Member:
        cfg = self.config
        knobs: dict[str, object] = {"num_classes": self.data.num_classes, "in_channels": self.data.channels}
        if cfg.widths is not None:
            base = get_config(name)
            if len(cfg.widths) != len(base.layers):
                raise ConfigError(f"{name} has {len(base.layers)} stages; give {len(base.layers)} widths.")
            knobs.update(widths=cfg.widths, stem_width=cfg.widths[0])
        # The same seed for every model: plain-N and ResNet-N start from identical weights.
        model = create_model(name, seed=cfg.seed, **knobs).to(self.device, memory_format=self.memory_format)
        net: nn.Module = model
        if self.distributed:
            net = wrap_ddp(model, self.device)
        return Member(name, model, net, sgd_optimizer(model, cfg.lr_at(0), cfg.momentum, cfg.weight_decay))

    @property
    def done(self) -> bool:
        return self.step_index >= self.config.steps

    @property
    def progress(self) -> float:
        return min(1.0, self.step_index / self.config.steps)

    def _next_indices(self) -> Tensor:
        """The global batch: epochs of a seeded permutation, identical in every process."""
        bs = self.config.batch_size
        if len(self._order) < bs:
            n = len(self.y_train)
            more = [torch.randperm(n, generator=self._batches) for _ in range(math.ceil(bs / n))]
            self._order = torch.cat([self._order, *more])
        idx, self._order = self._order[:bs], self._order[bs:]
        return idx[self.rank :: self.world]

    def _inputs(self, x: Tensor, augment: bool = False) -> Tensor:
        x = self.data.normalize(x)
        if augment:
            x = _augment(x, self._aug)
        return x.contiguous(memory_format=self.memory_format)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp)

    def step(self) -> None:
        """One SGD step of every model on the same mini-batch."""
        idx = self._next_indices().to(self.device)
        x = self._inputs(self.x_train[idx], augment=self.config.augment)
        sgd_step(
            self.members,
            x,
            self.y_train[idx],
            step=self.step_index + 1,
            lr=self.config.lr_at(self.step_index),
            autocast=self.amp,
            distributed=self.distributed,
        )
        self.step_index += 1
        self._snapshot()
        if self.step_index % self.config.eval_every == 0 or self.done:
            self.evaluate()

    @torch.no_grad()
    def error_rate(self, model: nn.Module, x: Tensor, y: Tensor, batch: int = 512) -> float:
        """Top-1 error of ``model`` (eval mode) on uint8 images ``x``."""
        model.eval()
        wrong = 0
        for i in range(0, len(y), batch):
            with self._autocast():
                logits = model(self._inputs(x[i : i + batch]))
            wrong += int((logits.argmax(1) != y[i : i + batch]).sum())
        return wrong / max(len(y), 1)

    def evaluate(self) -> None:
        """Record training-set and held-out error of every model at the current step."""
        for m in self.members:
            if m.history.eval_steps and m.history.eval_steps[-1] == self.step_index:
                continue
            # Every process evaluates the same bare model (no collectives): nothing to deadlock on.
            m.history.eval_steps.append(self.step_index)
            m.history.train_error.append(
                self.error_rate(m.model, self.x_train[self.train_probe], self.y_train[self.train_probe])
            )
            m.history.test_error.append(self.error_rate(m.model, self.x_test, self.y_test))

    @property
    def diverged(self) -> list[Member]:
        return [m for m in self.members if m.diverged_at is not None]

    def run(self, callback: Callback | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        """Train to ``config.steps`` (or until ``should_stop()``, or until every model diverged),
        calling ``callback`` after each step."""
        while not self.done and len(self.diverged) < len(self.members):
            if should_stop is not None and should_stop():
                break
            self.step()
            if callback is not None:
                callback(self)
        if self.step_index:
            self.evaluate()  # a stopped run still gets its last point (evaluate skips a repeat)

    def curves(self) -> dict[str, TrainingCurves]:
        return {m.name: _curves(m) for m in self.members}

    def results(self) -> list[TrainedModel]:
        """The trained models (moved to the CPU, eval mode) and their curves."""
        out = []
        for m in self.members:
            model = plain_batchnorm(m.model).to("cpu", memory_format=torch.contiguous_format).eval()
            out.append(
                TrainedModel(
                    m.name,
                    model,
                    _curves(m),
                    self.config,
                    self.data.name,
                    self.data.class_names,
                    self.data.preprocessing.to_dict(),
                    self.step_index,
                    snapshots={step: models[m.name] for step, models in self.snapshots.items()},
                )
            )
        return out


def _curves(m: Member) -> TrainingCurves:
    h, cfg = m.history, m.model.config
    return TrainingCurves(
        m.name,
        not cfg.skip,
        cfg.depth,
        np.array(h.steps, dtype=np.int64),
        np.array(h.loss),
        np.array(h.batch_error),
        np.array(h.seconds),
        np.array(h.eval_steps, dtype=np.int64),
        np.array(h.train_error),
        np.array(h.test_error),
        diverged_at=m.diverged_at,
    )


def train(
    config: TrainConfig,
    *,
    dataset: ImageDataset | None = None,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[TrainedModel]:
    """Train every model of ``config`` and return them with their curves."""
    trainer = Trainer(config, dataset)
    trainer.run(callback, should_stop)
    return trainer.results()


# --------------------------------------------------------------------------- augmentation


def _augment(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """The paper's augmentation: pad by 4, take a random crop of the original size, flip half."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen).to(x.device)
    rows = (oy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows,
        cols,
    ]
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, out.flip(3), out)
