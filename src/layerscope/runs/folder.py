"""A run folder's files, written and read here alone: atomic writes, JSON lines, the summary and the config.

A run folder holds ``summary.json`` (how the run ended, its step, initial and final metrics), ``config.yaml``
(the resolved config), ``metrics.jsonl`` (a row per epoch), ``probes.jsonl`` (a row per probe),
``checkpoint.pt``, ``figures/`` (the lecture figure per probe), TensorBoard's event files and ``train.log``.
Every JSON file is strict JSON: NaN and inf are written as null (readers take null back as NaN). A file is
replaced whole, through a temporary file and a rename, so a reader never sees half of one; a JSON-lines file
is appended a whole line at a time, and a line torn by a kill is skipped when read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import OmegaConf

from layerscope.files import load_yaml, truncate_jsonl, write_json_atomic, write_text, yaml_text

SUMMARY, CONFIG, METRICS, PROBES, CHECKPOINT, TRAIN_LOG = (
    "summary.json", "config.yaml", "metrics.jsonl", "probes.jsonl", "checkpoint.pt", "train.log")
RUN_FILES = (SUMMARY, CHECKPOINT, METRICS, PROBES)
"""A folder holding any of these holds a run."""

FINAL = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
"""The metrics a run's summary.json keeps from its last epoch (``final``)."""


def probe_figure(run_dir: Path, step: int) -> Path:
    """Where the lecture figure of the probe at ``step`` is drawn: figures/probe_000050.png."""
    return run_dir / "figures" / f"probe_{step:06d}.png"


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
    write_text(run_dir / CONFIG, yaml_text(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))


def read_config(run_dir: Path) -> dict:
    """The run's resolved config (its config.yaml); {} when it has none."""
    path = run_dir / CONFIG
    return load_yaml(path) if path.exists() else {}


def objective(summary: Mapping[str, Any]) -> float:
    """What a hyper-parameter search minimizes: a completed run's final test loss; +inf for a run that
    diverged, failed or stopped, that finished no epoch, or that has no test loss (a probe grid)."""
    loss = summary.get("final", {}).get("test_loss") if summary.get("status") == "completed" else None
    return float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf
