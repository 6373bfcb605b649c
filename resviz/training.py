"""Train plain and residual networks side by side: the degradation experiment of He et al. 2015.

Fig. 1 and Fig. 6 of https://arxiv.org/abs/1512.03385: a deeper *plain* network has a higher
*training* error than a shallower one, while the residual network of the same depth does not. The
:class:`Trainer` steps every model on the same mini-batch, one step at a time, so a page can draw
all the curves as they grow; :class:`TrainingJob` runs a trainer on a background thread with a
stop flag that keeps what was trained so far.

The recipe is the paper's (section 4.2): SGD, momentum 0.9, weight decay 1e-4, a short warm-up and
the learning rate divided by 10 at 50% and 75% of the steps. Runs are seeded and repeatable: each
model is built from its seed, and the batches come from a generator of their own. Each run builds
its own models, so nothing here ever touches a model that the app shares between sessions.

Under ``torchrun`` the trainer uses DistributedDataParallel: each process takes an equal slice of
the same global batch, and BatchNorm statistics are reduced over all processes, so two processes
compute what one would (to floating-point tolerance).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.datasets import ImageDataset, load_dataset
from resviz.device import oom_guard, resolve_device
from resviz.errors import ConfigError, ResvizError
from resviz.models import create_model, get_config

if TYPE_CHECKING:
    from resviz.models.resnet import ResNet

DEFAULT_MODELS: tuple[str, ...] = ("plain20", "plain56", "resnet20", "resnet56")

# The paper's CIFAR-10 test errors (He et al. 2015, Table 6), for reference beside our curves.
PAPER_CIFAR10_TEST_ERROR: dict[str, float] = {
    "resnet20": 8.75,
    "resnet32": 7.51,
    "resnet44": 7.17,
    "resnet56": 6.97,
    "resnet110": 6.43,
    "resnet1202": 7.93,
}


@dataclass(frozen=True)
class TrainConfig:
    """One training experiment: the data, the models and the recipe."""

    dataset: str = "digits"  # a name of resviz.datasets.DATASETS
    models: tuple[str, ...] = DEFAULT_MODELS  # registered names; any CIFAR depth 6n+2 as resnetN/plainN
    steps: int = 300  # SGD steps (mini-batches) per model
    batch_size: int = 128  # the global batch, split evenly between processes under torchrun
    lr: float = 0.02  # peak learning rate (the paper: 0.1 at batch 128 on CIFAR-10)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup: float = 0.05  # share of the steps over which the learning rate ramps up linearly
    milestones: tuple[float, ...] = (0.5, 0.75)  # shares of the steps where the rate is divided by 10
    widths: tuple[int, ...] | None = None  # stage widths; None keeps the paper's 16/32/64
    seed: int = 0  # model initialization and batch order
    data_seed: int = 0  # the shapes generator and the digits split
    n_train: int | None = None  # training images (None: the dataset's default)
    size: int | None = None  # image side for shapes / folder (None: the dataset's default)
    augment: bool = False  # the paper's 4-pixel padding + random crop + horizontal flip
    eval_every: int = 15  # steps between evaluations of training and held-out error
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast, on CUDA only
    channels_last: bool = True  # on CUDA only
    data_root: str | None = None  # the ImageFolder, or where CIFAR-10/MNIST live
    download: bool = False  # let torchvision download CIFAR-10/MNIST

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if self.widths is not None:
            object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.models:
            raise ConfigError("Choose at least one model to train.")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"A model is listed twice in {list(self.models)}.")
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ConfigError("steps, batch size and evaluation interval must be positive.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"The learning rate must be a positive number, not {self.lr}.")
        if not 0 <= self.warmup < 1:
            raise ConfigError("warm-up is a share of the steps, between 0 and 1.")
        for name in self.models:
            get_config(name)  # unknown names fail now, with the list of choices

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): linear warm-up, then step decay."""
        warm = self.warmup * self.steps
        factor = min(1.0, (step + 1) / warm) if warm >= 1 else 1.0
        decays = sum(step >= m * self.steps for m in self.milestones)
        return self.lr * factor * 0.1**decays

    def replace(self, **changes: object) -> TrainConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        for key in ("models", "milestones", "widths"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


# Measured here (bench/bench_training.py, seeds 0 and 1): plain-56 ends at 29.4% and 30.3% training
# error while plain-20, ResNet-20 and ResNet-56 reach 0.0%; all four models take about 1 minute on
# 2 cores (54-56 s with 2 threads on a quiet machine, 82-85 s with 1 thread under load).
CPU_DEFAULT = TrainConfig()
# The shapes at 16x16 with narrower stages, measured the same way: plain-56 78.2% / 76.4% training
# error, plain-20 37.7% / 27.6%, ResNet-20 0.0% / 0.0%, ResNet-56 0.1% / 0.2%, in 172 s / 185 s.
SHAPES_DEFAULT = TrainConfig(dataset="shapes", steps=400, lr=0.05, widths=(8, 16, 32), eval_every=20)
# Section 4.2 of the paper: CIFAR-10, batch 128, lr 0.1, /10 at 32k and 48k, stop at 64k, augmented.
PAPER_SCALE = TrainConfig(
    dataset="cifar10",
    models=("plain20", "plain56", "resnet20", "resnet56", "resnet110"),
    steps=64_000,
    lr=0.1,
    warmup=0.00625,
    augment=True,
    eval_every=500,
    download=True,
)
PRESETS: dict[str, TrainConfig] = {"cpu": CPU_DEFAULT, "shapes": SHAPES_DEFAULT, "paper": PAPER_SCALE}


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
class _History:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    batch_error: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)


