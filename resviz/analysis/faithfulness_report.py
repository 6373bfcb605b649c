"""The result of a faithfulness evaluation: methods x metrics x networks, per image and on average.

Torch-free, so that plots and exports can read it (:func:`resviz.analysis.faithfulness.evaluate`
makes it).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Metric(NamedTuple):
    """How to read one metric."""

    label: str
    higher_is_better: bool
    help: str


METRICS: dict[str, Metric] = {
    "deletion_auc": Metric(
        "Deletion AUC", False, "area under the target's probability as the most relevant pixels go first"
    ),
    "insertion_auc": Metric(
        "Insertion AUC", True, "area under the probability as the most relevant pixels come back first"
    ),
    "road_morf": Metric(
        "ROAD MoRF",
        False,
        "probability change after imputing the most relevant pixels (mean over thresholds)",
    ),
    "road_lerf": Metric(
        "ROAD LeRF",
        True,
        "probability change after imputing the least relevant pixels (mean over thresholds)",
    ),
    "road_combined": Metric("ROAD combined", True, "(LeRF - MoRF) / 2, pytorch-grad-cam's ROADCombined"),
    "pointing": Metric("Pointing game", True, "share of maps whose peak lies inside the object's mask"),
}


# The deletion and insertion AUCs divided by each network's starting probability (see
# FaithfulnessReport.relative): columns of the table, not metrics of their own.
RELATIVE: dict[str, Metric] = {
    "deletion_rel": Metric("Deletion AUC / start", False, "deletion AUC over the intact image's probability"),
    "insertion_rel": Metric(
        "Insertion AUC / start", True, "insertion AUC over the intact image's probability"
    ),
}


@dataclass(frozen=True)
class FaithfulnessReport:
    """Faithfulness of each attribution method on each network (A networks, M methods, N images).

    Attributes:
        nets: ``A`` network names (a residual network first, then its plain twin, as a rule).
        how: where the second network came from, for people.
        source: what the images are, for people.
        methods: ``M`` method names (``"random"`` is the chance reference).
        layer: the CAM layer asked for (``None``: each network's last stage).
        scores: ``(A, M, K, N)`` float32 per-image value of each metric of :data:`METRICS` (K of
            them, in that order); NaN where not computed (no masks, or stopped early).
        fractions: ``(S + 1,)`` share of the pixels deleted / inserted at each point of the curves.
        deletion: ``(A, M, N, S + 1)`` the target's probability along the deletion curve.
        insertion: ``(A, M, N, S + 1)`` the same along the insertion curve.
        percentiles: ``(P,)`` ROAD's thresholds, in percent.
        road_morf: ``(A, M, N, P)`` probability change, most relevant pixels imputed first.
        road_lerf: ``(A, M, N, P)`` probability change, least relevant pixels imputed first.
        targets: ``(A, N)`` int64 the class each network's maps explain.
        seconds: ``(A, M)`` wall time of each method's row (attribution and metrics).
        complete: False when stopped before the end.
        has_masks: whether the pointing game was played.
    """

    nets: tuple[str, ...]
    how: str
    source: str
    methods: tuple[str, ...]
    layer: str | None
    scores: np.ndarray
    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    percentiles: np.ndarray
    road_morf: np.ndarray
    road_lerf: np.ndarray
    targets: np.ndarray
    seconds: np.ndarray
    complete: bool
    has_masks: bool

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics that were computed: :data:`METRICS`, less the pointing game without masks."""
        return tuple(k for k in METRICS if self.has_masks or k != "pointing")

    @property
    def n_images(self) -> int:
        return int(self.scores.shape[-1])

    def table(self) -> np.ndarray:
        """``(A, M, K')`` the mean of each metric over the images, for :attr:`metrics` only."""
        keep = [list(METRICS).index(k) for k in self.metrics]
        with np.errstate(invalid="ignore"):
            return _nanmean(self.scores[:, :, keep], axis=-1)

    def relative(self) -> np.ndarray:
        """``(A, M, 2)`` deletion and insertion AUC over each image's starting probability (the
        class's probability on the intact image, the deletion curve's first point), averaged over
        the images. A less confident network starts lower and has smaller areas whatever its maps,
        so only these ratios compare networks with each other."""
        start = self.deletion[..., :1]  # (A, M, N, 1)
        k_del, k_ins = list(METRICS).index("deletion_auc"), list(METRICS).index("insertion_auc")
        auc = np.stack([self.scores[:, :, k_del], self.scores[:, :, k_ins]], axis=-1)  # (A, M, N, 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(start > 1e-6, auc / np.maximum(start, 1e-6), np.nan)
            return _nanmean(np.moveaxis(ratio, -1, -2), axis=-1)

    def rows(self) -> list[dict[str, object]]:
        """One dict per (network, method): names, each metric's mean, the two AUCs relative to the
        starting probability (:meth:`relative`), seconds; for CSV and JSON."""
        table, relative = self.table(), self.relative()
        out = []
        for a, net in enumerate(self.nets):
            for b, method in enumerate(self.methods):
                row: dict[str, object] = {"net": net, "method": method}
                for k, key in enumerate(self.metrics):
                    v = float(table[a, b, k])
                    row[key] = None if np.isnan(v) else round(v, 5)
                    row[f"{key}_ci95"], row[f"{key}_n"] = self._interval(a, b, key)
                for k, key in enumerate(RELATIVE):
                    v = float(relative[a, b, k])
                    row[key] = None if np.isnan(v) else round(v, 5)
                s = float(self.seconds[a, b])
                row["seconds"] = None if np.isnan(s) else round(s, 3)
                out.append(row)
        return out

    def _interval(self, a: int, b: int, key: str) -> tuple[list[float] | None, int]:
        """The 95% interval of one metric's mean over the images that have it, and their number:
        Wilson for the pointing game (a share of hits), mean +- 1.96 standard errors otherwise."""
        from resviz.stats import Z95, wilson

        values = self.scores[a, b, list(METRICS).index(key)]
        values = values[np.isfinite(values)]
        n = len(values)
        if n == 0:
            return None, 0
        if key == "pointing":
            low, high = wilson(int(np.rint(values.sum())), n)
        else:
            half = Z95 * float(values.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
            low, high = float(values.mean()) - half, float(values.mean()) + half
        if not (np.isfinite(low) and np.isfinite(high)):
            return None, n
        return [round(float(low), 5), round(float(high), 5)], n

    def to_csv(self) -> str:
        """:meth:`rows` as CSV text."""
        from resviz.export import to_csv

        return to_csv(self.rows())

    def to_npz(self) -> bytes:
        """Every array (per image), with the names, as a compressed ``.npz`` file."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            nets=np.array(self.nets),
            methods=np.array(self.methods),
            metrics=np.array(tuple(METRICS)),
            scores=self.scores,
            fractions=self.fractions,
            deletion=self.deletion,
            insertion=self.insertion,
            percentiles=self.percentiles,
            road_morf=self.road_morf,
            road_lerf=self.road_lerf,
            targets=self.targets,
            seconds=self.seconds,
        )
        return buf.getvalue()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary: settings, the table and the mean curves."""
        with np.errstate(invalid="ignore"):
            dele, ins = _nanmean(self.deletion, axis=2), _nanmean(self.insertion, axis=2)
        return {
            "nets": list(self.nets),
            "how": self.how,
            "source": self.source,
            "images": self.n_images,
            "layer": self.layer,
            "methods": list(self.methods),
            "metrics": {
                k: {"label": METRICS[k].label, "higher_is_better": METRICS[k].higher_is_better}
                for k in self.metrics
            },
            "complete": self.complete,
            "rows": self.rows(),
            "fractions": self.fractions.round(5).tolist(),
            "deletion_mean": _listed(dele),
            "insertion_mean": _listed(ins),
        }


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmean`` without its warning on all-NaN slices (rows not reached stay NaN)."""
    count = (~np.isnan(a)).sum(axis)
    total = np.nansum(a, axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def _listed(a: np.ndarray) -> list:
    return [[[None if np.isnan(v) else round(float(v), 5) for v in row] for row in m] for m in a]
