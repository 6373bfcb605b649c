"""Sample sizes and 95% intervals for the error rates resviz reports (torch-free).

An error rate measured on n images is a binomial proportion: :func:`wilson` gives its Wilson score
interval (Wilson 1927; Brown, Cai and DasGupta 2001 recommend it over the normal "Wald" interval,
which collapses to zero width at 0% and 100%). A change of error measured on the *same* images
(a lesioned network against the intact one) is a paired difference: :func:`paired_difference`
bootstraps it over images, which keeps the pairing (the images both get wrong carry no information
about the difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


@dataclass(frozen=True)
class Rate:
    """``wrong`` of ``n`` with its 95% Wilson interval (all as shares in [0, 1])."""

    wrong: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.wrong / self.n if self.n else math.nan

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "n": self.n, "ci95": [self.low, self.high]}

    def __str__(self) -> str:
        return f"{100 * self.value:.1f}% (95% CI {100 * self.low:.1f}-{100 * self.high:.1f}%, n={self.n})"


def wilson(wrong: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``wrong / n``; ``(nan, nan)`` when ``n`` is 0."""
    if n <= 0:
        return math.nan, math.nan
    p = wrong / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(wrong: int, n: int) -> Rate:
    """An error rate with its interval."""
    low, high = wilson(int(wrong), int(n))
    return Rate(int(wrong), int(n), low, high)


def rate_of(share: float, n: int) -> Rate:
    """:func:`rate` from a stored share (``wrong / n`` rounded back to a count)."""
    return rate(round(share * n), n)


@dataclass(frozen=True)
class PairedDifference:
    """Error of B minus error of A on the same ``n`` images, with a 95% bootstrap interval."""

    difference: float
    low: float
    high: float
    n: int

    @property
    def includes_zero(self) -> bool:
        """The interval cannot tell the change from no change."""
        return self.low <= 0.0 <= self.high

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "value": self.difference,
            "n": self.n,
            "ci95": [self.low, self.high],
            "includes_zero": self.includes_zero,
        }


def paired_difference(
    wrong_a: np.ndarray, wrong_b: np.ndarray, *, draws: int = 4000, seed: int = 0
) -> PairedDifference:
    """Bootstrap the paired difference ``mean(wrong_b) - mean(wrong_a)`` over images.

    Each image contributes -1, 0 or +1; resampling images with replacement is a multinomial draw
    over those three counts, so the bootstrap costs ``draws`` draws, not ``draws * n``. The
    percentile interval is deterministic for a given ``seed``.

    Args:
        wrong_a, wrong_b: ``(n,)`` bool, whether each image is misclassified by A and by B.
    """
    a = np.asarray(wrong_a, dtype=bool)
    b = np.asarray(wrong_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Paired samples need two equal 1-d shapes, got {a.shape} and {b.shape}.")
    n = len(a)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0)
    worse = int((b & ~a).sum())  # +1: wrong only after the change
    better = int((a & ~b).sum())  # -1: wrong only before
    diff = (worse - better) / n
    if worse == better == 0:
        return PairedDifference(0.0, 0.0, 0.0, n)
    counts = np.random.default_rng(seed).multinomial(
        n, [worse / n, better / n, 1 - (worse + better) / n], draws
    )
    boot = (counts[:, 0] - counts[:, 1]) / n
    low, high = np.quantile(boot, [0.025, 0.975])
    return PairedDifference(diff, float(low), float(high), n)


def majority_error(labels: np.ndarray, num_classes: int) -> float:
    """The error of always answering the most common class of ``labels``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return 1.0 - counts.max() / max(counts.sum(), 1)
