"""Grad-CAM in one forward and one backward pass, with the top-k prediction from the same pass.

Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391) and the other gradient CAMs of
:mod:`resviz.analysis.cams`: the forward runs without autograd up to the earliest target layer; a
forward hook detaches the layer's output, marks it as requiring grad and switches autograd on, so
the graph starts there. An identity tap (a ``shortcut_out`` without projection) is the block's
input tensor itself, which the residual branch also reads: there the graph starts at the block's
input, so the gradient is the one over every use of the tensor, as in captum's ``LayerGradCam``
(the reference it is tested against, :func:`captum_grad_cam`). The predicted class is read from
the same forward's logits, and ``torch.autograd.grad`` asks only for the layers' gradients, so
autograd never walks below them.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from resviz.analysis.cams import GRADIENT_CAMS, NO_GRADIENT
from resviz.device import oom_guard
from resviz.errors import LayerNotUsedError
from resviz.hooks import forward_hooks, resolve_layers


def _identity_taps(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """The parents of requested ``nn.Identity`` taps, whose input must start the graph.

    An identity tap (a block's ``shortcut_out`` without projection) returns its input tensor itself,
    and the block's residual branch consumed that same tensor. Grad-CAM's gradient is the one over
    every use of the tensor (as captum's, pytorch-grad-cam's and torch-cam's), so the graph must
    start at the block's input, before the branch reads it, not at the tap's output.
    """
    modules = dict(model.named_modules())
    parents = [n.rpartition(".")[0] for n in layers if isinstance(modules.get(n), nn.Identity)]
    return list(dict.fromkeys(parents))


def _start_graph(output: Tensor) -> Tensor:
    # The first hooked point reached: the graph starts here, so the backward pass cannot go below
    # it and nothing below it keeps activations for autograd.
    output = output.detach().requires_grad_(True)
    torch.set_grad_enabled(True)  # undone when the enclosing no_grad block exits
    return output


def one_pass(
    model: nn.Module,
    x: Tensor,
    layers: Sequence[str],
    target: int | Sequence[int] | None,
    *,
    backward: bool = True,
    create_graph: bool = False,
) -> tuple[Tensor, Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """One forward (autograd only from the earliest layer on) and one backward to the layers.

    Call it under :func:`_analysis_mode` and ``torch.no_grad()``.

    Args:
        model: a classifier in eval mode.
        x: ``(N, C, H, W)`` checked input on the model's device.
        layers: dotted names, checked.
        target: the class(es) to explain; ``None``: the predicted class.
        backward: ``False`` for methods that need activations only.
        create_graph: keep the backward's graph, and return the activations and gradients attached
            to it, for a second derivative.

    Returns:
        ``(logits (N, K), targets (N,), activations, gradients)``, the last two per layer name,
        ``(N, C, h, w)`` each, detached.
    """
    acts: dict[str, Tensor] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor | None:
            if not isinstance(output, Tensor):
                return None
            if not output.requires_grad:
                output = _start_graph(output)
            acts[name] = output
            return output

        return hook

    def pre_hook(_module: nn.Module, args: tuple) -> tuple | None:
        if args and isinstance(args[0], Tensor) and not args[0].requires_grad:
            return (_start_graph(args[0]), *args[1:])
        return None

    pre = {name: pre_hook for name in _identity_taps(model, layers)}
    with forward_hooks(model, {name: make_hook(name) for name in layers}, pre=pre):
        logits = model(x)
    missing = [n for n in layers if n not in acts]
    if missing:
        raise LayerNotUsedError.for_layer(missing[0])
    if not logits.requires_grad:
        raise AttributionError("The model's output does not depend on the chosen layer.")
    targets = _targets(target, logits)
    for name in layers:
        if acts[name].ndim != 4:
            raise AttributionError(
                f"Grad-CAM needs a layer with spatial output (N, C, H, W); {name!r} has none."
            )
    grads: dict[str, Tensor] = {}
    if backward:
        selected = logits.gather(1, targets[:, None]).sum()  # images are independent in eval mode
        got = torch.autograd.grad(
            selected, [acts[n] for n in layers], allow_unused=True, create_graph=create_graph
        )
        grads = {n: (g if g is not None else torch.zeros_like(acts[n])) for n, g in zip(layers, got)}
    torch.set_grad_enabled(False)
    if create_graph:  # the caller differentiates the gradients again (Shapley-CAM)
        return logits.detach(), targets, dict(acts), grads
    return logits.detach(), targets, {n: a.detach() for n, a in acts.items()}, grads


def gradient_cams(
    model: nn.Module,
    x: Tensor,
    layers: Sequence[str],
    methods: Sequence[str] = ("gradcam",),
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> dict[tuple[str, str], AttributionResult]:
    """Every gradient CAM of ``methods`` at every layer, from one forward and one backward.

    Each map is ``ReLU(cam)`` with ``cam`` the method's function of the layer's activation and
    gradient (:data:`resviz.analysis.cams.GRADIENT_CAMS`), upsampled bilinearly to the input and
    scaled to ``[0, 1]`` per image. A layer's map never depends on which other layers are asked.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        layers: dotted module names, e.g. ``["layer3", "layer4.1.conv2"]``.
        methods: keys of :data:`resviz.analysis.cams.GRADIENT_CAMS`.
        target: the class to explain, one for all or one per image; ``None``: the predicted class.
        class_name: a function or sequence giving class names for the labels.
        top_k: how many classes the prediction keeps.

    Returns:
        ``(layer, method)`` -> :class:`AttributionResult`, all sharing one prediction and targets.

    Raises:
        LayerNotFoundError: a name the model does not have.
        LayerNotUsedError: a layer the forward pass never runs (a plain block's shortcut tap).
        AttributionError: a bad input, target or method, or a layer without spatial output.
    """
    layers = list(dict.fromkeys(layers))
    methods = list(dict.fromkeys(methods))
    if not layers:
        raise AttributionError("Choose at least one layer for Grad-CAM.")
    unknown = [m for m in methods if m not in GRADIENT_CAMS]
    if unknown:
        raise AttributionError(
            f"{unknown[0]!r} is not a gradient CAM; choose from {', '.join(GRADIENT_CAMS)}."
        )
    resolve_layers(model, layers)  # a bad name fails before the input is checked or moved
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    backward = any(m not in NO_GRADIENT for m in methods)
    with _analysis_mode(model), oom_guard("Grad-CAM"), torch.no_grad():
        logits, targets, acts, grads = one_pass(model, x, layers, target, backward=backward)
        prediction = _prediction(logits, namer, top_k)
        target_np = targets.cpu().numpy().astype(np.int64)
        target_labels = tuple(namer(int(t)) for t in target_np)
        results = {}
        for name in layers:
            for method in methods:
                cam = GRADIENT_CAMS[method](acts[name], grads.get(name, acts[name]))  # (N, h, w)
                up = _upsample(F.relu(cam)[:, None], tuple(x.shape[-2:]))
                results[(name, method)] = AttributionResult(
                    method=method,
                    layer=name,
                    maps=normalize_maps(up[:, 0]).float().cpu().numpy(),
                    raw=cam.float().cpu().numpy(),
                    targets=target_np,
                    target_labels=target_labels,
                    prediction=prediction,
                )
    return results


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
    ``d y_target / d A_c`` (the gradient over every use of ``A``, as captum's ``LayerGradCam``),
    upsampled bilinearly to the input and scaled to ``[0, 1]`` per image.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        layers: dotted module names.
        target: the class to explain, one for all or one per image; ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: how many classes the prediction keeps.

    Returns:
        One :class:`AttributionResult` per layer, all sharing the same prediction and targets.
    """
    found = gradient_cams(model, x, layers, ("gradcam",), target=target, class_name=class_name, top_k=top_k)
    return {layer: r for (layer, _), r in found.items()}


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
