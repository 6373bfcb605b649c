"""ROAD: remove and debias (Rong et al. 2022, https://arxiv.org/abs/2202.00449).

Deleting pixels by painting them a constant colour leaks the deleted shape to the network: the
"hole" itself is evidence. ROAD removes a share of the pixels and fills them by *noisy linear
imputation*: each removed pixel becomes the weighted mean of its eight neighbours (a sparse linear
system over all removed pixels) plus a little noise, so the mask's outline carries no signal.

This follows pytorch-grad-cam's ``pytorch_grad_cam.metrics.road`` (itself Leemann's reference code)
step for step: the same neighbour weights, the same percentile threshold on the map (``map <
percentile`` is kept), the same score (softmax probability of the target after imputation minus
before). It differs in speed only: the systems of a whole batch of images and thresholds are solved
as one block-diagonal system, and the perturbed images go through the model in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from resviz.hooks import preserve_model_state

# pytorch-grad-cam averages over 10, 20, ... 90 (:data:`ALL_PERCENTILES`); four thresholds give
# nearly the same mean at less than half the cost (two forward passes per image and threshold).
PERCENTILES: tuple[int, ...] = (20, 40, 60, 80)
ALL_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
NOISE = 0.01  # absolute noise added to every imputed value (the paper's and pytorch-grad-cam's)

# (row offset, column offset) -> weight: direct neighbours count twice as much as diagonal ones.
NEIGHBOURS: tuple[tuple[tuple[int, int], float], ...] = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)


@dataclass(frozen=True)
class RoadScores:
    """ROAD for a batch: the change in the target's probability after imputing a share of pixels.

    Attributes:
        percentiles: ``(P,)`` thresholds on the map, in percent.
        morf: ``(N, P)`` most relevant first: the pixels *above* the percentile are imputed (at 90,
            the top 10 %). A faithful map makes this strongly negative.
        lerf: ``(N, P)`` least relevant first: the pixels *below* the percentile are imputed. A
            faithful map keeps this near zero.
    """

    percentiles: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        """``(N,)`` pytorch-grad-cam's ``ROADCombined``: ``(mean LeRF - mean MoRF) / 2``; higher is better."""
        return (self.lerf.mean(1) - self.morf.mean(1)) / 2


