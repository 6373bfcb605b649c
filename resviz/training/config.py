"""What a training experiment is: the data, the models and the recipe, and the named presets.

The recipe is the paper's (He et al. 2015, section 4.2, https://arxiv.org/abs/1512.03385): SGD,
momentum 0.9, weight decay 1e-4, a short warm-up and the learning rate divided by 10 at 50% and 75%
of the steps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from resviz.errors import ConfigError
from resviz.models import get_config

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
    n_test: int | None = None  # held-out images (None: the dataset's default)
    size: int | None = None  # image side for shapes / folder (None: the dataset's default)
    augment: bool = False  # the paper's 4-pixel padding + random crop + horizontal flip
    eval_every: int = 15  # steps between evaluations of training and held-out error
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast, on CUDA only
    channels_last: bool = True  # on CUDA only
    data_root: str | None = None  # the ImageFolder, or where CIFAR-10/MNIST live
    download: bool = False  # let torchvision download CIFAR-10/MNIST
    snapshots: tuple[int, ...] = ()  # steps (0: the initialization) at which to keep a copy of the weights

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        object.__setattr__(self, "snapshots", tuple(sorted({int(s) for s in self.snapshots})))
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
        for key in ("models", "milestones", "widths", "snapshots"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


# What each preset gives (training errors, time) is measured by bench/bench_training.py and quoted
# in the README; the presets are chosen so that the degradation problem shows within minutes.
CPU_DEFAULT = TrainConfig()
# The shapes at 16x16 with narrower stages: they carry object masks, for the pointing game.
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
# The bundled demo group (`make demo-weights`): the degradation problem as in He et al.'s Figure 6, on
# 32x32 shapes (the last stage's Grad-CAM map is 8x8). The paper's recipe (SGD, momentum 0.9, weight
# decay 1e-4, batch 128, BatchNorm, He init, no dropout, rate /10 at 50% and 75%) with narrow stages
# (8/16/32, for 2 CPU cores) and a peak rate of 0.02: at the paper's 0.1, even after its ResNet-110
# warm-up (0.01 first), plain-56 was still at 75% training error after 800 steps, where plain-20 had
# trained; at 0.02 it trains, more slowly than plain-20. 32,000 generated images (8 epochs) keep the
# held-out error near the training error without augmentation.
DEMO = TrainConfig(
    dataset="shapes",
    steps=2000,
    lr=0.02,
    warmup=0.02,
    widths=(8, 16, 32),
    size=32,
    n_train=32_000,
    n_test=1000,
    eval_every=100,
    snapshots=(0, 100, 500, 1000),
)
PRESETS: dict[str, TrainConfig] = {
    "cpu": CPU_DEFAULT,
    "shapes": SHAPES_DEFAULT,
    "demo": DEMO,
    "paper": PAPER_SCALE,
}