@dataclass
class _Member:
    name: str
    model: ResNet  # the bare model (DDP wraps it in ``net`` under torchrun)
    net: nn.Module
    optimizer: torch.optim.Optimizer
    history: _History = field(default_factory=_History)
    diverged_at: int | None = None  # set when its loss became non-finite: no more updates

    def curves(self) -> TrainingCurves:
        h = self.history
        cfg = self.model.config
        return TrainingCurves(
            self.name,
            not cfg.skip,
            cfg.depth,
            np.array(h.steps, dtype=np.int64),
            np.array(h.loss),
            np.array(h.batch_error),
            np.array(h.seconds),
            np.array(h.eval_steps, dtype=np.int64),
            np.array(h.train_error),
            np.array(h.test_error),
            diverged_at=self.diverged_at,
        )


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

    def _build(self, name: str) -> _Member:
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
            net = _ddp(model, self.device)
        # Weight decay on every parameter, BatchNorm's included, as in the paper's recipe.
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr_at(0), momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        return _Member(name, model, net, optimizer)

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
        y = self.y_train[idx]
        lr = self.config.lr_at(self.step_index)
        for m in self.members:
            if m.diverged_at is not None:
                continue  # it stays where it diverged; the others train on
            start = time.perf_counter()
            for group in m.optimizer.param_groups:
                group["lr"] = lr
            m.net.train()
            with (
                oom_guard(f"Training {m.name}"),
                torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp),
            ):
                logits = m.net(x)
                loss = F.cross_entropy(logits.float(), y)
            m.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            wrong = (logits.argmax(1) != y).sum().float()
            count = torch.tensor(float(len(y)), device=self.device)
            stats = torch.stack([loss.detach().float() * len(y), wrong, count])
            if self.distributed:
                torch.distributed.all_reduce(stats)  # every process sees the same verdict below
            total_loss, wrong, n = stats.tolist()
            if not math.isfinite(total_loss):
                # One diverged model must not throw away the run: mark it, keep its last finite
                # weights (no step on a NaN gradient), and let the others go on and be saved.
                m.diverged_at = self.step_index + 1
                m.optimizer.zero_grad(set_to_none=True)
                continue
            m.optimizer.step()
            h = m.history
            h.steps.append(self.step_index + 1)
            h.loss.append(total_loss / n)
            h.batch_error.append(wrong / n)
            h.seconds.append((h.seconds[-1] if h.seconds else 0.0) + time.perf_counter() - start)
        self.step_index += 1
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
    def diverged(self) -> list[_Member]:
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
        return {m.name: m.curves() for m in self.members}

    def results(self) -> list[TrainedModel]:
        """The trained models (moved to the CPU, eval mode) and their curves."""
        out = []
        for m in self.members:
            model = _plain_batchnorm(m.model).to("cpu", memory_format=torch.contiguous_format).eval()
            out.append(
                TrainedModel(
                    m.name,
                    model,
                    m.curves(),
                    self.config,
                    self.data.name,
                    self.data.class_names,
                    self.data.preprocessing.to_dict(),
                    self.step_index,
                )
            )
        return out


