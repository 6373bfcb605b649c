"""Reproducible batches for the gradient analyses: random inputs, the sample photos, or digits.

A batch is described by :class:`BatchSettings` (hashable: it keys a page's cache) and made by
:func:`make_batch`; :func:`loaded_batch` picks a batch that fits a loaded model (its run's own
held-out images where that is cheap).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from resviz.errors import ConfigError, ResvizError

if TYPE_CHECKING:
    from resviz.models.weights import LoadedModel

BatchSource = Literal["random", "samples", "digits"]
LabelKind = Literal["random", "true"]

# Short labels (they fit a narrow select box); BATCH_SOURCE_DETAILS says what each one is.
BATCH_SOURCES: dict[str, str] = {
    "random": "random noise",
    "samples": "sample photos",
    "digits": "handwritten digits",
}
BATCH_SOURCE_DETAILS: dict[str, str] = {
    "random": "standard normal pixels",
    "samples": "the built-in sample images, randomly cropped and flipped",
    "digits": "scikit-learn's 8x8 handwritten digits, upsampled, 10 classes",
}
LABEL_KINDS: dict[str, str] = {
    "random": "cross-entropy to random labels",
    "true": "cross-entropy to the true labels (digits only)",
}


@dataclass(frozen=True)
class BatchSettings:
    """Where a batch comes from and what the loss compares the logits with."""

    source: BatchSource = "random"
    labels: LabelKind = "random"
    batch_size: int = 32
    image_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in BATCH_SOURCES:
            raise ConfigError(f"Batch source must be one of {list(BATCH_SOURCES)}, not {self.source!r}.")
        if self.labels not in LABEL_KINDS:
            raise ConfigError(f"Labels must be one of {list(LABEL_KINDS)}, not {self.labels!r}.")
        if self.labels == "true" and self.source != "digits":
            raise ConfigError(
                "Only the digits dataset has true labels; pick it as the batch source, or random labels."
            )
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"Batch size must be between 1 and 1024, not {self.batch_size}.")
        if not 8 <= self.image_size <= 512:
            raise ConfigError(f"Input size must be between 8 and 512 pixels, not {self.image_size}.")


def make_batch(
    settings: BatchSettings, *, in_channels: int = 3, num_classes: int = 10, step: int = 0
) -> tuple[Tensor, Tensor]:
    """A reproducible batch and its targets, on the CPU.

    Args:
        settings: source, labels, size and seed.
        in_channels: channels the model expects.
        num_classes: random labels are drawn from ``[0, num_classes)``.
        step: varies the draw (a new minibatch per training step); 0 for the analysis batch.

    Returns:
        inputs ``(N, in_channels, S, S)`` float32 and targets ``(N,)`` int64.
    """
    gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
    n, size = settings.batch_size, settings.image_size
    if settings.source == "random":
        x = torch.randn(n, in_channels, size, size, generator=gen)
        y = None
    elif settings.source == "digits":
        images, labels = _digits()
        idx = torch.randint(len(labels), (n,), generator=gen)
        x = F.interpolate(images[idx], size=(size, size), mode="bilinear", align_corners=False)
        x = x.expand(-1, in_channels, -1, -1).contiguous()
        y = labels[idx]
    else:
        x = _sample_batch(n, size, in_channels, gen)
        y = None
    if settings.labels == "true":
        if y is None:  # BatchSettings refuses this; kept for callers that bypass it
            raise ConfigError("Only the digits dataset has true labels.")
        if int(y.max()) >= num_classes:
            raise ConfigError(f"The digits have 10 classes; the model has only {num_classes} outputs.")
        return x, y
    return x, torch.randint(num_classes, (n,), generator=gen)


@lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor]:
    """Every one of :func:`resviz.datasets.digits`' images, ``(1797, 1, 8, 8)`` standardised to mean
    0 and standard deviation 1 over the set, and their labels ``(1797,)``."""
    from resviz.datasets import digits

    data = digits()
    x = torch.cat([data.x_train, data.x_test]).float()
    x = (x - x.mean()) / x.std()
    return x, torch.cat([data.y_train, data.y_test])


def _sample_batch(n: int, size: int, channels: int, gen: torch.Generator) -> Tensor:
    """``n`` random crops (with flips) of the built-in sample images, ``(n, channels, size, size)``."""
    try:
        from resviz.images import load_sample, sample_images
    except ImportError as exc:  # pragma: no cover - images.py ships with the app
        raise ResvizError("The built-in sample images are not available in this install.") from exc
    from resviz.preprocessing import CIFAR, Preprocessing

    names = [getattr(s, "name", s) for s in sample_images()]
    if not names:
        raise ResvizError("No built-in sample images were found; pick another batch source.")
    # Resize a little larger than the input so random crops differ from one another.
    pre = Preprocessing(int(size * 1.25), int(size * 1.25), CIFAR.mean, CIFAR.std)
    if channels != 3:
        pre = Preprocessing(pre.resize, pre.crop, CIFAR.mean[:1], CIFAR.std[:1], channels=1)
    full = pre.tensor([load_sample(name).image for name in names])  # (K, C, 1.25S, 1.25S)
    pick = torch.randint(len(names), (n,), generator=gen)
    offsets = torch.randint(full.shape[-1] - size + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    crops = []
    for k, (i, j), flip in zip(pick.tolist(), offsets.tolist(), flips.tolist()):
        crop = full[k, :, i : i + size, j : j + size]
        crops.append(crop.flip(-1) if flip else crop)
    return torch.stack(crops)


def loaded_batch(loaded: LoadedModel, n: int, seed: int) -> tuple[Tensor, Tensor, str]:
    """A batch that fits ``loaded``: its run's own held-out images when cheap, else random."""
    pre, cfg = loaded.preprocessing, loaded.config
    channels, size = int(pre.channels), int(pre.crop)
    meta = loaded.metadata if loaded.weights == "run" else {}
    dataset = meta.get("dataset")
    if dataset in ("shapes", "digits"):  # built in: a few images are generated or read in a moment
        from resviz.datasets import load_dataset

        tc = meta.get("train_config") or {}
        data = load_dataset(
            str(dataset),
            seed=int(tc.get("data_seed", 0)),  # type: ignore[union-attr]
            size=tc.get("size"),  # type: ignore[union-attr]
            n_train=64 if dataset == "shapes" else None,
            n_test=n if dataset == "shapes" else None,
        )
        x, y = data.x_test[:n], data.y_test[:n]
        if x.shape[1:] == (channels, size, size) and int(y.max()) < cfg.num_classes:
            return data.normalize(x), y, f"{len(y)} held-out {dataset} images with their true labels"
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=gen)
    y = torch.randint(cfg.num_classes, (n,), generator=gen)
    return x, y, f"{n} random inputs ({channels}x{size}x{size}) with random labels"
