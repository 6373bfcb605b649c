"""Which explanation is faithful: attribution methods x faithfulness metrics, for a net and its twin.

Metrics (each a number per image, averaged over the images):

- deletion and insertion AUC (RISE, :mod:`resviz.analysis.deletion`);
- ROAD most and least relevant first and combined (Rong et al. 2022, :mod:`resviz.analysis.road`);
- the pointing game (Zhang et al. 2016, https://arxiv.org/abs/1608.00507) where the data has object
  masks (shapes): a map "points" at the object when its peak lies inside the object's mask.

:func:`evaluate` runs every method of :func:`resviz.analysis.attribution.attribute` by name, plus a
uniformly random map as the chance reference, on each network, and returns one frozen report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from resviz.analysis.deletion import STEPS, perturbation_curves
from resviz.analysis.faithfulness_report import METRICS, FaithfulnessReport
from resviz.analysis.road import PERCENTILES, road
from resviz.device import model_device
from resviz.errors import ResvizError
from resviz.hooks import preserve_model_state

if TYPE_CHECKING:
    from resviz.datasets import ImageDataset
    from resviz.models.resnet import ResNet

__all__ = [
    "DEFAULT_METHODS",
    "METRICS",
    "REFERENCE",
    "FaithfulnessError",
    "FaithfulnessReport",
    "default_methods",
    "estimate_seconds",
    "evaluate",
    "forward_passes",
    "pointing_game",
    "pointing_hits",
]

REFERENCE = "random"  # a uniformly random map: the score of an explanation that explains nothing
# Two gradient CAMs and Saliency: one forward and one backward each, so that the default set stays
# quick (:func:`default_methods` leaves out those not in the method table).
DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "gradcampp", "saliency", REFERENCE)


def default_methods() -> tuple[str, ...]:
    """:data:`DEFAULT_METHODS` that the attribution method table offers, and the random reference."""
    from resviz.analysis.attribution import METHODS

    return tuple(m for m in DEFAULT_METHODS if m in METHODS or m == REFERENCE)


Progress = Callable[[int, int, str], None]  # (units done, units in all, what was just done)


class FaithfulnessError(ResvizError, ValueError):
    """Images, masks, methods or settings that a faithfulness evaluation cannot use."""


def pointing_hits(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: whether each map's peak lies inside its object mask.

    Args:
        maps: ``(N, H, W)`` relevance.
        masks: ``(N, H, W)`` bool object masks at the same resolution.

    The peak is the first maximum in row-major order (``argmax`` of the flattened map): where
    several pixels share the maximum, the one in the top row, then the leftmost, decides, so the
    score of a map with ties is fixed. An all-zero map (no positive evidence anywhere) counts as a miss.
    """
    flat = maps.reshape(len(maps), -1)
    peak = flat.argmax(1)
    return masks.reshape(len(masks), -1)[np.arange(len(peak)), peak] & (flat.max(1) > 0)


def pointing_game(
    model: ResNet, data: ImageDataset, *, layer: str | None = None, limit: int = 300, batch: int = 100
) -> float:
    """Share of held-out images whose Grad-CAM peak (for the true class) lies inside the object mask.

    Grad-CAM is :func:`resviz.analysis.attribution.grad_cam` (it holds the model's lock and removes
    its hooks). An all-zero map counts as a miss. Ties: the peak is the first maximum in row-major
    order (:func:`pointing_hits`), so a map with several equal maxima always scores the same.
    """
    from resviz.analysis.attribution import grad_cam

    if data.masks_test is None:
        raise ResvizError(f"The {data.name} dataset has no object masks; the pointing game needs shapes.")
    layer = layer or model.feature_info[-1].name
    device = model_device(model)
    hits = 0
    n = min(limit, len(data.y_test))
    for i in range(0, n, batch):
        x = data.normalize(data.x_test[i : min(i + batch, n)].to(device))
        y = data.y_test[i : min(i + batch, n)]
        maps = grad_cam(model, x, layer, target=y.tolist()).maps
        hits += int(pointing_hits(maps, data.masks_test[i : min(i + batch, n)].numpy()).sum())
    return hits / max(n, 1)


def forward_passes(
    methods: Sequence[str], n: int, *, steps: int = STEPS, percentiles: Sequence[float] = PERCENTILES
) -> int:
    """Forward passes (images through one network) that :func:`evaluate` costs per network.

    Each method costs its attribution (a forward and a backward count as three forwards; the
    perturbation methods as many as they perturb) plus ``1 + 2 (steps + 1) + 2 len(percentiles)``
    scored images per image.
    """
    per_image = 1 + 2 * (steps + 1) + 2 * len(percentiles)
    return sum(n * (per_image + _ATTRIBUTION_PASSES.get(m, 3)) for m in methods)


