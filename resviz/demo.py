"""The bundled demo group: plain-20/56 and ResNet-20/56 trained side by side, on three seeds.

``make demo-weights`` trains each seed with ``python -m resviz train --preset demo`` into a scratch
folder, then ``python -m resviz demo-bundle`` (:func:`assemble`) copies seed 0's four runs (float16
weights, curves and weight snapshots) into ``resviz/bundled/runs``, writes every seed's curves and
final figures to ``resviz/bundled/demo/seeds.json``, and precomputes the slow "Why it works"
results of seed 0 (:mod:`resviz.demo_results`).

:func:`degradation_checks` states He et al.'s Figure 6 as numbers the stored files must meet: the
tests assert them, and the README quotes them through ``python -m resviz report``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from resviz.errors import ResvizError
from resviz.stats import rate_of

BUNDLED = Path(__file__).parent / "bundled"
SEEDS_FILE = BUNDLED / "demo" / "seeds.json"
GROUP = "demo-shapes"
MODELS = ("plain20", "plain56", "resnet20", "resnet56")
FINAL_LOSS_STEPS = 20  # the final training loss: mean of the last mini-batch losses


@dataclass(frozen=True)
class SeedModel:
    """One model of one seed: final figures and the curves a band is drawn from."""

    name: str
    seed: int
    train_error: float  # on the training probe (the first n_train_probe training images), eval mode
    test_error: float  # on the first n_test held-out images
    final_loss: float  # mean mini-batch loss (train mode) over the last FINAL_LOSS_STEPS steps
    n_train_probe: int
    n_test: int
    eval_steps: tuple[int, ...]
    train_curve: tuple[float, ...]
    test_curve: tuple[float, ...]
    classes: int

    @property
    def gap(self) -> float:
        """Held-out minus training error: what memorisation adds."""
        return self.test_error - self.train_error


def seed_models(run_dir: str | Path) -> dict[str, SeedModel]:
    """The demo models saved by one ``resviz train --preset demo`` in ``run_dir``."""
    from resviz.runs import read_curves, read_metadata

    out = {}
    for folder in sorted(Path(run_dir).iterdir()):
        if not (folder / "run.json").is_file():
            continue
        meta, curves = read_metadata(folder), read_curves(folder)
        name = str(meta["name"])
        if name not in MODELS:
            continue
        tc = dict(meta["train_config"])  # type: ignore[arg-type]
        losses = [float(v) for v in curves.get("loss", [])]
        tail = losses[-FINAL_LOSS_STEPS:]
        out[name] = SeedModel(
            name=name,
            seed=int(tc["seed"]),
            train_error=float(meta["final_train_error"]),  # type: ignore[arg-type]
            test_error=float(meta["final_test_error"]),  # type: ignore[arg-type]
            final_loss=sum(tail) / len(tail) if tail else math.nan,
            n_train_probe=min(1000, int(tc.get("n_train") or 2000)),
            n_test=int(tc.get("n_test") or 500),
            eval_steps=tuple(int(s) for s in curves.get("eval_steps", [])),
            train_curve=tuple(float(v) for v in curves.get("train_error", [])),
            test_curve=tuple(float(v) for v in curves.get("test_error", [])),
            classes=len(meta.get("class_names") or ()),  # type: ignore[arg-type]
        )
    missing = set(MODELS) - set(out)
    if missing:
        raise ResvizError(f"{run_dir} lacks the demo model(s) {sorted(missing)}.")
    return out


def assemble(seed_dirs: Sequence[str | Path], out: str | Path = BUNDLED) -> Path:
    """Bundle seed 0's runs and every seed's figures under ``out``; returns the seeds file."""
    out = Path(out)
    seeds, folders = {}, {}
    for d in map(Path, seed_dirs):
        models = seed_models(d)
        seed = {m.seed for m in models.values()}
        if len(seed) != 1:
            raise ResvizError(f"{d} mixes seeds {sorted(seed)}.")
        s = seed.pop()
        seeds[s], folders[s] = models, d
    if 0 not in seeds:
        raise ResvizError("Give seed 0's runs: their weights are the ones bundled.")
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for old in runs.glob(f"{GROUP}-*"):
        shutil.rmtree(old)
    for folder in folders[0].iterdir():
        if folder.name.startswith(f"{GROUP}-"):
            shutil.copytree(folder, runs / folder.name)
    seeds_file = out / "demo" / "seeds.json"
    seeds_file.parent.mkdir(parents=True, exist_ok=True)
    record = {
        str(s): {name: _model_dict(m) for name, m in sorted(models.items())}
        for s, models in sorted(seeds.items())
    }
    seeds_file.write_text(json.dumps(record, indent=1))
    return seeds_file


def _model_dict(m: SeedModel) -> dict[str, object]:
    return {
        "train_error": m.train_error,
        "test_error": m.test_error,
        "final_loss": m.final_loss,
        "n_train_probe": m.n_train_probe,
        "n_test": m.n_test,
        "eval_steps": list(m.eval_steps),
        "train_curve": list(m.train_curve),
        "test_curve": list(m.test_curve),
        "classes": m.classes,
    }


def load_seeds(path: str | Path = SEEDS_FILE) -> dict[int, dict[str, SeedModel]]:
    """Every bundled seed's demo models (``{}`` when the file is missing)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return {
        int(s): {
            name: SeedModel(
                name=name,
                seed=int(s),
                train_error=float(d["train_error"]),
                test_error=float(d["test_error"]),
                final_loss=float(d["final_loss"]),
                n_train_probe=int(d["n_train_probe"]),
                n_test=int(d["n_test"]),
                eval_steps=tuple(d["eval_steps"]),
                train_curve=tuple(d["train_curve"]),
                test_curve=tuple(d["test_curve"]),
                classes=int(d["classes"]),
            )
            for name, d in models.items()
        }
        for s, models in raw.items()
    }


