"""Tables out: records (a list of flat dicts, as every analysis offers) as CSV text."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from resviz.text import csv_cell


def to_csv(rows: Sequence[dict[str, object]]) -> str:
    """CSV text with a header row taken from the first record (empty string for no rows)."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    # Titles, file and class names reach these cells: none may become a spreadsheet formula.
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()