def estimate_seconds(
    model: nn.Module,
    x: Tensor,
    methods: Sequence[str],
    *,
    nets: int = 2,
    steps: int = STEPS,
    percentiles: Sequence[float] = PERCENTILES,
) -> float:
    """Rough wall time of :func:`evaluate` on ``x`` for ``nets`` networks like ``model``.

    Times a forward pass of a batch as large as the perturbed images' (``x``'s images repeated;
    fewer for large images, to keep the probe short), the quicker of two, times
    :func:`forward_passes`, plus ROAD's imputations at the rate measured on a 2-core machine. An
    estimate to quote before a long run, not a promise.
    """
    size = 128 if x.shape[-1] * x.shape[-2] <= 64 * 64 else 4
    xb = x[:size].repeat(-(-size // min(len(x), size)), 1, 1, 1)[:size].to(model_device(model))
    with preserve_model_state(model), torch.no_grad():
        model(xb[:2])  # the first call pays for allocations
        times = []
        for _ in range(2):
            start = time.perf_counter()
            model(xb)
            times.append(time.perf_counter() - start)
        per_image = min(times) / len(xb)
    n, pixels = len(x), x.shape[-2] * x.shape[-1]
    impute = n * 2 * len(percentiles) * pixels * _IMPUTE_SECONDS_PER_PIXEL * len(methods)
    return nets * (forward_passes(methods, n, steps=steps, percentiles=percentiles) * per_image + impute)


_IMPUTE_SECONDS_PER_PIXEL = 3.5e-6  # ROAD's sparse solve and its set-up, per removed-or-kept pixel


# Forward-pass equivalents per image of the methods that cost more than a forward and a backward;
# the channel-wise CAMs at a CIFAR ResNet's last stage (64 channels).
_ATTRIBUTION_PASSES = {
    REFERENCE: 0,
    "integrated_gradients": 96,
    "occlusion": 60,
    "scorecam": 64,
    "ablationcam": 64,
    "sscam": 64 * 8,
    "iscam": 64 * 8,
}


def evaluate(
    nets: Sequence[tuple[str, nn.Module]],
    x: Tensor,
    *,
    targets: Sequence[int] | Tensor | None = None,
    masks: np.ndarray | Tensor | None = None,
    methods: Sequence[str] | None = None,
    layer: str | None = None,
    steps: int = STEPS,
    percentiles: Sequence[float] = PERCENTILES,
    batch_size: int = 64,
    seed: int = 0,
    how: str = "",
    source: str = "",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FaithfulnessReport:
    """Every metric of :data:`METRICS` for every method on every network.

    Args:
        nets: ``(name, model)`` pairs, e.g. a ResNet and its plain twin; each model is left exactly
            as it was (its lock is held, eval mode, modes restored, no hooks left).
        x: ``(N, C, H, W)`` normalized images.
        targets: ``(N,)`` the class to explain (e.g. the true labels); ``None``: each network's
            own prediction.
        masks: ``(N, H, W)`` bool object masks for the pointing game; ``None``: no pointing game.
        methods: names for :func:`resviz.analysis.attribution.attribute`, and :data:`REFERENCE`
            (default: :func:`default_methods`).
        layer: for the CAM methods (default: each network's last stage).
        steps: deletion and insertion curves have ``steps + 1`` points.
        percentiles: ROAD's thresholds, in percent.
        batch_size: images per attribution call (the perturbed images go in larger batches).
        seed: of the random reference maps and of ROAD's imputation noise.
        how: where the second network came from, for people.
        source: what the images are, for people.
        progress: called after each (network, method) with the units done and in all.
        should_stop: asked between batches; True ends the evaluation early, and the report says so.

    Returns:
        The report; rows not reached when stopped are NaN.
    """
    methods = _check(x, methods or default_methods(), targets, masks, steps, percentiles)
    n = len(x)
    mask_np = None if masks is None else np.asarray(masks, dtype=bool)
    shape = (len(nets), len(methods))
    scores = np.full((*shape, len(METRICS), n), np.nan, dtype=np.float32)
    curves = np.full((2, *shape, n, steps + 1), np.nan, dtype=np.float32)
    road_curves = np.full((2, *shape, n, len(percentiles)), np.nan, dtype=np.float32)
    seconds = np.full(shape, np.nan, dtype=np.float32)
    used_targets = np.zeros((len(nets), n), dtype=np.int64)
    fractions, done, complete = np.linspace(0, 1, steps + 1, dtype=np.float32), 0, True
    for a, (name, model) in enumerate(nets):
        with preserve_model_state(model):
            xd = x.to(model_device(model))
            t = _targets(model, xd, targets, batch_size)
            used_targets[a] = t.cpu().numpy()
            for b, method in enumerate(methods):
                start = time.perf_counter()
                out = _one(model, xd, t, method, layer, steps, percentiles, batch_size, seed, should_stop)
                if out is None:
                    complete = False
                    break
                maps, (dele, ins), rd = out
                fractions = dele.fractions
                curves[0, a, b], curves[1, a, b] = dele.probs, ins.probs
                road_curves[0, a, b], road_curves[1, a, b] = rd.morf, rd.lerf
                pointing = pointing_hits(maps, mask_np) if mask_np is not None else np.full(n, np.nan)
                scores[a, b] = np.stack(
                    [dele.auc, ins.auc, rd.morf.mean(1), rd.lerf.mean(1), rd.combined, pointing]
                )
                seconds[a, b] = time.perf_counter() - start
                done += 1
                if progress is not None:
                    progress(done, len(nets) * len(methods), f"{name}: {method}")
        if not complete:
            break
    return FaithfulnessReport(
        nets=tuple(name for name, _ in nets),
        how=how,
        source=source,
        methods=tuple(methods),
        layer=layer,
        scores=scores,
        fractions=fractions,
        deletion=curves[0],
        insertion=curves[1],
        percentiles=np.asarray(percentiles, dtype=np.float32),
        road_morf=road_curves[0],
        road_lerf=road_curves[1],
        targets=used_targets,
        seconds=seconds,
        complete=complete,
        has_masks=mask_np is not None,
    )


def _one(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    method: str,
    layer: str | None,
    steps: int,
    percentiles: Sequence[float],
    batch_size: int,
    seed: int,
    should_stop: Callable[[], bool] | None,
):
    """Maps, deletion/insertion curves and ROAD of one method on one network; None when stopped."""
    maps = _maps(model, x, t, method, layer, batch_size, seed, should_stop)
    if maps is None:
        return None
    curves = perturbation_curves(model, x, maps, t, steps=steps, should_stop=should_stop)
    if curves is None:
        return None
    rd = road(model, x, maps, t, percentiles=percentiles, seed=seed, should_stop=should_stop)
    return None if rd is None else (maps, curves, rd)


def _maps(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    method: str,
    layer: str | None,
    batch_size: int,
    seed: int,
    should_stop: Callable[[], bool] | None,
) -> np.ndarray | None:
    """``(N, H, W)`` the method's maps for the targets ``t``, in batches; None when stopped."""
    if method == REFERENCE:
        return np.random.default_rng(seed).random((len(x), *x.shape[-2:]), dtype=np.float32)
    from resviz.analysis.attribution import attribute

    out = []
    for i in range(0, len(x), batch_size):
        if should_stop is not None and should_stop():
            return None
        xb, tb = x[i : i + batch_size], t[i : i + batch_size].tolist()
        out.append(attribute(model, xb, method, layer=layer, target=tb).maps)
    return np.concatenate(out)


def _targets(model: nn.Module, x: Tensor, targets: Sequence[int] | Tensor | None, batch_size: int) -> Tensor:
    """The given targets, checked against the model's classes, or its predictions."""
    with torch.no_grad():
        if targets is None:
            return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
        t = torch.as_tensor(targets, device=x.device).long()
        classes = model(x[:1]).shape[1]
    if int(t.min()) < 0 or int(t.max()) >= classes:
        raise FaithfulnessError(
            f"Targets must be classes 0 to {classes - 1} of this model, not {int(t.max())}."
        )
    return t


def _check(
    x: Tensor,
    methods: Sequence[str],
    targets: Sequence[int] | Tensor | None,
    masks: np.ndarray | Tensor | None,
    steps: int,
    percentiles: Sequence[float],
) -> tuple[str, ...]:
    """The methods, checked with everything else before any work is done."""
    from resviz.analysis.attribution import METHODS

    if x.ndim != 4 or len(x) == 0:
        raise FaithfulnessError("Give at least one image, as a (N, C, H, W) batch.")
    unknown = [m for m in methods if m not in METHODS and m != REFERENCE]
    if unknown or not methods:
        choices = ", ".join([*METHODS, REFERENCE])
        raise FaithfulnessError(f"Unknown method(s) {', '.join(unknown) or '(none)'}; choose from {choices}.")
    if targets is not None and len(targets) != len(x):
        raise FaithfulnessError(f"{len(targets)} targets for {len(x)} images; give one per image.")
    if masks is not None and tuple(np.shape(masks)) != (len(x), *x.shape[-2:]):
        raise FaithfulnessError(
            f"Masks of shape {tuple(np.shape(masks))} do not fit images {tuple(x.shape)}."
        )
    if steps < 1:
        raise FaithfulnessError(f"Deletion needs at least one step, not {steps}.")
    if not percentiles or not all(0 < p < 100 for p in percentiles):
        raise FaithfulnessError("ROAD's percentiles must lie strictly between 0 and 100.")
    return tuple(dict.fromkeys(methods))
