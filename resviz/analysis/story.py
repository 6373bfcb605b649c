"""The story section's evidence: does a deep plain net's gradient vanish, explode, or neither?

Three measures, first layer against last, because each answers a different question:

- **activation gradient per element**: ``||dL/dh|| / sqrt(numel(h))`` at the first and the last block
  output. Per element, so that a 32x32x16 tensor and an 8x8x64 one compare fairly (a per-tensor
  norm grows with the tensor's size). Above 1 the signal grows toward the input: it *explodes*.
- **weight gradient** ``||dL/dW||`` of the first conv against the last conv of the main path: the
  size of the update each layer gets.
- **relative update** ``||dL/dW|| / ||W||``: the same, against the layer's own scale; what SGD
  actually changes, per step, in proportion.

He et al. (2015, section 4.1) found "healthy norms" in their BatchNorm-trained plain nets. Philipp,
Song and Carbonell (2018, "The exploding gradient problem demystified", https://arxiv.org/abs/1712.05577)
show that plain nets with batch normalization have gradients that *explode* with depth at
initialization; Yang et al. (2019, "A mean field theory of batch normalization",
https://arxiv.org/abs/1902.08129) prove that batch normalization itself causes gradient explosion in
deep networks without skips at initialization. The measurements here are on our twins; they say
what they show for these nets and this sample, nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resviz.analysis.gradients import GradientProfile

MEASURES: dict[str, str] = {
    "activation": "activation gradient per element, first block / last block",
    "weight": "weight gradient ||dW||, first conv / last conv",
    "relative": "relative update ||dW|| / ||W||, first conv / last conv",
}


@dataclass(frozen=True)
class Ratios:
    """First-over-last ratios of the three measures for one network on one batch."""

    model: str
    batchnorm: bool
    activation: float
    weight: float
    relative: float
    step: int | None = None  # training step of the weights (None: at initialization)
    seed: int = 0  # of the initialization (fresh twins) or of the batch (a run)

    def get(self, measure: str) -> float:
        return float(getattr(self, measure))


def ratios(profile: GradientProfile, *, batchnorm: bool, step: int | None = None, seed: int = 0) -> Ratios:
    """The three first/last ratios of one gradient profile.

    The "last conv" is the last layer on the main path before the classifier (the last block's
    second conv); the first is the stem conv. Shortcut projections are left out.
    """
    main = ~profile.layer_shortcut
    convs = [i for i, name in enumerate(profile.layer_names) if main[i] and name != "fc"]
    first, last = convs[0], convs[-1]
    rms = profile.block_out_rms
    return Ratios(
        model=profile.model,
        batchnorm=batchnorm,
        activation=_ratio(rms[0], rms[-1]),
        weight=_ratio(profile.grad_norm[first], profile.grad_norm[last]),
        relative=_ratio(profile.grad_weight_ratio[first], profile.grad_weight_ratio[last]),
        step=step,
        seed=seed,
    )


def _ratio(a: float, b: float) -> float:
    a, b = float(a), float(b)
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


@dataclass(frozen=True)
class StoryAtInit:
    """Every measure for a plain and a residual twin, BatchNorm on and off, at several seeds."""

    depth: int
    rows: tuple[Ratios, ...]
    batch: str  # the sample, for people

    def values(self, model: str, batchnorm: bool, measure: str) -> np.ndarray:
        """``(seeds,)`` the measure's ratio for each seed of one configuration."""
        return np.array([r.get(measure) for r in self.rows if r.model == model and r.batchnorm == batchnorm])

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.model for r in self.rows))


def story_at_init(
    depth: int = 56, seeds: Sequence[int] = (0, 1, 2), *, device: str = "auto", batch_size: int = 32
) -> StoryAtInit:
    """Fresh twins of ``depth`` layers, with and without BatchNorm, one batch of random images each."""
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.gradients import twin_profile
    from resviz.analysis.twins import TwinSettings

    rows = []
    for bn in (True, False):
        for seed in seeds:
            pair = twin_profile(
                TwinSettings(depth=depth, batchnorm=bn, seed=seed),
                BatchSettings(batch_size=batch_size, seed=seed),
                device=device,
                split=False,
            )
            rows += [ratios(p, batchnorm=bn, seed=seed) for p in (pair.plain, pair.residual)]
    batch = (
        f"CIFAR twins at initialization (Kaiming), seeds {', '.join(map(str, seeds))}, one batch of "
        f"{batch_size} random 32x32 images with random labels per seed, train mode"
    )
    return StoryAtInit(depth=depth, rows=tuple(rows), batch=batch)


@dataclass(frozen=True)
class StoryThroughTraining:
    """The three ratios of trained nets at the snapshots their run kept."""

    rows: tuple[Ratios, ...]
    sample: str  # for people

    def curve(self, model: str, measure: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, ratios)`` of one model, in step order."""
        rows = sorted((r for r in self.rows if r.model == model), key=lambda r: r.step or 0)
        return np.array([r.step for r in rows]), np.array([r.get(measure) for r in rows])

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.model for r in self.rows))


Progress = Callable[[int, int], None]


def story_through_training(
    run_paths: Sequence[str | Path], *, n_images: int = 64, progress: Progress | None = None
) -> StoryThroughTraining:
    """Profile each run's saved snapshots (and its final weights) on held-out images, true labels.

    Args:
        run_paths: run folders with a ``snapshots/`` folder (``TrainConfig.snapshots``).
        n_images: the first held-out images of the runs' dataset (one batch, train mode).
    """
    from safetensors.torch import load_file

    from resviz.analysis.gradients import gradient_profile
    from resviz.analysis.pairs import run_held_out
    from resviz.models.weights import load_model
    from resviz.runs import SNAPSHOTS, read_metadata

    jobs = []
    for path in map(Path, run_paths):
        meta = read_metadata(path)
        steps = sorted(int(f.stem.split("-")[1]) for f in (path / SNAPSHOTS).glob("step-*.safetensors"))
        jobs += [(path, meta, step) for step in steps] + [(path, meta, int(meta.get("steps_done", 0)))]
    rows = []
    sample = ""
    for done, (path, meta, step) in enumerate(jobs):
        loaded = load_model(str(meta["name"]), str(path), device="cpu")
        model = loaded.model
        file = path / SNAPSHOTS / f"step-{step:06d}.safetensors"
        if file.is_file():
            state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(file)).items()}
            model.load_state_dict(state)
        data = run_held_out(meta, n_images)
        if data is None:
            raise ValueError(f"{path.name} has no built-in held-out set to measure on.")
        x, y = data.normalize(data.x_test), data.y_test
        profile = gradient_profile(model, x, y, name=str(meta["name"]), split=False)
        bn = bool(dict(meta["variant_config"]).get("batchnorm", True))  # type: ignore[arg-type]
        rows.append(ratios(profile, batchnorm=bn, step=step))
        sample = (
            f"the first {len(y)} held-out {meta.get('dataset')} images with their true labels, train mode"
        )
        if progress is not None:
            progress(done + 1, len(jobs))
    return StoryThroughTraining(rows=tuple(rows), sample=sample)
