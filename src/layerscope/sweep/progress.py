"""How long the rest will take: one line per finished piece of work, with an estimate of what is left."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from layerscope.config.overrides import parse
from layerscope.files import read_yaml, write_json_atomic
from layerscope.runs.folder import SUMMARY, has_ended, read_summary

TIMINGS = ".timings.json"  # beside the work's outputs: the seconds each piece took last time


def duration(seconds: float) -> str:
    """``42 s``, or ``3 min 05 s``."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


class Estimate:
    """The seconds each named piece of work took the last time (a JSON file) and this time, and what is left.

    What is left is estimated from the last time's seconds of the pieces still to run, scaled by how this
    run's finished pieces compare with their last time; a piece never timed counts as this run's mean. Pieces
    run ``at_once`` at a time share what is left.
    """

    def __init__(self, path: Path, names: list[str], at_once: int = 1):
        self.path, self.left, self.taken, self.at_once = path, list(names), {}, at_once
        try:
            self.last = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            self.last = {}

    def done(self, name: str, seconds: float) -> str:
        """Record that ``name`` took ``seconds`` (saved for next time); '<its time>; about <rest> left'."""
        self.left.remove(name)
        self.taken[name] = seconds
        with contextlib.suppress(OSError):
            write_json_atomic(self.path, {**self.last, **self.taken})
        return duration(seconds) + (f"; about {duration(self.rest())} left" if self.left else "")

    def rest(self) -> float:
        """Seconds the pieces still to run should take."""
        before = sum(self.last.get(n, s) for n, s in self.taken.items())
        pace = sum(self.taken.values()) / before if before > 0 else 1.0
        mean = sum(self.taken.values()) / len(self.taken)
        return sum(pace * self.last[n] if n in self.last else mean for n in self.left) / self.at_once


def sweep_size(overrides: list[str]) -> int | None:
    """How many jobs a sweep's overrides make (None where that is not known in advance: intervals, globs)."""
    size = 1
    for override in parse(overrides):
        if override.is_sweep_override():
            try:
                size *= len(list(override.sweep_string_iterator()))
            except Exception:  # noqa: BLE001 - an interval or a glob: its length is the sweeper's to decide
                return None
    return size


def sweep_line(sweep_dir: Path, job: str, seconds: float) -> str:
    """'job <name> <status> in <time>; <done> of <total> jobs done, about <rest> left', read from the sweep folder.

    The folder, not this process, knows how far the sweep is: joblib's workers each see only their own jobs.
    """
    from layerscope.runs.results import run_status

    folders = [p for p in sweep_dir.iterdir() if (p / SUMMARY).exists()]
    status = run_status(sweep_dir / job)
    done = sum(has_ended(read_summary(p)) for p in folders)
    line = f"sweep: job {job} {status} in {duration(seconds)}"
    multirun = sweep_dir / "multirun.yaml"
    record = read_yaml(multirun)
    total = sweep_size([str(o) for o in record["hydra"]["overrides"]["task"]]) if record else None
    if total is None:
        return f"{line}; {done} jobs done"
    elapsed = max(seconds, time.time() - multirun.stat().st_mtime)
    rest = f", about {duration(elapsed / done * (total - done))} left" if 0 < done < total else ""
    return f"{line}; {done} of {total} jobs done{rest}"
