"""A run folder's files, written and read here alone: atomic writes, JSON lines, the summary and the config.

A run folder holds ``summary.json`` (how the run ended, its step, initial and final metrics), ``config.yaml``
(the resolved config), ``metrics.jsonl`` (a row per epoch), ``probes.jsonl`` (a row per probe),
``checkpoint.pt``, ``figures/`` (the lecture figure per probe), TensorBoard's event files and ``train.log``.
Every JSON file is strict JSON: NaN and inf are written as null (readers take null back as NaN). A file is
replaced whole, through a temporary file and a rename, so a reader never sees half of one; a JSON-lines file
is appended a whole line at a time, and a line torn by a kill is skipped when read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from omegaconf import OmegaConf

SUMMARY, CONFIG, METRICS, PROBES, CHECKPOINT, TRAIN_LOG = (
    "summary.json", "config.yaml", "metrics.jsonl", "probes.jsonl", "checkpoint.pt", "train.log")
RUN_FILES = (SUMMARY, CHECKPOINT, METRICS, PROBES)
"""A folder holding any of these holds a run."""

FINAL = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
"""The metrics a run's summary.json keeps from its last epoch (``final``)."""


def probe_figure(run_dir: Path, step: int) -> Path:
    """Where the lecture figure of the probe at ``step`` is drawn: figures/probe_000050.png."""
    return run_dir / "figures" / f"probe_{step:06d}.png"


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it replaces ``path`` when the block ends, and is removed if the
    block fails (an interrupt too). Its name is hidden and unique, so two writers never share one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, replacing it whole."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON to ``path``, replacing it whole."""
    write_text(path, json.dumps(_clean(data), indent=2, default=_jsonable, allow_nan=False) + "\n")


def json_line(row: dict) -> str:
    """One row of a JSON-lines file: strict JSON on one line, with its newline."""
    return json.dumps(_clean(row), default=_jsonable, allow_nan=False) + "\n"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # a numpy or torch scalar
        return _clean(value.item())
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class JsonLines:
    """A JSON-lines file open for appending; each row is written whole and flushed."""

    def __init__(self, path: Path) -> None:
        self._stream = open(path, "a")

    def append(self, row: dict) -> None:
        """Write ``row`` as one line."""
        self._stream.write(json_line(row))
        self._stream.flush()

    def close(self) -> None:
        """Close the file."""
        self._stream.close()


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file ([] when there is none); a torn line is skipped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def truncate_jsonl(path: Path, keep_below: int) -> list[dict]:
    """Drop the rows of a JSON-lines file whose ``step`` is >= ``keep_below``; return the rest."""
    if not path.exists():
        return []
    rows = [row for row in read_jsonl(path) if row.get("step", 0) < keep_below]
    write_text(path, "".join(json_line(row) for row in rows))
    return rows


def restart_logs(run_dir: Path) -> int | None:
    """A run started over in its folder drops the logs of its earlier try; 0 (TensorBoard purges from
    step 0) when there were any, else None."""
    logs = [run_dir / METRICS, run_dir / PROBES]
    if not any(p.exists() for p in logs):
        return None
    for path in logs:
        truncate_jsonl(path, 0)
    return 0


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` already holds (part of) a run."""
    return any((folder / name).exists() for name in RUN_FILES)


def read_summary(run_dir: Path) -> dict:
    """``run_dir``'s summary.json, or {} when it is missing or unreadable."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


FINISHED = ("completed", "diverged")
"""The statuses of a run that ended with a result: a sweep with ``skip_completed=true`` does not run it again."""


def finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that ended as completed or diverged (a sweep skips those)."""
    return read_summary(run_dir).get("status") in FINISHED


def has_ended(summary: dict) -> bool:
    """Whether a summary records how its run ended (completed, diverged, failed, interrupted)."""
    return summary.get("status") not in (None, "running")


def failure(error: str) -> dict:
    """The summary of a run that failed, with its one-line error."""
    return {"status": "failed", "error": error}


def stopped_by(summaries: Iterable[dict]) -> str | None:
    """The signal (SIGINT, SIGTERM) that interrupted the first of these runs, or None when none was."""
    return next((s.get("signal") for s in summaries if s.get("status") == "interrupted"), None)


def write_summary(run_dir: Path, summary: dict) -> None:
    """Replace ``run_dir``'s summary.json with ``summary``."""
    write_json_atomic(run_dir / SUMMARY, summary)


def write_config(run_dir: Path, cfg: Any) -> None:
    """Write the run's resolved config to its config.yaml."""
    write_text(run_dir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True))


def read_config(run_dir: Path) -> dict:
    """The run's resolved config (its config.yaml); {} when it has none."""
    path = run_dir / CONFIG
    return OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {}
