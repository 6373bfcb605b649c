"""The figures the README quotes, made from the bundled files by one function (no hand-copied numbers).

``python -m resviz report`` prints them; ``python -m resviz report --write README.md`` puts them
between the README's ``<!-- report:begin -->`` and ``<!-- report:end -->`` markers, and a test
fails when the two differ. Every error rate carries its sample size and 95% interval.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from resviz.demo import MODELS, degradation_checks, label, load_seeds
from resviz.stats import rate_of

BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _ci(share: float, n: int) -> str:
    r = rate_of(share, n)
    return f"{100 * r.value:.1f}% ({100 * r.low:.1f}-{100 * r.high:.1f})"


def report_markdown() -> str:
    """The README's figures of the bundled demo group, as markdown."""
    seeds = load_seeds()
    if not seeds:
        return "_No bundled demo group: run `make demo-weights`._\n"
    out = []
    n_probe = next(iter(seeds[0].values())).n_train_probe
    n_test = next(iter(seeds[0].values())).n_test
    out.append(
        f"Training error on the first {n_probe:,} training images, held-out error on the first "
        f"{n_test:,} held-out images, both with their 95% Wilson interval; final loss: the mean "
        "mini-batch loss of the last 20 steps.\n"
    )
    out.append("| seed | model | training error | held-out error | gap (points) | final loss |")
    out.append("|---|---|---|---|---|---|")
    for s, models in sorted(seeds.items()):
        for name in MODELS:
            m = models[name]
            out.append(
                f"| {s} | {label(name)} | {_ci(m.train_error, m.n_train_probe)} | "
                f"{_ci(m.test_error, m.n_test)} | {100 * m.gap:+.1f} | {m.final_loss:.3f} |"
            )
    out.append("")
    out.append("He et al.'s Figure 6, as checks on every seed (`tests/test_bundled.py` asserts each):\n")
    out.append("| seed | claim | measured | holds |")
    out.append("|---|---|---|---|")
    for c in degradation_checks(seeds):
        out.append(f"| {c.seed} | {c.claim} | {c.figure} | {'yes' if c.holds else '**no**'} |")
    out.append("")
    out += _pointing()
    out += _lesion()
    out += _story()
    return "\n".join(out).rstrip() + "\n"


def _pointing() -> list[str]:
    from resviz.runs import BUNDLED_DIR, read_metadata

    rows = []
    for name in MODELS:
        meta = read_metadata(BUNDLED_DIR / f"demo-shapes-{name}")
        hits = meta.get("pointing_game")
        n = int(dict(meta.get("train_config") or {}).get("n_test") or 500)  # type: ignore[arg-type]
        if isinstance(hits, float):
            rows.append(f"{label(name)} {_ci(hits, n)}")
    if not rows:
        return []
    return [
        "Grad-CAM pointing game (seed 0, last stage, an 8x8 map; the share of held-out images whose "
        "map peaks on the object's mask, 95% interval): " + "; ".join(rows) + ".\n"
    ]


def _lesion() -> list[str]:
    from resviz.demo_results import path
    from resviz.serialize import SerializeError, loads

    try:
        item = loads(path("lesion").read_text())
    except (OSError, SerializeError):
        return []
    study = item.result
    lines = [
        f"Lesion study of seed 0 (precomputed, {study.n_images:,} held-out images, paired 95% intervals):\n"
    ]
    for res in (study.residual, study.plain):
        change = res.single_error - res.intact_error
        can = [i for i, b in enumerate(res.blocks) if b.deletable]
        measurable = [i for i in can if res.single_significant[i]]
        worst = max(can, key=lambda i: change[i])
        lo, hi = res.single_change_ci[worst]
        lines.append(
            f"- {label(res.model)} (intact {_ci(res.intact_error, res.n_images)}): {len(can)} of "
            f"{len(res.blocks)} blocks can be deleted; {len(measurable)} deletions change the error "
            f"measurably; the worst, {res.blocks[worst].name}, adds {100 * change[worst]:+.1f} points "
            f"({100 * lo:+.1f} to {100 * hi:+.1f})."
        )
    return [*lines, ""]


def _story() -> list[str]:
    from resviz.analysis.story import MEASURES
    from resviz.demo_results import path
    from resviz.serialize import SerializeError, loads

    try:
        init = loads(path("story_init").read_text()).result
    except (OSError, SerializeError):
        return []
    lines = [
        f"The story's measurement ({init.batch}); first layer over last, lowest and highest over seeds:\n"
    ]
    lines.append("| network | BatchNorm | " + " | ".join(MEASURES) + " |")
    lines.append("|---|---|" + "---|" * len(MEASURES))
    for model in init.models:
        for bn in (True, False):
            cells = []
            for measure in MEASURES:
                v = init.values(model, bn, measure)
                cells.append(f"{_g(v.min())} to {_g(v.max())}")
            lines.append(f"| {label(model)} | {'on' if bn else 'off'} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _g(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.3g}"


def readme_section(readme: str | Path) -> str | None:
    """The text between the markers in ``readme`` (None when it has none)."""
    text = Path(readme).read_text()
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, re.S)
    return m.group(1) if m else None


def write_readme(readme: str | Path, section: str) -> None:
    """Replace the text between the markers with ``section``."""
    path = Path(readme)
    text = path.read_text()
    new = re.sub(
        re.escape(BEGIN) + r"\n.*?" + re.escape(END), lambda _m: f"{BEGIN}\n{section}{END}", text, flags=re.S
    )
    path.write_text(new)
