"""Smooth Grad-CAM++ (Omeiza et al. 2019, https://arxiv.org/abs/1908.01224): Grad-CAM++ whose second
and third derivatives are averaged over noisy copies of the image.

It follows torch-cam 0.5's ``SmoothGradCAMpp`` (the reference of the tests), constants and all:

- ``num_samples`` copies ``x + N(0, std^2)`` (noise on the normalized image), each through one
  forward and one backward to the layer; ``g2``, ``g3`` are the means of ``G^2`` and ``G^3``;
- ``alpha = g2 / (2 g2 + sum_ab(g3 * A) + 1e-8)`` with ``A`` the clean image's activation;
- the weights are ``sum_ij alpha * ReLU(G)`` and the map ``sum_c w_c A_c``, where torch-cam takes ``G``
  and ``A`` from its last noisy pass (its hooks keep the last values they saw): so does this, so
  that a map here is the map a torch-cam user gets.

The noise is drawn on the CPU from a generator seeded with ``seed``, one ``(N, C, H, W)`` draw per
sample in torch-cam's order, so a reference seeded alike (``torch.manual_seed(seed)``) sees the same
noise. The noisy copies go through the network together, a few samples' worth of images per pass.
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

IMAGES_PER_PASS = 32  # noisy images through the network at once: memory for the graph from the layer


def smooth_grad_campp(
    model: nn.Module,
    x: Tensor,
    layer: str,
    *,
    num_samples: int = 4,
    std: float = 0.3,
    seed: int = 0,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> AttributionResult:
    """Smooth Grad-CAM++ at one layer for a batch of images.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        layer: dotted module name with spatial output.
        num_samples: noisy copies of each image (one forward + backward each).
        std: the noise's standard deviation, in the normalized image's units.
        seed: the noise generator's seed.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]``; raw ``(N, h, w)``, the weighted channel sum before the ReLU.
    """
    resolve_layers(model, [layer])
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    samples = max(1, int(num_samples))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = [torch.normal(0.0, float(std), tuple(x.shape), generator=gen) for _ in range(samples)]
    n = x.shape[0]
    per_pass = max(1, IMAGES_PER_PASS // n)  # samples per forward + backward
    with _analysis_mode(model), oom_guard("Smooth Grad-CAM++"), torch.no_grad():
        logits, targets, acts, _ = one_pass(model, x, [layer], target, backward=False)
        clean = acts[layer]
        g2 = torch.zeros_like(clean)
        g3 = torch.zeros_like(clean)
        for s in range(0, samples, per_pass):
            chunk = noise[s : s + per_pass]
            noisy = torch.cat([x + z.to(x.device) for z in chunk])
            _, _, a, g = one_pass(model, noisy, [layer], targets.repeat(len(chunk)).tolist())
            grads = g[layer].view(len(chunk), *clean.shape)
            g2 += grads.pow(2).sum(dim=0)
            g3 += grads.pow(3).sum(dim=0)
            last_act, last_grad = a[layer][-n:], grads[-1]
        g2 /= samples
        g3 /= samples
        alpha = g2 / (2 * g2 + (g3 * clean).sum(dim=(2, 3), keepdim=True) + 1e-8)
        weights = (alpha * last_grad.clamp_min(0)).sum(dim=(2, 3))
        cam = torch.nansum(weights[:, :, None, None] * last_act, dim=1)
        up = _upsample(F.relu(cam)[:, None], tuple(x.shape[-2:]))
        prediction = _prediction(logits, namer, top_k)
    target_np = targets.cpu().numpy().astype(np.int64)
    return AttributionResult(
        method="smoothgradcampp",
        layer=layer,
        maps=normalize_maps(up[:, 0]).float().cpu().numpy(),
        raw=cam.float().cpu().numpy(),
        targets=target_np,
        target_labels=tuple(namer(int(t)) for t in target_np),
        prediction=prediction,
    )
