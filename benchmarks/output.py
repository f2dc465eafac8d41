"""What every benchmark does with its result: print the table, say where kept files are, write the JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def publish(table: str, result: dict[str, Any], json_path: Path | None, kept: Path | None) -> int:
    """Print ``table`` (and where ``kept`` files are), write ``result`` to ``json_path``; exit status 0."""
    print(table)
    if kept is not None:
        print(f"files kept in {kept}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    return 0
