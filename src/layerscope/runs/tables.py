"""The tables layerscope writes beside its runs: CSV files and the cells of Markdown tables."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from layerscope.files import replacing


def cell(value: Any) -> str:
    """A Markdown table cell: floats to 4 significant digits, a missing or non-finite number as '–'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as CSV, with every key that any row has as a column (in first-seen order)."""
    columns = list(dict.fromkeys(key for r in rows for key in r))
    with replacing(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
