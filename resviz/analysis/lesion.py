"""Lesion study: delete or reorder blocks of a trained network at test time and measure its error.

Veit, Wilber and Belongie, "Residual Networks Behave Like Ensembles of Relatively Shallow Networks"
(NeurIPS 2016, https://arxiv.org/abs/1605.06431), section 4: deleting a single block from a trained
ResNet barely changes its error (except for the blocks that downsample), while removing a layer of a
plain network sends it to chance; deleting or swapping several blocks degrades the error smoothly.

What "deleting" means here:

- a **residual block** keeps its shortcut alone: its output is ``act(shortcut(x))``, exactly the
  block with its branch output set to zero. For an identity shortcut that is ``x`` itself (the
  input is already a ReLU output); where the shortcut projects (option B/C: a 1x1 convolution and
  BatchNorm) or pads (option A), the projection or padding alone remains;
- a **plain block** is removed (``y = x``), which is only possible where its input and output
  shapes match. The first block of a later stage changes the shape: it is reported as not
  deletable (NaN), never faked.

The shared model is never changed: the network is walked block by block by :func:`_forward`, which
calls the model's own modules (stem, blocks, head) in a possibly edited order, without hooks and
without swapping modules, under the model's lock and in eval mode (``preserve_model_state``).
A single-block sweep reuses the intact activations: the network is walked once, and at each block the
lesioned branch continues from the cached input of that block, so a sweep costs about
``(blocks / 2 + 1)`` intact evaluations.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from resviz.errors import ResvizError
from resviz.hooks import preserve_model_state
from resviz.models.resnet import ResidualBlock, ResNet
from resviz.stats import paired_difference

if TYPE_CHECKING:
    from resviz.models.weights import LoadedModel

Progress = Callable[[int, int], None]  # (units done, units total)


class LesionError(ResvizError, ValueError):
    """A lesion that cannot be made: more blocks than the network has, no data to judge it on..."""


@dataclass(frozen=True)
class LesionSettings:
    """What to measure; frozen and hashable, so it can key a cache."""

    n_images: int = 500  # held-out images to evaluate on
    ks: tuple[int, ...] = (1, 2, 4, 6, 8, 10)  # numbers of randomly deleted blocks
    swap_ks: tuple[int, ...] = (1, 2, 4, 6)  # numbers of swapped pairs of blocks (within a stage)
    draws: int = 5  # random draws per k (mean and spread)
    seed: int = 0  # of the random draws
    batch_size: int = 250  # images per forward pass

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", tuple(sorted({int(k) for k in self.ks})))
        object.__setattr__(self, "swap_ks", tuple(sorted({int(k) for k in self.swap_ks})))
        if any(k < 1 for k in (*self.ks, *self.swap_ks)):
            raise LesionError("Numbers of deleted blocks and swapped pairs must be 1 or more.")
        if self.draws < 1 or self.n_images < 1 or self.batch_size < 1:
            raise LesionError("Draws, images and batch size must be 1 or more.")


@dataclass(frozen=True)
class BlockInfo:
    """One block as the lesion study sees it."""

    name: str  # "layer2.0"
    stage: str  # "layer2"
    downsamples: bool  # changes the shape (stride 2 or new channels)
    residual: bool  # has a shortcut
    deletable: bool  # a residual block always; a plain one only where the shape does not change
    how: str  # what deleting it leaves, for people


@dataclass(frozen=True)
class LesionResult:
    """Errors of one network, intact and lesioned, on the same images.

    Attributes:
        single_error: ``(n_blocks,)`` error with block i deleted; NaN where it cannot be deleted.
        single_change_ci: ``(n_blocks, 2)`` the 95% bootstrap interval of each deletion's change of
            error from the intact network, paired over the same ``n_images`` images.
        k_error: ``(len(ks), draws)`` error with k random deletable blocks deleted; NaN where the
            network has fewer than k deletable blocks.
        swap_error: ``(len(swap_ks), draws)`` error with k random pairs of same-shape blocks of one
            stage swapped; NaN where there are fewer than k such pairs.
    """

    model: str
    blocks: tuple[BlockInfo, ...]
    intact_error: float
    single_error: np.ndarray
    ks: np.ndarray
    k_error: np.ndarray
    swap_ks: np.ndarray
    swap_error: np.ndarray
    single_change_ci: np.ndarray | None = None  # (n_blocks, 2): 95% interval of error - intact error
    n_images: int = 0

    @property
    def residual(self) -> bool:
        return any(b.residual for b in self.blocks)

    @property
    def single_significant(self) -> np.ndarray:
        """``(n_blocks,)`` bool: the deletion's 95% interval excludes no change (False where NaN)."""
        if self.single_change_ci is None:
            return np.zeros(len(self.blocks), dtype=bool)
        lo, hi = self.single_change_ci[:, 0], self.single_change_ci[:, 1]
        with np.errstate(invalid="ignore"):
            return (lo > 0) | (hi < 0)


