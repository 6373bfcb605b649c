"""What every attribution method shares: the method names, results, and the checks and glue.

:class:`AttributionResult` and :class:`Prediction` are frozen dataclasses of CPU numpy arrays; the
helpers check inputs and targets, name classes, normalize and upsample maps, and put a shared model
in eval mode under its lock. The methods live in :mod:`resviz.analysis.grad_cam` (the one-pass
Grad-CAM) and :mod:`resviz.analysis.attribution` (captum's companions and :func:`attribute`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from resviz.analysis.methods import BASELINES, LAYER_METHODS, METHODS  # noqa: F401 (re-exported)
from resviz.device import model_device
from resviz.errors import ResvizError
from resviz.hooks import model_lock, preserve_model_state
from resviz.models.resnet import ResNet

TOP_K = 5

ClassNamer = Callable[[int], str]


class AttributionError(ResvizError, ValueError):
    """A method, target class or input that attribution cannot use."""


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of each image, from the same forward pass as the attribution.

    Attributes:
        indices: ``(N, k)`` int64 class indices, most probable first.
        probs: ``(N, k)`` float32 softmax probabilities.
        labels: ``N`` tuples of ``k`` class names (or ``"class i"`` without names).
    """

    indices: np.ndarray
    probs: np.ndarray
    labels: tuple[tuple[str, ...], ...]

    @property
    def top1(self) -> np.ndarray:
        """``(N,)`` the predicted class of each image."""
        return self.indices[:, 0]


@dataclass(frozen=True)
class AttributionResult:
    """Attribution maps for a batch of images.

    Attributes:
        method: a key of :data:`METHODS`.
        layer: the layer a Grad-CAM method attributes to; ``None`` for input methods.
        maps: ``(N, H, W)`` float32 in ``[0, 1]`` at the input resolution, ready to overlay.
        raw: the method's own output before reduction and normalization: for Grad-CAM the
            gradient-weighted channel sum ``(N, h, w)`` at the layer's resolution (before the ReLU);
            for the input methods ``(N, C, H, W)``.
        targets: ``(N,)`` int64 the class each map explains.
        target_labels: ``N`` class names of ``targets``.
        prediction: the model's top-k for each image.
        completeness: Integrated Gradients only: ``(N,)`` captum's convergence delta (the sum of
            the attributions against ``f(x) - f(baseline)``) as a percent of ``|f(x) - f(baseline)|``.
    """

    method: str
    layer: str | None
    maps: np.ndarray
    raw: np.ndarray
    targets: np.ndarray
    target_labels: tuple[str, ...]
    prediction: Prediction
    completeness: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def to_npz(self) -> bytes:
        """The maps, raw attributions, targets and top-k as a compressed ``.npz`` file."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            maps=self.maps,
            raw=self.raw,
            targets=self.targets,
            target_labels=np.array(self.target_labels),
            top_indices=self.prediction.indices,
            top_probs=self.prediction.probs,
            method=np.array(self.method),
            layer=np.array(self.layer or ""),
            **({} if self.completeness is None else {"completeness_percent": self.completeness}),
        )
        return buf.getvalue()


# --------------------------------------------------------------------------- helpers


def default_layer(model: nn.Module) -> str:
    """The last stage (``layer4`` for ImageNet ResNets, ``layer3`` for CIFAR ones).

    Any other classifier gets its last convolution.
    """
    if isinstance(model, ResNet):
        return model.feature_info[-1].name
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise AttributionError("The model has no convolutional layer for Grad-CAM.")
    return convs[-1]


def layer_choices(model: nn.Module) -> list[str]:
    """Layers Grad-CAM can use, coarse to fine: stages, blocks, then every other spatial module."""
    info = model.feature_info if isinstance(model, ResNet) else ()
    stages = [s.name for s in info]
    blocks = [b for s in info for b in s.blocks]
    skip = {"", "fc", "avgpool", *stages, *blocks}
    modules = dict(model.named_modules())

    def unused(name: str) -> bool:  # a plain block's shortcut tap never runs
        parent = modules.get(name.rpartition(".")[0])
        return name.endswith("shortcut_out") and not getattr(parent, "skip", True)

    rest = [
        n
        for n, m in modules.items()
        if n not in skip
        and not unused(n)
        and not isinstance(m, nn.Sequential | nn.Linear | nn.AdaptiveAvgPool2d)
    ]
    return [*stages, *blocks, *rest]


def _class_namer(class_name: ClassNamer | Sequence[str] | None) -> ClassNamer:
    if class_name is None:
        return lambda i: f"class {i}"
    if callable(class_name):
        return class_name
    names = tuple(class_name)
    return lambda i: names[i] if 0 <= i < len(names) else f"class {i}"


def _check_input(model: nn.Module, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise AttributionError(f"Expected a batch of images shaped (N, C, H, W), got {shape}.")
    channels = getattr(getattr(model, "config", None), "in_channels", x.shape[1])
    if x.shape[1] != channels:
        raise AttributionError(f"The model takes {channels}-channel images; this batch has {x.shape[1]}.")
    if x.shape[0] == 0:
        raise AttributionError("No images to attribute.")
    return x.detach().to(model_device(model), torch.float32)


def _num_classes(model: nn.Module, logits: Tensor | None = None) -> int:
    cfg = getattr(model, "config", None)
    if cfg is not None:
        return int(cfg.num_classes)
    if logits is not None:
        return int(logits.shape[1])
    raise AttributionError("Cannot tell how many classes the model has.")


def _targets(target: int | Sequence[int] | None, logits: Tensor) -> Tensor:
    """``(N,)`` the class to explain per image: the argmax of ``logits`` where ``target`` is None."""
    n, classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor([target] * n if isinstance(target, int | np.integer) else list(target))
    if t.ndim != 1 or t.numel() != n:
        raise AttributionError(f"Give one target class, or one per image ({n}); got {t.numel()}.")
    bad = t[(t < 0) | (t >= classes)]
    if bad.numel():
        raise AttributionError(
            f"Class {int(bad[0])} does not exist: this model has classes 0 to {classes - 1}."
        )
    return t.to(device=logits.device, dtype=torch.long)


def _prediction(logits: Tensor, namer: ClassNamer, k: int = TOP_K) -> Prediction:
    probs = logits.detach().float().softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    indices = top.indices.cpu().numpy().astype(np.int64)
    return Prediction(
        indices=indices,
        probs=top.values.cpu().numpy().astype(np.float32),
        labels=tuple(tuple(namer(int(i)) for i in row) for row in indices),
    )


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max scale each map of ``(N, H, W)`` to ``[0, 1]``; a constant map becomes zeros."""
    lo, hi = torch.aminmax(maps.flatten(1), dim=1)  # one pass over the maps, not two
    lo, span = lo.view(-1, 1, 1), (hi - lo).view(-1, 1, 1)
    return maps.sub(lo).div_(span.clamp_min(1e-12)).mul_(span > 1e-12)


@contextmanager
def _analysis_mode(model: nn.Module) -> Iterator[None]:
    """Hold the model's lock and make sure it is in eval mode, restoring any module's mode after.

    A cached model is already in eval mode, so the common case only checks that, which is far
    cheaper than saving and restoring every module's mode.
    """
    with model_lock(model):
        if any(m.training for m in model.modules()):
            with preserve_model_state(model):
                yield
        else:
            yield


def _upsample(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, 1, h, w)`` -> ``(N, 1, H, W)`` with captum's interpolation (bilinear)."""
    from captum.attr import LayerAttribution

    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")