# --------------------------------------------------------------------------- He et al., Figure 6


@dataclass(frozen=True)
class Check:
    """One claim about one seed, with the figure that decides it."""

    seed: int
    claim: str
    figure: str
    holds: bool


def degradation_checks(seeds: Mapping[int, Mapping[str, SeedModel]]) -> list[Check]:
    """The issue's section 1 as checks, per seed: plain-56 trains, and still degrades; ResNet-56
    is no worse than ResNet-20; each ResNet generalises (gap at most 5 points)."""
    checks = []
    for s, m in sorted(seeds.items()):
        p20, p56, r20, r56 = (m[n] for n in MODELS)
        half_uniform = math.log(p56.classes) / 2
        checks += [
            Check(
                s,
                "plain-56 trains: final loss at most half of ln(classes)",
                f"{p56.final_loss:.3f} (limit {half_uniform:.3f})",
                p56.final_loss <= half_uniform,
            ),
            Check(
                s,
                "plain-56 trains: training error at most 40%",
                str(rate_of(p56.train_error, p56.n_train_probe)),
                p56.train_error <= 0.40,
            ),
            Check(
                s,
                "plain-56 degrades: training error at least 3 points above plain-20's",
                f"{100 * (p56.train_error - p20.train_error):+.1f} points "
                f"({100 * p56.train_error:.1f}% vs {100 * p20.train_error:.1f}%)",
                p56.train_error >= p20.train_error + 0.03,
            ),
            Check(
                s,
                "plain-56's curve above plain-20's over the last half of training",
                _above_text(p56, p20),
                _above(p56, p20),
            ),
            Check(
                s,
                "ResNet-56 at or below ResNet-20 + 1 point (training error)",
                f"{100 * r56.train_error:.1f}% vs {100 * r20.train_error:.1f}%",
                r56.train_error <= r20.train_error + 0.01,
            ),
        ]
        for r in (r20, r56):
            checks.append(
                Check(
                    s,
                    f"{label(r.name)} generalises: held-out minus training error at most 5 points",
                    f"{100 * r.gap:+.1f} points ({100 * r.test_error:.1f}% vs {100 * r.train_error:.1f}%)",
                    r.gap <= 0.05,
                )
            )
    return checks


def _second_half(a: SeedModel, b: SeedModel) -> list[tuple[float, float]]:
    last = max(a.eval_steps)
    return [(x, y) for step, x, y in zip(a.eval_steps, a.train_curve, b.train_curve) if step >= last / 2]


def _above(a: SeedModel, b: SeedModel) -> bool:
    return all(x > y for x, y in _second_half(a, b))


def _above_text(a: SeedModel, b: SeedModel) -> str:
    pairs = _second_half(a, b)
    margin = min(x - y for x, y in pairs)
    return f"{len(pairs)} evaluations, smallest margin {100 * margin:+.1f} points"


def label(name: str) -> str:
    """plain56 -> plain-56, resnet20 -> ResNet-20."""
    return name.replace("plain", "plain-").replace("resnet", "ResNet-")