class TrainingDivergedError(ResvizError, RuntimeError):
    """The loss became NaN or infinite (kept for callers; :class:`Trainer` now marks the model)."""


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


# --------------------------------------------------------------------------- distributed


class _GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the whole global batch, on any device.

    ``nn.SyncBatchNorm`` does this on GPUs only; this version reduces the per-channel sums with a
    differentiable all-reduce, which Gloo runs on CPUs. It keeps BatchNorm2d's parameter names.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = torch.tensor([x.numel() / c], device=x.device, dtype=x.dtype)
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)


def _swap_batchnorm(module: nn.Module, cls: type[nn.BatchNorm2d]) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and type(child) is not cls:
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(child.weight.device)
            setattr(module, name, new)
        else:
            _swap_batchnorm(child, cls)
    return module


def _ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index or 0])
    return DistributedDataParallel(_swap_batchnorm(model, _GlobalBatchNorm2d))


def _plain_batchnorm(model: nn.Module) -> nn.Module:
    """Put ordinary BatchNorm2d back after distributed training (same parameters and buffers)."""
    swapped = any(isinstance(m, _GlobalBatchNorm2d | nn.SyncBatchNorm) for m in model.modules())
    if not swapped:
        return model
    for name, child in list(model.named_children()):
        if isinstance(child, _GlobalBatchNorm2d | nn.SyncBatchNorm):
            new = nn.BatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.load_state_dict(child.state_dict())
            setattr(model, name, new.to(child.weight.device))
        else:
            _plain_batchnorm(child)
    return model


# --------------------------------------------------------------------------- Grad-CAM pointing game


def pointing_game(
    model: nn.Module, data: ImageDataset, *, layer: str | None = None, limit: int = 300, batch: int = 100
) -> float:
    """Share of held-out images whose Grad-CAM peak (for the true class) lies inside the object mask.

    Grad-CAM is :func:`resviz.analysis.attribution.grad_cam` (it holds the model's lock and removes
    its hooks). An all-zero map (no positive evidence anywhere) counts as a miss.
    """
    from resviz.analysis.attribution import grad_cam

    if data.masks_test is None:
        raise ResvizError(f"The {data.name} dataset has no object masks; the pointing game needs shapes.")
    layer = layer or getattr(model, "stage_names", ["layer3"])[-1]
    device = next(model.parameters()).device
    hits = 0
    n = min(limit, len(data.y_test))
    for i in range(0, n, batch):
        x = data.normalize(data.x_test[i : min(i + batch, n)].to(device))
        y = data.y_test[i : min(i + batch, n)].to(device)
        maps = torch.from_numpy(grad_cam(model, x, layer, target=y.tolist()).maps)
        flat = maps.flatten(1)
        peak = flat.argmax(1)
        masks = data.masks_test[i : min(i + batch, n)].flatten(1)
        hit = masks[torch.arange(len(peak)), peak] & (flat.amax(1) > 0)
        hits += int(hit.sum())
    return hits / max(n, 1)


# --------------------------------------------------------------------------- a background job


