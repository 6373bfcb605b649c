"""The demo group's slow results, computed once by ``python -m resviz demo-bundle`` and shipped.

A first visit to Why it works opens on the bundled ResNet-56 and its plain twin; the lesion study,
the 21x21 loss landscapes and the story's measurements take minutes on 2 CPU cores. They are
computed here with exactly the page's default settings and stored as JSON beside the weights
(:mod:`resviz.serialize`: data, never code). A page shows one only for the model and the settings it
was computed with, labelled as precomputed, with a button to compute it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resviz import serialize
from resviz.demo import BUNDLED, GROUP

if TYPE_CHECKING:
    from resviz.models.weights import LoadedModel

RESULTS = Path("demo") / "results"
MODEL = "resnet56"  # the first visit's model (the sidebar's default); its twin comes with it
LANDSCAPE_SEEDS = (0, 1)  # the two random directions


@dataclass(frozen=True)
class Stored:
    """A precomputed result and what it was computed with."""

    kind: str
    model: str
    key: Any  # the settings, as the page states them
    result: Any
    seconds: float  # what computing it took, on the machine that bundled it


def path(kind: str, root: str | Path = BUNDLED) -> Path:
    return Path(root) / RESULTS / f"{kind}.json"


def stored(kind: str, loaded: LoadedModel, key: Any, root: str | Path = BUNDLED) -> Stored | None:
    """The precomputed ``kind`` result when ``loaded`` is the bundled demo model and ``key`` (the
    page's settings) is what it was computed with; else None."""
    meta = loaded.metadata if loaded.weights == "run" else {}
    if meta.get("group") != GROUP or meta.get("name") != MODEL:
        return None
    return bundled(kind, key, root)


def bundled(kind: str, key: Any, root: str | Path = BUNDLED) -> Stored | None:
    """The precomputed ``kind`` result when it was computed with ``key``, whatever the sidebar's
    model (for results that do not depend on it, like the story's fresh twins)."""
    try:
        item = serialize.loads(path(kind, root).read_text())
    except (OSError, serialize.SerializeError):
        return None
    return item if isinstance(item, Stored) and item.key == key else None


# --------------------------------------------------------------------------- what the pages compute


def lesion_settings():  # type: ignore[no-untyped-def]
    """The lesion tab's defaults: the whole held-out set (1,000 images), a minute on 2 cores."""
    from resviz.analysis.lesion import LesionSettings

    return LesionSettings(n_images=1000, ks=(1, 2, 4, 8, 12, 16), swap_ks=(1, 2, 4), draws=5)


LANDSCAPE_KEY = (21, 1.0, 100, False)  # grid, span, held-out images, interpolation line


def compute_lesion(loaded: LoadedModel, progress: Callable[[int, int], None] | None = None):  # type: ignore[no-untyped-def]
    from resviz.analysis.lesion import lesion_study

    return lesion_study(loaded, lesion_settings(), progress=progress)


def compute_landscape(loaded: LoadedModel, key: tuple = LANDSCAPE_KEY, options=None, pair=None):  # type: ignore[no-untyped-def]
    """The landscape tab's computation: both nets on the first ``n`` held-out images (the tab
    passes its own ``pair``, whose origin it shows, and its progress and stop ``options``)."""
    from resviz.analysis.landscape import evaluation_images, initial_state, twin_landscape
    from resviz.analysis.landscape_eval import DEFAULT_OPTIONS
    from resviz.analysis.pairs import held_out, model_pair
    from resviz.errors import ResvizError

    grid, span, n, interp = key
    pair = pair or model_pair(loaded)
    data = held_out(loaded, n)
    if data is None:
        raise ResvizError("This run's dataset has no built-in held-out set; pick a run on shapes or digits.")
    x, y = evaluation_images(data, n)
    starts = None
    if interp and pair.plain.weights == "run":
        starts = tuple(
            initial_state(m.model, int(m.metadata.get("seed", 0))) for m in (pair.residual, pair.plain)
        )
    return twin_landscape(
        pair.residual.model,
        pair.plain.model,
        x,
        y,
        grid=grid,
        span=span,
        seeds=LANDSCAPE_SEEDS,
        names=(pair.residual.name, pair.plain.name),
        starts=starts,
        options=options or DEFAULT_OPTIONS,
    )


def path_settings():  # type: ignore[no-untyped-def]
    """The paths tab's defaults (8 sampled paths per length, 16 images)."""
    from resviz.analysis.paths import PathSettings

    return PathSettings(samples=8, batch_size=16)


def compute_paths(loaded: LoadedModel):  # type: ignore[no-untyped-def]
    from resviz.analysis.paths import path_study

    return path_study(loaded, path_settings())


STORY_INIT_KEY = (56, (0, 1, 2))  # depth, seeds


def compute_story_init(device: str = "cpu"):  # type: ignore[no-untyped-def]
    from resviz.analysis.story import story_at_init

    depth, seeds = STORY_INIT_KEY
    return story_at_init(depth, seeds, device=device)


def compute_story_training(root: str | Path = BUNDLED):  # type: ignore[no-untyped-def]
    from resviz.analysis.story import story_through_training

    runs = Path(root) / "runs"
    return story_through_training([runs / f"{GROUP}-plain56", runs / f"{GROUP}-resnet56"])


def precompute(root: str | Path = BUNDLED) -> list[Path]:
    """Compute and store every slow result of the bundled demo model; returns the files written."""
    from resviz.models.weights import load_model

    loaded = load_model(MODEL, str(Path(root) / "runs" / f"{GROUP}-{MODEL}"))
    jobs = {
        "lesion": (lesion_settings(), lambda: compute_lesion(loaded)),
        "landscape": (LANDSCAPE_KEY, lambda: compute_landscape(loaded)),
        "paths": (path_settings(), lambda: compute_paths(loaded)),
        "story_init": (STORY_INIT_KEY, compute_story_init),
        "story_training": ("snapshots", lambda: compute_story_training(root)),
    }
    written = []
    for kind, (key, compute) in jobs.items():
        start = time.perf_counter()
        result = compute()
        item = Stored(kind, MODEL, key, result, time.perf_counter() - start)
        file = path(kind, root)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(serialize.dumps(item))
        written.append(file)
    return written
