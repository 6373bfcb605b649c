"""Make every page run inside app.py's shell, deep links included.

Streamlit still supports the old ``pages/``-folder apps: until the first ``st.navigation`` call
in a server process, it serves a deep link (``/feature_maps``) by running that page script alone,
without app.py's page config and sidebar (``PagesManager.uses_pages_directory``).
The first ``st.navigation`` call turns that off for the whole process; we do the same and rerun, so
the rerun goes through app.py and lands on the same page. No public option turns the legacy mode
off; tests/app/test_entry_point.py fails when a Streamlit upgrade changes what this relies on.
"""

import streamlit as st


def ensure_entry_point() -> None:
    """Call first in every page script."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future streamlit without the pages/ fallback
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False  # exactly what st.navigation() does first
        st.rerun()