@dataclass(frozen=True)
class LesionStudy:
    """A residual network and its plain counterpart, lesioned on the same held-out images."""

    residual: LesionResult
    plain: LesionResult
    n_images: int
    data: str  # where the images came from, for people
    how: str  # where the plain counterpart came from
    chance: float  # the error of guessing uniformly
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- the blocks


def block_infos(model: ResNet) -> tuple[BlockInfo, ...]:
    """What each block is and what deleting it means."""
    infos = []
    for stage in model.feature_info:
        for name in stage.blocks:
            block: ResidualBlock = model.get_submodule(name)  # type: ignore[assignment]
            c_in = block.conv1.in_channels
            c_out = getattr(block, block.last_conv).out_channels
            changes = block.stride != 1 or c_in != c_out
            if block.skip:
                how = _shortcut_words(block)
            elif changes:
                shape = f"{c_in} -> {c_out} channels, stride {block.stride}"
                how = f"cannot be removed: it changes the shape ({shape})"
            else:
                how = "removed: y = x"
            deletable = block.skip or not changes
            infos.append(BlockInfo(name, stage.name, changes, block.skip, deletable, how))
    return tuple(infos)


def _shortcut_words(block: ResidualBlock) -> str:
    if block.downsample is None:
        return "shortcut alone: y = x"
    kind = type(block.downsample).__name__
    if kind == "PadShortcut":
        return "shortcut alone: the strided, zero-padded identity (option A)"
    return "shortcut alone: the 1x1 projection (and its BatchNorm), not the identity"


def shortcut_only(block: ResidualBlock, x: Tensor) -> Tensor:
    """A residual block with its branch deleted: ``block(x)`` with ``F(x) = 0``.

    Mirrors :meth:`ResidualBlock.forward` without the branch (tests check it against the block with
    its branch output zeroed, for every shortcut kind and ordering).
    """
    if block.preact:
        if block.downsample is None:
            return x
        return block.downsample(block.relu(block.bn1(x)))  # He et al. 2016: projection after BN-ReLU
    identity = x if block.downsample is None else block.downsample(x)
    return block.relu(identity)


def _stem(model: ResNet, x: Tensor) -> Tensor:
    """Everything before the first stage, as in :meth:`ResNet.forward_features`."""
    x = model.conv1(x)
    if model.bn1 is not None:
        x = model.relu(model.bn1(x))
    if model.maxpool is not None:
        x = model.maxpool(x)
    return x


def _head(model: ResNet, x: Tensor) -> Tensor:
    """Everything after the last stage: ``(N, C, H, W)`` features -> ``(N, classes)`` logits."""
    if model.final_bn is not None:
        x = model.relu(model.final_bn(x))
    return model.fc(torch.flatten(model.avgpool(x), 1))


def _forward(
    model: ResNet, blocks: Sequence[ResidualBlock], x: Tensor, order: Sequence[int], deleted: set[int]
) -> Tensor:
    """Logits of the network that runs ``blocks[i]`` for i in ``order``, deleting those in ``deleted``."""
    h = _stem(model, x)
    for i in order:
        h = _apply(blocks[i], h, i in deleted)
    return _head(model, h)


def _apply(block: ResidualBlock, h: Tensor, deleted: bool) -> Tensor:
    if not deleted:
        return block(h)
    return shortcut_only(block, h) if block.skip else h


