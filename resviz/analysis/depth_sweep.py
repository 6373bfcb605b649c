"""How the gradient reaching the first block changes with depth, for residual and plain twins.

One point per CIFAR depth ``6n+2``: the first/last block gradient-norm ratio
(:attr:`resviz.analysis.gradients.GradientProfile.first_last_ratio`) and the loss of each twin at
initialization, all on the same batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from resviz.analysis.batches import BatchSettings
from resviz.analysis.gradients import TwinProfile, twin_profile
from resviz.analysis.twins import TwinSettings
from resviz.errors import ConfigError


@dataclass(frozen=True)
class DepthSweep:
    """First/last gradient-norm ratio and loss of each twin pair, per depth. Arrays are ``(D,)``."""

    depths: np.ndarray  # int, layers counted as in the paper
    residual_ratio: np.ndarray
    plain_ratio: np.ndarray
    residual_loss: np.ndarray
    plain_loss: np.ndarray
    twins: TwinSettings  # the knobs shared by every depth (its own depth field is unused)
    batch: BatchSettings


def depth_sweep(
    depths: Sequence[int],
    twins: TwinSettings,
    batch: BatchSettings,
    *,
    device: str | torch.device = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> DepthSweep:
    """First/last gradient-norm ratio of each CIFAR twin pair, per depth, at initialization.

    Args:
        depths: CIFAR depths ``6n+2``, e.g. ``(20, 32, 44, 56, 110)``.
        twins: the shared knobs (BatchNorm, init, taming, seed); its depth and family are ignored.
        batch: the batch every pair sees.
        device: where to run.
        progress: called with ``(done, total)`` after each depth.

    Returns:
        A :class:`DepthSweep` with ``(D,)`` arrays in the order of ``depths``.
    """
    if not depths:
        raise ConfigError("Pick at least one depth for the sweep.")
    pairs = []
    for i, depth in enumerate(depths):
        pairs.append(twin_profile(sweep_settings(twins, depth), batch, device=device, split=False))
        if progress is not None:
            progress(i + 1, len(depths))
    return sweep_from_profiles(pairs, twins, batch)


def sweep_settings(twins: TwinSettings, depth: int) -> TwinSettings:
    """The CIFAR twin settings of one sweep point: ``twins``' knobs at ``depth``."""
    return TwinSettings(
        depth=int(depth),
        batchnorm=twins.batchnorm,
        init=twins.init,
        zero_init_residual=twins.zero_init_residual,
        branch_scale=twins.branch_scale,
        seed=twins.seed,
    )


def sweep_from_profiles(
    pairs: Sequence[TwinProfile], twins: TwinSettings, batch: BatchSettings
) -> DepthSweep:
    """Assemble a :class:`DepthSweep` from twin profiles measured one depth at a time (a page caches
    each depth on its own, so adding a depth to a sweep computes only that one)."""
    if not pairs:
        raise ConfigError("Pick at least one depth for the sweep.")

    def col(get: Callable[[TwinProfile], float]) -> np.ndarray:
        return np.array([get(p) for p in pairs], dtype=np.float64)

    return DepthSweep(
        depths=np.array([p.twins.config().depth for p in pairs], dtype=np.int64),
        residual_ratio=col(lambda p: p.residual.first_last_ratio),
        plain_ratio=col(lambda p: p.plain.first_last_ratio),
        residual_loss=col(lambda p: p.residual.loss),
        plain_loss=col(lambda p: p.plain.loss),
        twins=twins,
        batch=batch,
    )


def sweep_rows(sweep: DepthSweep) -> list[dict[str, object]]:
    """One row per depth."""
    return [
        {
            "depth": int(d),
            "residual_first_last_ratio": float(rr),
            "plain_first_last_ratio": float(pr),
            "residual_loss": float(rl),
            "plain_loss": float(pl),
        }
        for d, rr, pr, rl, pl in zip(
            sweep.depths, sweep.residual_ratio, sweep.plain_ratio, sweep.residual_loss, sweep.plain_loss
        )
    ]
