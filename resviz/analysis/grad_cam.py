"""Grad-CAM in one forward and one backward pass, with the top-k prediction from the same pass.

Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391): the forward runs without
autograd up to the target layer; a forward hook detaches the layer's output, marks it as requiring
grad and switches autograd on, so the graph starts there. The predicted class is read from the same
forward's logits, and ``torch.autograd.grad`` asks only for the layer's gradient, so autograd never
walks below it. Captum's ``LayerGradCam`` is the reference it is tested against
(:func:`captum_grad_cam`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.analysis.attribution_core import (
    TOP_K,
    AttributionError,
    AttributionResult,
    ClassNamer,
    _analysis_mode,
    _check_input,
    _class_namer,
    _prediction,
    _targets,
    _upsample,
    default_layer,
    normalize_maps,
)
from resviz.device import oom_guard
from resviz.errors import LayerNotUsedError
from resviz.hooks import forward_hooks, resolve_layers

if TYPE_CHECKING:
    pass


def grad_cam_layers(
    model: nn.Module,
    x: Tensor,
    layers: Sequence[str],
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> dict[str, AttributionResult]:
    """Grad-CAM at several layers and the top-k prediction from one forward and one backward.

    The map is ``ReLU(sum_c alpha_c * A_c)`` with ``alpha_c`` the spatial mean of
    ``d y_target / d A_c``, upsampled bilinearly to the input and scaled to ``[0, 1]`` per image.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        layers: dotted module names, e.g. ``["layer3", "layer4.1.conv2"]``.
        target: the class to explain, one for all or one per image; ``None``: the predicted class.
        class_name: a function or sequence giving class names for the labels.
        top_k: how many classes the prediction keeps.

    Returns:
        One :class:`AttributionResult` per layer, all sharing the same prediction and targets.

    Raises:
        LayerNotFoundError: a name the model does not have.
        LayerNotUsedError: a layer the forward pass never runs (a plain block's shortcut tap).
        AttributionError: a bad input or target, or a layer without spatial output.
    """
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise AttributionError("Choose at least one layer for Grad-CAM.")
    resolve_layers(model, layers)  # a bad name fails before the input is checked or moved
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    acts: dict[str, Tensor] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor | None:
            if not isinstance(output, Tensor):
                return None
            if not output.requires_grad:
                # The first hooked layer reached: the graph starts here, so the backward pass
                # cannot go below it and nothing below it keeps activations for autograd.
                output = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)  # undone when the enclosing no_grad block exits
            acts[name] = output
            return output

        return hook

    with _analysis_mode(model), oom_guard("Grad-CAM"), torch.no_grad():
        with forward_hooks(model, {name: make_hook(name) for name in layers}):
            logits = model(x)
        missing = [n for n in layers if n not in acts]
        if missing:
            raise LayerNotUsedError.for_layer(missing[0])
        if not logits.requires_grad:
            raise AttributionError("The model's output does not depend on the chosen layer.")
        targets = _targets(target, logits)
        selected = logits.gather(1, targets[:, None]).sum()  # images are independent in eval mode
        grads = torch.autograd.grad(selected, [acts[n] for n in layers], allow_unused=True)
        torch.set_grad_enabled(False)
        prediction = _prediction(logits, namer, top_k)
        target_np = targets.cpu().numpy().astype(np.int64)
        target_labels = tuple(namer(int(t)) for t in target_np)
        results = {}
        for name, grad in zip(layers, grads):
            act = acts[name].detach()
            if grad is None or act.ndim != 4:
                raise AttributionError(
                    f"Grad-CAM needs a layer with spatial output (N, C, H, W); {name!r} has none."
                )
            weights = grad.mean(dim=(2, 3), keepdim=True)  # alpha_c: (N, C, 1, 1)
            cam = (weights * act).sum(dim=1, keepdim=True)  # (N, 1, h, w)
            up = _upsample(F.relu(cam), tuple(x.shape[-2:]))
            results[name] = AttributionResult(
                method="gradcam",
                layer=name,
                maps=normalize_maps(up[:, 0]).float().cpu().numpy(),
                raw=cam[:, 0].float().cpu().numpy(),
                targets=target_np,
                target_labels=target_labels,
                prediction=prediction,
            )
    return results


def grad_cam(
    model: nn.Module,
    x: Tensor,
    layer: str | None = None,
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> AttributionResult:
    """Grad-CAM at one layer (default: the last stage) with the top-k prediction, in one pass.

    Args:
        model: a classifier.
        x: ``(N, C, H, W)`` normalized images.
        layer: dotted module name; ``None`` for :func:`default_layer`.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]``, raw ``(N, h, w)``.
    """
    layer = layer or default_layer(model)
    return grad_cam_layers(model, x, [layer], target=target, class_name=class_name, top_k=top_k)[layer]


def captum_grad_cam(model: nn.Module, x: Tensor, layer: str, target: int | Sequence[int]) -> np.ndarray:
    """Captum's ``LayerGradCam`` with ReLU, upsampled and normalized like :func:`grad_cam`.

    The reference for tests and the benchmark: ``(N, C, H, W)`` in, ``(N, H, W)`` in ``[0, 1]`` out.
    """
    from captum.attr import LayerGradCam

    module = resolve_layers(model, [layer])[layer]
    x = _check_input(model, x)
    with _analysis_mode(model):
        t = target if isinstance(target, int) else list(target)
        cam = LayerGradCam(model, module).attribute(x, target=t, relu_attributions=True)
        up = _upsample(cam.detach(), tuple(x.shape[-2:]))
    return normalize_maps(up[:, 0]).cpu().numpy()
