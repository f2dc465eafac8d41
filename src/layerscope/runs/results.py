"""A finished run read back from its folder: summary, per-epoch metrics and probe records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerscope.files import read_jsonl
from layerscope.probe.record import ProbeRecord
from layerscope.runs.folder import CHECKPOINT, METRICS, PROBES, has_ended, read_config, read_summary
from layerscope.runs.ownership import holder


def run_status(run_dir: Path) -> str:
    """completed, diverged, failed, interrupted; running while its process lives, else incomplete (killed)."""
    summary = read_summary(run_dir)
    if not has_ended(summary):
        return "running" if holder(run_dir) else "incomplete"
    return summary["status"]


STEP_WINDOW = 5
"""``steps_to`` averages this many batches: one batch's loss scatters by its own sampling noise, and a
level reached by one lucky batch is not reached by the model."""


@dataclass
class RunResult:
    """What one run recorded, as the claim checks and reports read it."""

    label: str
    run_dir: Path
    summary: dict
    metrics: list[dict] = field(default_factory=list)
    probes: list[ProbeRecord] = field(default_factory=list)
    seeds: list["RunResult"] = field(default_factory=list, repr=False, compare=False)  # the same variant's runs over seeds (reproduce)

    @classmethod
    def load(cls, run_dir: Path, label: str = "") -> "RunResult":
        """Read ``summary.json``, ``metrics.jsonl`` and ``probes.jsonl`` of ``run_dir``."""
        summary = {**read_summary(run_dir), "status": run_status(run_dir)}
        probes = [ProbeRecord.from_json(row) for row in read_jsonl(run_dir / PROBES)]
        return cls(label or run_dir.name, run_dir, summary, read_jsonl(run_dir / METRICS), probes)

    @property
    def config(self) -> dict:
        """The run's resolved config (its config.yaml); {} when it has none."""
        return read_config(self.run_dir)

    def final_weights(self) -> list[np.ndarray]:
        """The hidden layers' Linear weights (width, fan_in) at the end of the run, from its checkpoint."""
        from layerscope.runs.checkpoint import load_checkpoint  # torch: only this reader needs it

        state = load_checkpoint(self.run_dir / CHECKPOINT)["model"]
        return [v.double().numpy() for k, v in state.items() if k.startswith("blocks.") and k.endswith("linear.weight")]

    @property
    def status(self) -> str:
        """completed, diverged, failed, interrupted, running or incomplete (see ``run_status``)."""
        return self.summary["status"]

    def stat(self, name: str, probe: int = 0) -> np.ndarray:
        """Per-layer values of statistic ``name`` at probe index ``probe`` (0 first, -1 last)."""
        return np.array([np.nan if v is None else v for v in self.probes[probe].stats[name]], dtype=float)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(probe steps, per-layer values (probes, layers)) of statistic ``name`` over every probe."""
        return (np.array([p.step for p in self.probes], dtype=float),
                np.array([[np.nan if v is None else v for v in p.stats[name]] for p in self.probes], dtype=float))

    def theory(self, name: str) -> np.ndarray:
        """Per-layer mean-field prediction ``name`` recorded at step 0 (NaN if none)."""
        values = (self.probes[0].theory or {}).get(name) if self.probes else None
        return np.array([np.nan if v is None else v for v in values], dtype=float) if values else np.array([np.nan])

    def curve(self, key: str = "train_loss") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a per-epoch metric."""
        return (np.array([r["step"] for r in self.metrics], dtype=float),
                np.array([np.nan if r.get(key) is None else r[key] for r in self.metrics], dtype=float))

    def test_curve(self, key: str = "test_loss") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a test metric from step 0: the initial weights' value, then each epoch's end."""
        steps, values = self.curve(key)
        initial = self.summary.get("initial", {}).get(key)
        if initial is None:
            return steps, values
        return np.concatenate([[0.0], steps]), np.concatenate([[float(initial)], values])

    def final(self, key: str = "train_loss") -> float:
        """The last epoch's value of ``key`` (NaN if no epoch finished)."""
        value = self.summary.get("final", {}).get(key)
        return np.nan if value is None else float(value)

    def step_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, the training loss of each step's batch), from the epochs' ``step_losses``."""
        steps, values = [], []
        for row in self.metrics:
            losses = row.get("step_losses") or []
            steps += range(row["step"] - len(losses) + 1, row["step"] + 1)
            values += [np.nan if v is None else v for v in losses]
        return np.array(steps, dtype=float), np.array(values, dtype=float)

    def batch_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(step, loss of that step's batch) from step 0, in the probes' count: the loss before the step's update."""
        steps, values = self.step_curve()
        return steps - 1, values  # step_curve counts each batch at the step it completes

    def steps_to(self, loss: float, window: int = STEP_WINDOW) -> float:
        """First step at which the mean training loss of the last ``window`` steps is <= ``loss`` (inf if never)."""
        steps, values = self.step_curve()
        if len(values) < window:
            return float("inf")
        means = np.convolve(values, np.ones(window) / window, mode="valid")  # means[i]: steps i .. i+window-1
        hit = np.nonzero(means <= loss)[0]
        return float(steps[hit[0] + window - 1]) if len(hit) else float("inf")
