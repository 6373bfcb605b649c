"""Shapley-CAM (Cai et al. 2025, https://arxiv.org/abs/2501.06261): Grad-CAM with a second-order term.

The channel weights are the spatial mean of ``G - H A / 2``, with ``G = dy/dA`` and ``H A`` the
Hessian of the target's score with respect to the layer's activation applied to the activation
itself (one double backward), as pytorch-grad-cam's ``ShapleyCAM``, the reference of the tests.
For a network that is piecewise linear above the layer (ReLU, max-pooling, BatchNorm in eval mode,
average pooling and a linear head: every ResNet here) the Hessian is zero almost everywhere, and
Shapley-CAM is Grad-CAM; the term matters for smooth activations (GELU, SiLU).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.analysis.attribution_core import (
    TOP_K,
    AttributionResult,
    ClassNamer,
    _analysis_mode,
    _check_input,
    _class_namer,
    _prediction,
    _upsample,
    normalize_maps,
)
from resviz.analysis.grad_cam import one_pass
from resviz.device import oom_guard
from resviz.hooks import resolve_layers


def shapley_cam(
    model: nn.Module,
    x: Tensor,
    layer: str,
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> AttributionResult:
    """Shapley-CAM at one layer for a batch of images: one forward (autograd from the layer on, as
    Grad-CAM's), one backward with its graph kept, and one double backward for the Hessian-vector
    product.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        layer: dotted module name with spatial output.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]``; raw ``(N, h, w)``, the weighted channel sum before the ReLU.
    """
    resolve_layers(model, [layer])
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    with _analysis_mode(model), oom_guard("Shapley-CAM"), torch.no_grad():
        # The graph starts at the layer (as for Grad-CAM), and the backward keeps its own graph.
        logits, targets, acts, grads = one_pass(model, x, [layer], target, create_graph=True)
        act, grad = acts[layer], grads[layer]
        hvp = None
        if grad.requires_grad:  # otherwise no path leads from the gradient back to A: H = 0
            (hvp,) = torch.autograd.grad(grad, act, grad_outputs=act.detach(), allow_unused=True)
        weights = (grad if hvp is None else grad - 0.5 * hvp).detach().mean(dim=(2, 3))
        cam = (weights[:, :, None, None] * act.detach()).sum(dim=1)
        up = _upsample(F.relu(cam)[:, None], tuple(x.shape[-2:]))
        prediction = _prediction(logits, namer, top_k)
    target_np = targets.cpu().numpy().astype(np.int64)
    return AttributionResult(
        method="shapleycam",
        layer=layer,
        maps=normalize_maps(up[:, 0]).float().cpu().numpy(),
        raw=cam.detach().float().cpu().numpy(),
        targets=target_np,
        target_labels=tuple(namer(int(t)) for t in target_np),
        prediction=prediction,
    )