class TrainingJob:
    """Train on a background thread; the page polls :meth:`snapshot` and may :meth:`stop` it.

    The thread owns the trainer. What it publishes (curves, progress, results) is replaced whole
    under a lock, so a reader never sees a half-written list. A stopped job keeps what was trained
    and saves it like a finished one.

    Args:
        config: the experiment.
        dataset: an already loaded dataset (else ``config.dataset`` is loaded on the thread).
        runs_dir: save every trained model there when training ends (None: do not save).
        pointing_game: score Grad-CAM against the object masks when the dataset has them.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        dataset: ImageDataset | None = None,
        runs_dir: str | Path | None = None,
        pointing_game: bool = True,
    ) -> None:
        self.config = config
        self._dataset = dataset
        self._runs_dir = runs_dir
        self._pointing = pointing_game
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="resviz-training", daemon=True)
        self._curves: dict[str, TrainingCurves] = {}
        self.step = 0
        self.status = (
            "waiting"  # waiting | loading | training | evaluating | saving | done | stopped | failed
        )
        self.error: str | None = None
        self.results: list[TrainedModel] = []
        self.saved: list[Path] = []
        self.started_at = 0.0
        self.elapsed = 0.0
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT
        self.abandoned = False  # stopped because nobody polled it for heartbeat_timeout seconds
        self._beat = time.monotonic()

    def start(self) -> TrainingJob:
        self.started_at = time.perf_counter()
        self.heartbeat()
        self._thread.start()
        return self

    def heartbeat(self) -> None:
        """Say someone is still watching; a job nobody watches for ``heartbeat_timeout`` s stops."""
        self._beat = time.monotonic()

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        if time.monotonic() - self._beat > self.heartbeat_timeout:
            self.abandoned = True
            self._stop.set()
            return True
        return False

    def stop(self) -> None:
        """Ask the thread to stop after the current step; what was trained is kept and saved."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "failed")

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.config.steps)

    def snapshot(self) -> dict[str, TrainingCurves]:
        with self._lock:
            return dict(self._curves)

    def _publish(self, trainer: Trainer) -> None:
        # Curves are copied every few steps only: copying is cheap but not free for long runs.
        if trainer.step_index % max(1, trainer.config.steps // 200) and not trainer.done:
            self.step = trainer.step_index
            return
        curves = trainer.curves()
        with self._lock:
            self._curves = curves
            self.step = trainer.step_index
            self.elapsed = time.perf_counter() - self.started_at

    def _main(self) -> None:
        try:
            self.status = "loading"
            trainer = Trainer(self.config, self._dataset)
            self.status = "training"
            trainer.run(self._publish, self._should_stop)
            self._publish(trainer)
            with self._lock:
                self._curves = trainer.curves()
            results = trainer.results()
            if self._pointing and trainer.data.masks_test is not None:
                self.status = "evaluating"
                for r in results:
                    r.pointing_game = pointing_game(r.model, trainer.data)
            if self._runs_dir is not None:
                self.status = "saving"
                from resviz.runs import save_run

                self.saved = [save_run(r, self._runs_dir) for r in results]
            self.results = results
            self.status = (
                "stopped" if self._stop.is_set() and trainer.step_index < self.config.steps else "done"
            )
        except ResvizError as exc:
            self.error = str(exc)
            self.status = "failed"
        except Exception as exc:  # a bug: say what, rather than dying silently on a thread
            self.error = f"Training failed unexpectedly: {type(exc).__name__}: {exc}"
            self.status = "failed"
        finally:
            self.elapsed = time.perf_counter() - self.started_at


# One job at a time per process on the CPU: two would halve each other's speed, and a job started
# by a session that reloaded would otherwise train on, unseen, beside the new one.
HEARTBEAT_TIMEOUT = 60.0  # seconds without a heartbeat after which a job stops (and saves)
_JOBS: list[TrainingJob] = []
_JOBS_LOCK = threading.Lock()


class JobRunningError(ResvizError):
    """A training job is already running in this process on the CPU."""

    def __init__(self, job: TrainingJob) -> None:
        super().__init__(
            f"A run is already going (step {job.step} of {job.config.steps}); stop it or wait for it."
        )
        self.job = job


def running_job() -> TrainingJob | None:
    """The job running in this process, if any (the newest when several run on GPUs)."""
    with _JOBS_LOCK:
        _JOBS[:] = [j for j in _JOBS if j.running]
        return _JOBS[-1] if _JOBS else None


def start_job(
    config: TrainConfig,
    *,
    dataset: ImageDataset | None = None,
    runs_dir: str | Path | None = None,
    pointing_game: bool = True,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
) -> TrainingJob:
    """Start a :class:`TrainingJob` in the process-wide registry.

    Raises:
        JobRunningError: a job already runs on the CPU and this one would too (it carries that job).
    """
    with _JOBS_LOCK:
        _JOBS[:] = [j for j in _JOBS if j.running]
        on_cpu = resolve_device(config.device).type == "cpu"
        busy = [j for j in _JOBS if on_cpu or resolve_device(j.config.device).type == "cpu"]
        if busy:
            raise JobRunningError(busy[-1])
        job = TrainingJob(config, dataset=dataset, runs_dir=runs_dir, pointing_game=pointing_game)
        job.heartbeat_timeout = heartbeat_timeout
        _JOBS.append(job.start())
        return job


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
