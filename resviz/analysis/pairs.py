"""A model, its plain (or residual) counterpart, and the held-out data to judge them on.

The "why it works" analyses compare a residual network with a plain one. Which plain one depends on
where the weights come from:

- a saved or bundled training run: the run of the twin variant trained in the same session (same
  data, seed and recipe), so both networks are *trained*;
- anything else (random weights, a checkpoint, ImageNet weights): the twin built by
  :func:`resviz.models.make_twin`, which shares every weight the two have in common. For trained
  weights that twin is not a trained network, and :attr:`ModelPair.how` says so.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resviz.models import make_twin, twin_name

# The two counterparts a page can compare a residual network with, named the same way everywhere
# (issue 21: one tooltip was all that told them apart). A trained twin is a network in its own
# right; the same weights with the shortcuts cut is the residual net broken on purpose.
TRAINED_TWIN = "plain twin (trained)"
CUT_TWIN = "shortcuts cut (same weights)"


def counterpart_name(residual: bool, trained: bool) -> str:
    """The name of a network's counterpart: :data:`TRAINED_TWIN` or :data:`CUT_TWIN` for a residual
    network, and their mirror images for a plain one (whose counterpart gains the shortcuts)."""
    if trained:
        return TRAINED_TWIN if residual else "residual twin (trained)"
    return CUT_TWIN if residual else "shortcuts added (same weights)"


def counterpart_caption(residual: bool, trained: bool) -> str:
    """One sentence for a caption: which counterpart a chart compares with, and what it is."""
    name = counterpart_name(residual, trained)
    if trained:
        return (
            f"Compared with the **{name}**: the other variant, trained in the same session on the same "
            "data and seed, so both are working networks."
        )
    what = "removed" if residual else "added"
    return (
        f"Compared with **{name}**: this network's own weights with every shortcut {what}; not a "
        "trained network, so it shows what the shortcuts do inside this one."
    )


if TYPE_CHECKING:
    import torch

    from resviz.datasets import ImageDataset
    from resviz.models.weights import LoadedModel


@dataclass(frozen=True)
class ModelPair:
    """A residual network and a plain one, in that order, whatever order they were asked in."""

    residual: LoadedModel
    plain: LoadedModel
    how: str  # for people: where the counterpart came from
    trained_twin: bool = False  # the counterpart is the twin trained in the same session (TRAINED_TWIN)


def twin_run_path(loaded: LoadedModel) -> str | None:
    """The folder of the run that trained ``loaded``'s twin alongside it, if there is one."""
    if loaded.weights != "run":
        return None
    return _sibling_run(loaded.metadata, twin_name(loaded.name))


def _sibling_run(meta: Mapping[str, object], want: str) -> str | None:
    """The folder of run ``want`` from the training session of the run described by ``meta``."""
    from resviz.runs import list_runs, read_metadata

    for info in list_runs():
        if info.name != want:
            continue
        other = read_metadata(info.path)
        same_session = other.get("group") is not None and other.get("group") == meta.get("group")
        same_recipe = other.get("train_config") == meta.get("train_config") and other.get(
            "created"
        ) == meta.get("created")
        if same_session or same_recipe:
            return str(info.path)
    return None


def model_pair(loaded: LoadedModel, *, device: str | torch.device | None = None) -> ModelPair:
    """``loaded`` and its counterpart: the twin trained in the same session, else ``make_twin``.

    The counterpart is a new model; ``loaded.model`` itself is neither copied nor changed.
    """
    import copy

    from resviz.device import model_device
    from resviz.models.weights import load_model

    dev = device if device is not None else model_device(loaded.model)
    path = twin_run_path(loaded)
    residual = bool(loaded.config.skip)
    if path is not None:
        other = load_model(twin_name(loaded.name), path, device=dev)
        name = counterpart_name(residual, True)
        how = f"{other.name} trained in the same session, the {name} ({other.source})"
    else:
        twin = make_twin(loaded.model).to(dev).eval()
        other = copy.copy(loaded)
        other.model, other.name, other.notice = twin, twin_name(loaded.name), None
        shared = "random" if not loaded.trained else f"{loaded.source}, not trained without shortcuts"
        how = f"{other.name}: {counterpart_name(residual, False)} ({shared})"
    trained = path is not None
    if residual:
        return ModelPair(residual=loaded, plain=other, how=how, trained_twin=trained)
    return ModelPair(residual=other, plain=loaded, how=how, trained_twin=trained)


def held_out(loaded: LoadedModel, n: int | None = None) -> ImageDataset | None:
    """The held-out set of the dataset ``loaded`` was trained on (its first ``n`` images), or None.

    Only the built-in datasets (shapes, digits) are read here: they are made or loaded in a moment
    and never need the network. Models without a run (random, checkpoint, ImageNet) have none.
    """
    return run_held_out(loaded.metadata, n) if loaded.weights == "run" else None


def run_held_out(meta: Mapping[str, object], n: int | None = None) -> ImageDataset | None:
    """:func:`held_out` from a run's metadata (``run.json``), without loading its model."""
    name = meta.get("dataset")
    if name not in ("shapes", "digits"):
        return None
    from resviz.datasets import load_dataset

    tc = meta.get("train_config") or {}
    data = load_dataset(
        str(name),
        seed=int(tc.get("data_seed", 0)),  # type: ignore[union-attr]
        size=tc.get("size"),  # type: ignore[union-attr]
        n_train=64 if name == "shapes" else None,  # the training half is not needed here
        n_test=n if name == "shapes" else None,
    )
    if n is not None and n < len(data.y_test):
        masks = data.masks_test[:n] if data.masks_test is not None else None
        data = dataclasses.replace(data, x_test=data.x_test[:n], y_test=data.y_test[:n], masks_test=masks)
    return data


def untrained_warning(loaded: LoadedModel) -> str | None:
    """Says so when ``loaded`` or the twin trained beside it never left chance, else None.

    Only runs have a training record; random weights are labelled untrained wherever they are shown.
    """
    if loaded.weights != "run":
        return None
    from resviz.analysis.chance import learned_from_run, vacuous_comparison
    from resviz.runs import read_curves, read_metadata

    own = _sibling_run(loaded.metadata, loaded.name)
    records = [(read_metadata(own), read_curves(own))] if own else [(loaded.metadata, None)]
    twin = twin_run_path(loaded)
    if twin:
        records.append((read_metadata(twin), read_curves(twin)))
    majority = _majority_error(loaded.metadata)
    return vacuous_comparison(*(learned_from_run(m, c, majority) for m, c in records))


def _majority_error(meta: Mapping[str, object]) -> float | None:
    """The held-out error of always answering the most common class (None: no built-in data)."""
    tc = meta.get("train_config") or {}
    return _majority_cached(
        str(meta.get("dataset")),
        int(tc.get("data_seed", 0)),  # type: ignore[union-attr]
        tc.get("size"),  # type: ignore[union-attr]
        tc.get("n_test"),  # type: ignore[union-attr]
    )


@functools.lru_cache(maxsize=8)
def _majority_cached(dataset: str, data_seed: int, size: int | None, n_test: int | None) -> float | None:
    from resviz.stats import majority_error

    data = run_held_out({"dataset": dataset, "train_config": {"data_seed": data_seed, "size": size}}, n_test)
    return None if data is None else majority_error(data.y_test.numpy(), data.num_classes)
