"""The one workaround on a Streamlit internal (ui/shell.py) still has what it relies on.

A folder named ``pages/`` next to ``app.py`` makes Streamlit run a deep link's page script alone
(its legacy multipage mode) until the first ``st.navigation`` call in the process. No public option
turns that off, so each page calls :func:`ui.shell.ensure_entry_point` first, which flips the flag
that ``st.navigation`` itself flips and reruns through app.py. If a Streamlit upgrade renames or
drops any of this, these tests fail before users see pages without their sidebar.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_still_has_the_flag_and_the_legacy_runner() -> None:
    from streamlit.commands import navigation
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import script_runner

    assert hasattr(PagesManager, "uses_pages_directory")
    # The flag chooses the legacy runner, which runs pages/<page>.py instead of app.py...
    runner = inspect.getsource(script_runner)
    assert "if PagesManager.uses_pages_directory:" in runner and "_mpa_v1(" in runner
    # ...and st.navigation() turns it off, exactly what ensure_entry_point does.
    assert "PagesManager.uses_pages_directory = False" in inspect.getsource(navigation.navigation)


def test_every_page_calls_ensure_entry_point_before_anything_else() -> None:
    for path in sorted((ROOT / "pages").glob("*.py")):
        tree = ast.parse(path.read_text())
        calls = [
            n
            for n in tree.body
            if isinstance(n, ast.Expr)
            and isinstance(n.value, ast.Call)
            and isinstance(n.value.func, ast.Name)
        ]
        assert calls and calls[0].value.func.id == "ensure_entry_point", path.name
        first_st = next(
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "st"
        )
        assert calls[0].lineno < first_st, f"{path.name} uses st before ensure_entry_point()"


def test_ensure_entry_point_flips_the_flag_once(monkeypatch) -> None:
    from streamlit.runtime.pages_manager import PagesManager

    import ui.shell

    reruns = []
    monkeypatch.setattr(ui.shell.st, "rerun", lambda: reruns.append(1))
    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)
    ui.shell.ensure_entry_point()
    assert PagesManager.uses_pages_directory is False and reruns == [1]
    ui.shell.ensure_entry_point()  # already through app.py: nothing to do
    assert reruns == [1]
