"""How long the rest will take: one line per finished piece of work, with an estimate of what is left."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

TIMINGS = ".timings.json"  # beside the work's outputs: the seconds each piece took last time


def duration(seconds: float) -> str:
    """``42 s``, or ``3 min 05 s``."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


class Estimate:
    """The seconds each named piece of work took the last time (a JSON file) and this time, and what is left.

    What is left is estimated from the last time's seconds of the pieces still to run, scaled by how this
    run's finished pieces compare with their last time; a piece never timed counts as this run's mean.
    """

    def __init__(self, path: Path, names: list[str]):
        self.path, self.left, self.taken = path, list(names), {}
        try:
            self.last = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            self.last = {}

    def done(self, name: str, seconds: float) -> str:
        """Record that ``name`` took ``seconds`` (saved for next time); '<its time>; about <rest> left'."""
        from layerscope.writer import write_json_atomic  # torch's writer: the callers have it loaded already

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
        return sum(pace * self.last[n] if n in self.last else mean for n in self.left)
