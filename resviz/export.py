"""Tables out: records (a list of flat dicts, as every analysis offers) as CSV text."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence


def to_csv(rows: Sequence[dict[str, object]]) -> str:
    """CSV text with a header row taken from the first record (empty string for no rows)."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
