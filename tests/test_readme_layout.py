"""Every module of the library is named in the README's layout, so a reader finds it there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_library_module_is_in_the_readme_layout():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout") :]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", layout))
    missing = []
    for f in sorted((ROOT / "resviz").rglob("*.py")):
        if f.parent.name == "commands" or f.stem in ("__init__", "__main__"):
            continue  # commands/ is described as a whole: one module per subcommand
        if f.stem not in words:
            missing.append(str(f.relative_to(ROOT)))
    assert not missing, f"not in the README's layout: {missing}"