def impute(images: np.ndarray, keep: np.ndarray, *, noise: float = NOISE, seed: int = 0) -> np.ndarray:
    """Noisy linear imputation of the pixels where ``keep`` is False, for many images at once.

    Args:
        images: ``(B, C, H, W)`` float images.
        keep: ``(B, H, W)`` bool, True where a pixel stays.
        noise: standard deviation of the Gaussian noise added to each imputed value.
        seed: of that noise.

    Returns:
        ``(B, C, H, W)`` float32: ``images`` with the removed pixels imputed.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    b, c, h, w = images.shape
    flat = images.reshape(b, c, h * w).astype(np.float64)
    keep_flat = keep.reshape(b, h * w)
    img, pix = np.nonzero(~keep_flat)  # the unknowns, image-major
    out = images.astype(np.float32, copy=True).reshape(b, c, h * w)
    if img.size == 0:
        return out.reshape(images.shape)
    var = np.full((b, h * w), -1, dtype=np.int64)
    var[img, pix] = np.arange(img.size)
    rows, cols, vals = [], [], []
    rhs = np.zeros((img.size, c))
    diag = np.ones(img.size)  # the weights of the neighbours inside the image
    r0, c0 = np.divmod(pix, w)
    for (dr, dc), weight in NEIGHBOURS:
        r, q = r0 + dr, c0 + dc
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        diag[~inside] -= weight
        eq = np.nonzero(inside)[0]
        nb = r[eq] * w + q[eq]
        known = keep_flat[img[eq], nb]
        # A known neighbour moves to the right-hand side; an unknown one is a term of the system.
        rhs[eq[known]] -= weight * flat[img[eq[known]], :, nb[known]]
        rows.append(eq[~known])
        cols.append(var[img[eq[~known]], nb[~known]])
        vals.append(np.full(int((~known).sum()), weight))
    ids = np.arange(img.size)
    a = coo_matrix(
        (np.concatenate([*vals, -diag]), (np.concatenate([*rows, ids]), np.concatenate([*cols, ids]))),
        shape=(img.size, img.size),
    ).tocsc()
    solved = spsolve(a, rhs).reshape(img.size, c)
    if noise:
        solved = solved + noise * np.random.default_rng(seed).standard_normal(solved.shape)
    out[img, :, pix] = solved.astype(np.float32)
    return out.reshape(images.shape)


def keep_masks(
    maps: np.ndarray, percentile: float, *, most_relevant_first: bool, seed: int = 0
) -> np.ndarray:
    """``(N, H, W)`` bool: the pixels that stay at one threshold, as pytorch-grad-cam picks them.

    Most relevant first keeps ``map < percentile(map)``; least relevant first does the same on
    ``1 - map`` (in float32, so rounding falls the same way as in the reference). Ties are broken
    at random (seeded), a millionth of a millionth apart: with the reference's strict ``<``, a map
    that is zero on more than ``percentile`` % of the image (Grad-CAM often is) would keep no pixel
    at all, and there would be nothing to impute from. Without ties the result is the reference's.
    """
    m = maps.astype(np.float32)
    if not most_relevant_first:
        m = np.float32(1) - m
    jitter = np.random.default_rng(seed).random(m.shape) * 1e-12
    m = m.astype(np.float64) + jitter
    thresholds = np.array([np.percentile(one, percentile) for one in m])
    return m < thresholds[:, None, None]


def road(
    model: nn.Module,
    x: Tensor,
    maps: np.ndarray,
    targets: Sequence[int] | Tensor,
    *,
    percentiles: Sequence[float] = PERCENTILES,
    noise: float = NOISE,
    seed: int = 0,
    batch_size: int = 256,
    should_stop: Callable[[], bool] | None = None,
) -> RoadScores | None:
    """ROAD, most and least relevant first, at every percentile.

    Args:
        model: a classifier; left as it was (its lock is held, eval mode, modes restored).
        x: ``(N, C, H, W)`` normalized images on the model's device.
        maps: ``(N, H, W)`` relevance at the input resolution (only the order within an image matters).
        targets: ``(N,)`` the class whose probability is scored.
        percentiles: thresholds in percent.
        noise: imputation noise (absolute, in the normalized input's units).
        seed: of the noise.
        batch_size: images per forward pass.
        should_stop: asked between batches; True abandons the evaluation (returns None).

    Returns:
        The scores, or None when stopped.
    """
    t = torch.as_tensor(targets, device=x.device).long()
    cpu = x.detach().float().cpu().numpy()
    n, p = len(cpu), len(percentiles)
    jobs = [(mrf, q) for mrf in (True, False) for q in percentiles]
    keeps = np.stack([keep_masks(maps, q, most_relevant_first=mrf, seed=seed) for mrf, q in jobs], 1)
    with preserve_model_state(model), torch.no_grad():
        before = _probs(model, x, t)
        after = np.empty((n, len(jobs)), dtype=np.float32)
        per = max(1, batch_size // len(jobs))  # images per imputation batch
        for i in range(0, n, per):
            if should_stop is not None and should_stop():
                return None
            j = min(i + per, n)
            imgs = np.repeat(cpu[i:j], len(jobs), axis=0)
            filled = impute(imgs, keeps[i:j].reshape(-1, *maps.shape[1:]), noise=noise, seed=seed + i)
            xs = torch.from_numpy(filled).to(x.device, x.dtype)
            after[i:j] = _probs(model, xs, t[i:j].repeat_interleave(len(jobs))).reshape(j - i, len(jobs))
    change = after - before[:, None]
    return RoadScores(
        percentiles=np.asarray(percentiles, dtype=np.float32), morf=change[:, :p], lerf=change[:, p:]
    )


def _probs(model: nn.Module, x: Tensor, targets: Tensor, batch_size: int = 256) -> np.ndarray:
    """``(N,)`` float32 softmax probability of each image's target, in batches."""
    out = [
        torch.softmax(model(x[i : i + batch_size]).float(), 1)
        .gather(1, targets[i : i + batch_size, None])
        .squeeze(1)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).cpu().numpy()
