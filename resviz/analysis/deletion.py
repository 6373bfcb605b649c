"""Deletion and insertion curves (RISE: Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421).

Deletion removes pixels from the image, most relevant first, and follows the probability of the
target class: a faithful map makes it fall fast (a small area under the curve). Insertion starts
from a blurred copy and puts the original pixels back in the same order: a faithful map makes the
probability rise fast (a large area). As in the paper, deleted pixels become zero (in the normalized
input: the dataset's mean colour) and insertion starts from a strong blur of the image.

The curve is sampled at ``steps + 1`` evenly spaced fractions of the pixels, and the area is the
trapezoid rule over the fraction axis ``[0, 1]``, so it lies in ``[0, 1]`` too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from resviz.hooks import preserve_model_state

STEPS = 10  # points of the curve after the first: a tenth of the pixels per step


@dataclass(frozen=True)
class PerturbationCurve:
    """The target's probability as pixels are deleted (or inserted), for a batch of images.

    Attributes:
        kind: ``"deletion"`` or ``"insertion"``.
        fractions: ``(S + 1,)`` share of the pixels deleted (inserted) at each point, 0 to 1.
        probs: ``(N, S + 1)`` softmax probability of each image's target at each point.
    """

    kind: str
    fractions: np.ndarray
    probs: np.ndarray

    @property
    def auc(self) -> np.ndarray:
        """``(N,)`` area under each image's curve (trapezoid rule over the fractions)."""
        return trapezoid(self.probs, self.fractions)


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Area under ``y`` ``(..., S)`` over ``x`` ``(S,)`` by the trapezoid rule.

    Written out because ``np.trapezoid`` is numpy 2 only and ``np.trapz`` is deprecated there.
    """
    return (((y[..., 1:] + y[..., :-1]) / 2) * np.diff(x)).sum(-1)


def pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """``(N, H*W)`` int64: each pixel's place in its image's order, most relevant first.

    Equal values keep the image's row-major order (a stable sort), so a flat map deletes from the
    top-left corner, the same every time.
    """
    flat = maps.reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None].repeat(len(flat), 0), axis=1)
    return ranks


def blurred(x: Tensor) -> Tensor:
    """The insertion curve's starting point: a Gaussian blur a quarter of the image wide."""
    from resviz.analysis.attribution import make_baseline

    return make_baseline(x, "blur")


def perturbation_curves(
    model: nn.Module,
    x: Tensor,
    maps: np.ndarray,
    targets: Sequence[int] | Tensor,
    *,
    steps: int = STEPS,
    batch_size: int = 256,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[PerturbationCurve, PerturbationCurve] | None:
    """Deletion and insertion curves of ``maps`` for ``x``.

    Args:
        model: a classifier; left as it was (its lock is held, eval mode, modes restored).
        x: ``(N, C, H, W)`` normalized images on the model's device.
        maps: ``(N, H, W)`` relevance at the input resolution (only the order within an image matters).
        targets: ``(N,)`` the class whose probability is followed.
        steps: the curve has ``steps + 1`` points.
        batch_size: perturbed images per forward pass.
        should_stop: asked between batches; True abandons the evaluation (returns None).

    Returns:
        ``(deletion, insertion)``, or None when stopped.
    """
    n, _, h, w = x.shape
    if maps.shape != (n, h, w):
        raise ValueError(f"maps of shape {maps.shape} do not match images of shape {tuple(x.shape)}")
    t = torch.as_tensor(targets, device=x.device).long()
    ranks = torch.from_numpy(pixel_ranks(maps)).to(x.device).view(n, 1, 1, h, w)
    counts = torch.from_numpy(np.rint(np.linspace(0, h * w, steps + 1))).to(x.device)
    probs = {k: np.empty((n, steps + 1), dtype=np.float32) for k in ("deletion", "insertion")}
    per = max(1, batch_size // (steps + 1))  # images per forward pass
    with preserve_model_state(model), torch.no_grad():
        canvas = blurred(x)
        for i in range(0, n, per):
            if should_stop is not None and should_stop():
                return None
            j = min(i + per, n)
            gone = ranks[i:j] < counts.view(1, -1, 1, 1, 1)  # (b, S+1, 1, H, W)
            img, base = x[i:j, None], canvas[i:j, None]
            tt = t[i:j].repeat_interleave(steps + 1)
            for kind, xs in (
                ("deletion", torch.where(gone, torch.zeros_like(img), img)),
                ("insertion", torch.where(gone, img, base)),
            ):
                logits = model(xs.reshape(-1, *x.shape[1:])).float()
                p = torch.softmax(logits, 1).gather(1, tt[:, None]).view(j - i, steps + 1)
                probs[kind][i:j] = p.cpu().numpy()
    fractions = (counts / (h * w)).cpu().numpy().astype(np.float32)
    return (
        PerturbationCurve("deletion", fractions, probs["deletion"]),
        PerturbationCurve("insertion", fractions, probs["insertion"]),
    )
