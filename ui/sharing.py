"""The shared-server settings as the pages see them, and this browser session's id.

:func:`resviz.sharing.read_sharing` reads the environment; here ``st.secrets`` may set the same
keys (``RESVIZ_SHARED = "1"`` in ``.streamlit/secrets.toml``), and the environment wins.
"""

from __future__ import annotations

import contextlib
import uuid

import streamlit as st

from resviz.sharing import ALLOW_TRAINING, DATA_DIR, SHARED, Sharing, read_sharing
from ui import state


def current() -> Sharing:
    """The settings in force: environment first, then ``st.secrets``."""
    import os

    values: dict[str, object] = {}
    with contextlib.suppress(Exception):  # no secrets file: st.secrets raises on first access
        values.update({k: st.secrets[k] for k in (SHARED, ALLOW_TRAINING, DATA_DIR) if k in st.secrets})
    values.update({k: os.environ[k] for k in (SHARED, ALLOW_TRAINING, DATA_DIR) if k in os.environ})
    return read_sharing(values)


def session_id() -> str:
    """Who owns what this session starts: the signed-in user where ``st.login`` is set up (stable
    across reloads and tabs), else an id made once per browser session and never sent to it."""
    with contextlib.suppress(Exception):  # no [auth] configured: st.user has no identity
        if st.user.is_logged_in and (who := st.user.get("sub") or st.user.get("email")):
            return f"user:{who}"
    return st.session_state.setdefault(state.SESSION_ID, uuid.uuid4().hex)
