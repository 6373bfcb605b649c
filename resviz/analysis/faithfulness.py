"""How faithful an explanation is: scores of an attribution map against ground truth.

The pointing game (Zhang et al. 2016, https://arxiv.org/abs/1608.00507): a map "points" at the
object when its peak lies inside the object's mask. The shapes dataset carries masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from resviz.analysis.attribution import grad_cam
from resviz.datasets import ImageDataset
from resviz.device import model_device
from resviz.errors import ResvizError

if TYPE_CHECKING:
    from resviz.models.resnet import ResNet


def pointing_game(
    model: ResNet, data: ImageDataset, *, layer: str | None = None, limit: int = 300, batch: int = 100
) -> float:
    """Share of held-out images whose Grad-CAM peak (for the true class) lies inside the object mask.

    Grad-CAM is :func:`resviz.analysis.attribution.grad_cam` (it holds the model's lock and removes
    its hooks). An all-zero map (no positive evidence anywhere) counts as a miss.
    """
    if data.masks_test is None:
        raise ResvizError(f"The {data.name} dataset has no object masks; the pointing game needs shapes.")
    layer = layer or model.feature_info[-1].name
    device = model_device(model)
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