# --------------------------------------------------------------------------- evaluation


def _chunks(x: Tensor, y: Tensor, size: int) -> list[tuple[Tensor, Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def _wrong(logits: Tensor, y: Tensor) -> int:
    return int((logits.argmax(1) != y).sum())


def single_sweep(
    model: ResNet, x: Tensor, y: Tensor, *, batch_size: int = 250, tick: Callable[[], None] | None = None
) -> tuple[float, np.ndarray]:
    """The intact error and the error with each single block deleted (NaN where it cannot be).

    Returns:
        ``(intact error, (n_blocks,) errors)``; see :func:`single_sweep_wrong` for the arguments.
    """
    intact, wrong, deletable = single_sweep_wrong(model, x, y, batch_size=batch_size, tick=tick)
    errors = wrong.mean(1)
    errors[~deletable] = np.nan
    return float(intact.mean()), errors


def single_sweep_wrong(
    model: ResNet, x: Tensor, y: Tensor, *, batch_size: int = 250, tick: Callable[[], None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which images the intact network gets wrong, and which it gets wrong with each block deleted.

    The network is walked once per batch; at block i the lesioned copy continues from the intact
    input of block i, so the blocks before i are never recomputed. Per-image answers (not only
    counts) let a deletion's change be judged as a paired difference on the same images.

    Args:
        model: the network, in the mode it should be evaluated in (call under ``preserve_model_state``).
        x: ``(N, C, H, W)`` preprocessed images on the model's device.
        y: ``(N,)`` int64 labels.

    Returns:
        ``(N,)`` bool intact mistakes, ``(n_blocks, N)`` bool mistakes with block i deleted (all
        False where it cannot be deleted), ``(n_blocks,)`` bool deletable.
    """
    infos = block_infos(model)
    blocks = [b for _, b in model.named_blocks()]
    n = len(blocks)
    wrong = np.zeros((n, len(y)), dtype=bool)
    intact = np.zeros(len(y), dtype=bool)
    start = 0
    for xc, yc in _chunks(x, y, batch_size):
        h = _stem(model, xc)
        rows = slice(start, start + len(yc))
        for i in range(n):
            if infos[i].deletable:
                g = _apply(blocks[i], h, True)
                for j in range(i + 1, n):
                    g = blocks[j](g)
                wrong[i, rows] = _wrong_mask(_head(model, g), yc)
            h = blocks[i](h)
            if tick is not None:
                tick()
        intact[rows] = _wrong_mask(_head(model, h), yc)
        start += len(yc)
    return intact, wrong, np.array([b.deletable for b in infos], dtype=bool)


def _wrong_mask(logits: Tensor, y: Tensor) -> np.ndarray:
    return (logits.argmax(1) != y).cpu().numpy()


def lesioned_error(
    model: ResNet,
    x: Tensor,
    y: Tensor,
    *,
    deleted: Sequence[int] = (),
    swaps: Sequence[tuple[int, int]] = (),
    batch_size: int = 250,
) -> float:
    """Error with the blocks at ``deleted`` (indices into ``named_blocks()``) deleted and the pairs in
    ``swaps`` exchanged (applied in turn). Checks that every deletion and swap is possible.

    Raises:
        LesionError: a plain block that changes the shape, a swap of blocks of different shapes.
    """
    infos = block_infos(model)
    blocks = [b for _, b in model.named_blocks()]
    for i in deleted:
        if not infos[i].deletable:
            raise LesionError(f"Block {infos[i].name} {infos[i].how}.")
    order = list(range(len(blocks)))
    for i, j in swaps:
        if infos[i].stage != infos[j].stage or infos[i].downsamples or infos[j].downsamples:
            raise LesionError(f"Blocks {infos[i].name} and {infos[j].name} do not have the same shapes.")
        order[i], order[j] = order[j], order[i]
    dead = set(deleted)
    wrong = sum(_wrong(_forward(model, blocks, xc, order, dead), yc) for xc, yc in _chunks(x, y, batch_size))
    return wrong / len(y)


def swap_pairs(infos: Sequence[BlockInfo]) -> list[tuple[int, int]]:
    """Every pair of blocks of one stage that can trade places (neither changes the shape)."""
    same = [i for i, b in enumerate(infos) if not b.downsamples]
    return [(i, j) for a, i in enumerate(same) for j in same[a + 1 :] if infos[i].stage == infos[j].stage]


def lesion_network(
    model: ResNet,
    x: Tensor,
    y: Tensor,
    settings: LesionSettings,
    *,
    name: str,
    progress: Progress | None = None,
) -> LesionResult:
    """Single deletions, k random deletions and k random swaps of one network, on ``x`` and ``y``.

    The model is left as it was (eval mode under its lock for the duration; no hooks, no swapped
    modules), after a failure too.
    """
    infos = block_infos(model)
    n = len(infos)
    if max(settings.ks, default=0) > n:
        raise LesionError(f"Cannot delete {max(settings.ks)} blocks: {name} has only {n}.")
    total = _units(n, settings, len(y))
    done = [0]

    def tick(units: int = 1) -> None:
        done[0] += units
        if progress is not None:
            progress(done[0], total)

    deletable = [i for i, b in enumerate(infos) if b.deletable]
    pairs = swap_pairs(infos)
    rng = random.Random(settings.seed)
    kw = {"batch_size": settings.batch_size}
    with preserve_model_state(model), torch.inference_mode():
        intact_wrong, block_wrong, can = single_sweep_wrong(
            model, x, y, batch_size=settings.batch_size, tick=tick
        )
        intact = float(intact_wrong.mean())
        single = np.where(can, block_wrong.mean(1), np.nan)
        change_ci = np.full((n, 2), np.nan)
        for i in np.flatnonzero(can):  # the change from intact, paired on the same images
            d = paired_difference(intact_wrong, block_wrong[i], seed=settings.seed)
            change_ci[i] = d.low, d.high
        k_error = np.full((len(settings.ks), settings.draws), np.nan)
        for a, k in enumerate(settings.ks):
            for d in range(settings.draws):
                if k <= len(deletable):
                    k_error[a, d] = lesioned_error(model, x, y, deleted=rng.sample(deletable, k), **kw)
                tick()
        swap_error = np.full((len(settings.swap_ks), settings.draws), np.nan)
        for a, k in enumerate(settings.swap_ks):
            for d in range(settings.draws):
                if k <= len(pairs):
                    swap_error[a, d] = lesioned_error(model, x, y, swaps=rng.sample(pairs, k), **kw)
                tick()
    return LesionResult(
        model=name,
        blocks=infos,
        intact_error=float(intact),
        single_error=single,
        single_change_ci=change_ci,
        n_images=len(y),
        ks=np.array(settings.ks, dtype=np.int64),
        k_error=k_error,
        swap_ks=np.array(settings.swap_ks, dtype=np.int64),
        swap_error=swap_error,
    )


# --------------------------------------------------------------------------- a model and its twin


def study_data(loaded: LoadedModel, n: int) -> tuple[Tensor, Tensor, str]:
    """The held-out images ``(n, C, H, W)`` (preprocessed) and labels ``(n,)`` of ``loaded``'s run.

    Raises:
        LesionError: the model has no held-out data (random weights, a checkpoint, ImageNet weights,
            or a run on a dataset that is not built in).
    """
    from resviz.analysis.pairs import held_out

    data = held_out(loaded, n)
    if data is None and loaded.trained and loaded.class_names and len(loaded.class_names) == 1000:
        return _agreement_data(loaded, n)
    if data is None:
        why = (
            "it is untrained (random weights)"
            if not loaded.trained
            else f"its weights ({loaded.source}) come with no held-out set here"
        )
        raise LesionError(
            f"{loaded.name} has no held-out images to measure errors on, because {why}: pick a run "
            "trained on shapes or digits (the bundled demo pair or a Training Lab run)."
        )
    cfg = loaded.config
    if data.x_test.shape[1] != cfg.in_channels or data.num_classes > cfg.num_classes:
        raise LesionError(f"The held-out {data.name} images do not fit {loaded.name}.")
    return data.normalize(data.x_test), data.y_test, f"{len(data.y_test)} held-out {data.name} images"


def _agreement_data(loaded: LoadedModel, n: int) -> tuple[Tensor, Tensor, str]:
    """ImageNet weights have no held-out set here: the sample photos, labelled with the intact
    model's own top-1, so that "error" reads as disagreement with the intact network."""
    from resviz.device import model_device
    from resviz.images import load_sample, sample_images

    photos = [load_sample(name).image for name in sample_images()[:n]]
    x = loaded.preprocessing.tensor(photos)
    model = loaded.model
    with preserve_model_state(model), torch.no_grad():  # holds the model's lock, eval mode
        y = model(x.to(model_device(model))).argmax(1).cpu()
    return x, y, f"{len(y)} sample photos, against the intact model's own top-1 (error = disagreement)"


def lesion_study(
    loaded: LoadedModel, settings: LesionSettings = LesionSettings(), *, progress: Progress | None = None
) -> LesionStudy:
    """The lesion study of ``loaded`` and its plain (or residual) counterpart on its held-out set.

    Args:
        loaded: a trained model with a held-out set (a run on shapes or digits).
        settings: what to measure.
        progress: ``(done, total)`` callback; units are block evaluations and random draws.

    Raises:
        LesionError: no held-out data, or more deletions than blocks.
    """
    from resviz.analysis.pairs import model_pair
    from resviz.device import model_device

    x, y, data = study_data(loaded, settings.n_images)
    pair = model_pair(loaded)
    nets = (pair.residual, pair.plain)
    n_blocks = len(pair.residual.model.named_blocks())
    if max(settings.ks, default=0) > n_blocks:
        raise LesionError(f"Cannot delete {max(settings.ks)} blocks: {loaded.name} has only {n_blocks}.")
    units = [_units(len(net.model.named_blocks()), settings, len(y)) for net in nets]
    results = []
    for i, net in enumerate(nets):

        def sub(done: int, _total: int, before: int = sum(units[:i])) -> None:  # one bar for both
            if progress is not None:
                progress(before + done, sum(units))

        dev = model_device(net.model)
        results.append(lesion_network(net.model, x.to(dev), y.to(dev), settings, name=net.name, progress=sub))
    notes = [f"{pair.plain.name}: {b.name} {b.how}." for b in results[1].blocks if not b.deletable]
    if not swap_pairs(results[0].blocks):
        notes.append("No two blocks of one stage have the same shapes: no swaps are possible.")
    return LesionStudy(
        residual=results[0],
        plain=results[1],
        n_images=len(y),
        data=data,
        how=pair.how,
        chance=1.0 - 1.0 / max(int(y.max()) + 1, 1) if len(y) else math.nan,
        notes=tuple(notes),
    )


def _units(n_blocks: int, settings: LesionSettings, n_images: int) -> int:
    """Progress units of :func:`lesion_network`: block evaluations of the sweep, then random draws."""
    n_chunks = math.ceil(n_images / settings.batch_size)
    return n_chunks * n_blocks + settings.draws * (len(settings.ks) + len(settings.swap_ks))


# --------------------------------------------------------------------------- tables


def single_rows(study: LesionStudy) -> list[dict[str, object]]:
    """One row per block and network: the error with that block deleted."""
    rows = []
    for res in (study.residual, study.plain):
        for b, err in zip(res.blocks, res.single_error, strict=True):
            rows.append(
                {
                    "model": res.model,
                    "block": b.name,
                    "downsamples": b.downsamples,
                    "deleted_error": None if math.isnan(err) else float(err),
                    "intact_error": res.intact_error,
                    "deletion": b.how,
                }
            )
    return rows


def curve_rows(study: LesionStudy, kind: str = "delete") -> list[dict[str, object]]:
    """One row per network, k and draw: the error after deleting k blocks (or swapping k pairs)."""
    rows = []
    for res in (study.residual, study.plain):
        ks, err = (res.ks, res.k_error) if kind == "delete" else (res.swap_ks, res.swap_error)
        for k, draws in zip(ks.tolist(), err, strict=True):
            for d, e in enumerate(draws.tolist()):
                rows.append({"model": res.model, "k": k, "draw": d, "error": None if math.isnan(e) else e})
    return rows
