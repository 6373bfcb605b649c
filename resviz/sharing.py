"""One server, many visitors: the shared-server settings, and who may change a run.

Off by default (one person on their own machine). ``RESVIZ_SHARED=1`` (an environment variable,
or the same key in ``.streamlit/secrets.toml``, which :mod:`ui.sharing` reads) makes saved runs
read-only in the browser; ``RESVIZ_ALLOW_TRAINING=0`` turns the Training Lab's Start off; folder
training always stays inside the data root (``RESVIZ_DATA_DIR``, default ``~/.cache/resviz/data``).
Library code: no streamlit here, the values come in as a mapping.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SHARED = "RESVIZ_SHARED"
ALLOW_TRAINING = "RESVIZ_ALLOW_TRAINING"
DATA_DIR = "RESVIZ_DATA_DIR"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Sharing:
    """What a server shared by several visitors allows."""

    shared: bool = False  # runs are read-only in the browser; the pages say so
    allow_training: bool = True  # the Training Lab may start runs
    data_root: Path | None = None  # folder training stays inside it (None: nowhere)

    @property
    def notice(self) -> str | None:
        """The one line every page shows while the server is shared."""
        if not self.shared:
            return None
        training = "training is on" if self.allow_training else "training is off"
        return f"Shared server: saved runs are read-only here and {training}."


def read_sharing(values: Mapping[str, object] | None = None) -> Sharing:
    """The settings from ``values`` (default: the environment); unknown spellings count as off."""
    values = os.environ if values is None else values

    def flag(key: str, default: bool) -> bool:
        raw = values.get(key)
        return default if raw is None else str(raw).strip().lower() in _TRUE

    root = values.get(DATA_DIR)  # as resviz.datasets.default_data_root, without importing torch
    return Sharing(
        shared=flag(SHARED, False),
        allow_training=flag(ALLOW_TRAINING, True),
        data_root=Path(str(root)).expanduser() if root else Path.home() / ".cache" / "resviz" / "data",
    )


def owner_token(session_id: str) -> str:
    """What ``run.json`` keeps of the session that trained a run: a hash, never the id itself."""
    return hashlib.sha256(f"resviz-owner:{session_id}".encode()).hexdigest()[:16]


def may_change(run_owner: str, session_id: str, sharing: Sharing) -> bool:
    """Whether this session may rename, delete or stop what ``run_owner`` started.

    A shared server changes nothing from the browser; otherwise a run with an owner belongs to its
    session alone, and one without (trained by the CLI, or before owners existed) to whoever runs
    the app on their own machine.
    """
    if sharing.shared:
        return False
    return not run_owner or owns(run_owner, session_id)


def owns(owner: str, session_id: str) -> bool:
    """Whether ``owner`` (a run's or a training job's token) is this session's."""
    return bool(owner) and owner == owner_token(session_id)
