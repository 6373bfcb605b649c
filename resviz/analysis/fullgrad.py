"""FullGrad (Srinivas & Fleuret 2019, https://arxiv.org/abs/1905.00780): the whole network, no layer.

The network's output decomposes into the input-gradient term ``grad_x . x`` plus one term per bias
(the "full gradient"). The saliency map sums the absolute input-gradient term and, for every layer
with a bias (a convolution with a bias, and every BatchNorm, whose effective bias is
``beta - mu * gamma / sqrt(var + eps)``), the absolute bias-gradient ``|b_c * dy/dz_c|`` of each of its
channels; each ``(image, channel)`` map is min-max scaled first and everything is upsampled to the
input. All of it comes from one forward and one backward to the input. The post-processing follows
pytorch-grad-cam's ``FullGrad`` (its constants included), which the tests compare against; channels
are summed at the layer's resolution before the one upsampling per layer (bilinear interpolation is
linear, so that is the same map for a fraction of the work). A module called several times (none
in these ResNets) adds a term per call: each call is a bias of the decomposition.
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
    _targets,
    normalize_maps,
)
from resviz.device import oom_guard
from resviz.hooks import forward_hooks


def bias_layers(model: nn.Module) -> dict[str, Tensor]:
    """``{name: (C,) effective bias}`` of every Conv2d with a bias and every BatchNorm2d.

    A BatchNorm in eval mode is ``gamma (z - mu) / sqrt(var + eps) + beta``: its bias is
    ``beta - mu gamma / sqrt(var + eps)`` (the FullGrad paper's reference code does the same).
    """
    out: dict[str, Tensor] = {}
    for name, m in model.named_modules():
        if type(m) is nn.BatchNorm2d and m.running_mean is not None:
            gamma = m.weight if m.weight is not None else torch.ones_like(m.running_mean)
            beta = m.bias if m.bias is not None else torch.zeros_like(m.running_mean)
            out[name] = (beta - m.running_mean * gamma / torch.sqrt(m.running_var + m.eps)).detach()
        elif type(m) is nn.Conv2d and m.bias is not None:
            out[name] = m.bias.detach()
    return out


def _scaled_sum(t: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, C, h, w)`` -> ``(N, H, W)``: each ``(image, channel)`` map min-max scaled (pytorch-grad-cam's
    ``scale_cam_image``: ``(m - min) / (1e-7 + max)``), summed over channels, upsampled bilinearly."""
    flat = t.flatten(2)
    lo = flat.amin(dim=2)[..., None, None]
    shifted = t - lo
    hi = shifted.flatten(2).amax(dim=2)[..., None, None]
    summed = (shifted / (1e-7 + hi)).sum(dim=1, keepdim=True)
    if tuple(summed.shape[-2:]) != tuple(size):
        summed = F.interpolate(summed, size=size, mode="bilinear", align_corners=False)
    return summed[:, 0]


def fullgrad(
    model: nn.Module,
    x: Tensor,
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> AttributionResult:
    """FullGrad saliency for a batch of images, from one forward and one backward.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]``; raw ``(N, H, W)``, the summed terms before the final
        scaling; ``layer`` is ``None`` (every bias layer takes part).
    """
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    biases = bias_layers(model)
    outputs: list[tuple[str, Tensor]] = []

    def keep(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, Tensor) and out.requires_grad:
                outputs.append((name, out))

        return hook

    size = (int(x.shape[-2]), int(x.shape[-1]))
    with _analysis_mode(model), oom_guard("FullGrad"), torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        with forward_hooks(model, [(name, keep(name)) for name in biases]):
            logits = model(xg)
        targets = _targets(target, logits)
        selected = logits.gather(1, targets[:, None]).sum()  # images are independent in eval mode
        grads = torch.autograd.grad(selected, [xg, *(o for _, o in outputs)], allow_unused=True)
        with torch.no_grad():
            total = _scaled_sum((grads[0] * x).abs(), size)
            for (name, _), g in zip(outputs, grads[1:]):
                if g is not None:
                    total += _scaled_sum((biases[name].to(g)[None, :, None, None] * g).abs(), size)
            prediction = _prediction(logits.detach(), namer, top_k)
    target_np = targets.cpu().numpy().astype(np.int64)
    return AttributionResult(
        method="fullgrad",
        layer=None,
        maps=normalize_maps(total).float().cpu().numpy(),
        raw=total.float().cpu().numpy(),
        targets=target_np,
        target_labels=tuple(namer(int(t)) for t in target_np),
        prediction=prediction,
    )
