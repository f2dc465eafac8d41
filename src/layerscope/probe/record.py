"""What a probe measured, on the host: per-layer statistics and histograms (``ProbeRecord``), as probes.jsonl keeps
them. Plain Python: figures are drawn from these in processes that never load torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


HISTOGRAMS = ("preactivation", "activation", "backward", "backward_log10", "weight_grad", "weight")
"""Histogrammed quantities; ``backward`` is dL/d(activation), the backward signal, and ``backward_log10`` the
log10 of its magnitude (orders of magnitude on one axis)."""
LECTURE_HISTOGRAMS = ("activation", "backward")
"""The histograms the lecture figure draws (probes.jsonl keeps these, so a finished run can be drawn again)."""

STATS = ("preactivation_mean", "preactivation_std", "activation_mean", "activation_std",
         "unit_spread", "saturated_fraction", "dead_fraction", "inactive_fraction", "backward_norm", "backward_std",
         "weight_grad_norm", "weight_norm", "update_ratio", "weight_change")
"""Per-layer scalars; unit_spread is the std across a layer's units (mean over up to 64 samples):
0 when all units are identical, as after zero init; saturated_fraction is NaN unless the activation is bounded (tanh, sigmoid);
dead_fraction is the share of units that pass no gradient: the activation's derivative φ'(h) is exactly 0 for every
sample of the probe batch (any activation: a ReLU unit off for the whole batch, a sigmoid unit whose φ' underflows; a
leaky ReLU or ELU unit with negative input still passes one); inactive_fraction is the share of units whose input is
≤ 0 for the whole batch (NaN unless the activation is a rectifier; for ReLU it equals dead_fraction);
update_ratio is ‖ΔW‖/‖W‖ of the update after the probe (NaN when none followed); weight_change is ‖W − W_0‖/‖W_0‖,
W_0 the layer's weights at the run's step 0 (0 there; NaN where W_0 = 0 or, after resuming from a checkpoint
that lacks W_0, unknown)."""


@dataclass
class Histogram:
    """One binned tensor, in the fields ``SummaryWriter.add_histogram_raw`` takes."""

    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    counts: list[float]

    @classmethod
    def from_moments(cls, low: float, high: float, num: float, mean: float, std: float,
                     counts: list[float]) -> "Histogram":
        """Build from min, max, count, mean and (unbiased) std."""
        return cls(low, high, num, mean * num, (num - 1) * std * std + num * mean * mean, counts)

    @property
    def edges(self) -> list[float]:
        """The bins+1 bin edges from min to max: ``np.linspace(min, max, bins + 1)``'s values, without numpy."""
        low, bins = self.min, len(self.counts)
        delta = self.max - low
        step = delta / bins
        edges = [low + i * step for i in range(bins)] if step else [low + i / bins * delta for i in range(bins)]
        edges.append(self.max)  # numpy's order of operations, to the bit
        return edges

    def to_json(self) -> dict:
        """Strict-JSON fields (a non-finite moment becomes null)."""
        head = {k: (v if math.isfinite(v) else None) for k, v in
                (("min", self.min), ("max", self.max), ("num", self.num), ("sum", self.sum),
                 ("sum_squares", self.sum_squares))}
        return {**head, "counts": [round(c, 2) if c % 1 else c for c in self.counts]}  # whole counts as they are

    @property
    def finite(self) -> bool:
        """Whether every value that went into it was finite."""
        return all(v is not None and math.isfinite(v) for v in (self.min, self.max, self.sum, self.sum_squares))


def _nulls(table: dict[str, list[float]]) -> dict[str, list[float | None]]:
    return {k: [v if v is not None and math.isfinite(v) else None for v in vs] for k, vs in table.items()}


@dataclass
class ProbeRecord:
    """Everything one probe measured, on the host: per-layer stats and histograms."""

    step: int
    stats: dict[str, list[float]]
    histograms: dict[str, list[Histogram]] = field(default_factory=dict)
    theory: dict[str, list[float]] | None = None  # mean-field prediction, at step 0

    @property
    def finite(self) -> bool:
        """False when a gradient, activation or weight held NaN or inf."""
        return all(h.finite for hs in self.histograms.values() for h in hs)

    def to_json(self, quantities: tuple[str, ...] | None = None) -> dict:
        """A strict-JSON dict (NaN/inf as null; counts to 0.01) with the histograms of ``quantities`` (all)."""
        keep = self.histograms if quantities is None else {q: self.histograms[q] for q in quantities}
        return {"step": self.step, "stats": _nulls(self.stats), "theory": _nulls(self.theory or {}) or None,
                "histograms": {q: [h.to_json() for h in hs] for q, hs in keep.items()}}

    @classmethod
    def from_json(cls, row: dict) -> "ProbeRecord":
        """Inverse of ``to_json``."""
        nan = float("nan")
        histograms = {q: [Histogram(**{k: nan if v is None else v for k, v in h.items()}) for h in hs]
                      for q, hs in row["histograms"].items()}
        stats = {k: [nan if v is None else v for v in vs] for k, vs in row["stats"].items()}
        theory = {k: [nan if v is None else v for v in vs] for k, vs in row["theory"].items()} if row.get("theory") else None
        return cls(row["step"], stats, histograms, theory)
