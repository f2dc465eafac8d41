"""Per-layer probes: capture pre-activations, activations, their gradients and weight gradients.

Hooks exist only inside ``Probe.capture()``, so steps without a probe run the bare model.
Every statistic and histogram is computed on the device; one transfer per probe brings
them all to the host as a ``ProbeRecord``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from layerscope.activations import Activation

HISTOGRAMS = ("preactivation", "activation", "backward", "weight_grad", "weight")
"""Histogrammed quantities; ``backward`` is dL/d(activation), the backward signal."""

STATS = ("preactivation_mean", "preactivation_std", "activation_mean", "activation_std",
         "unit_spread", "saturated_fraction", "dead_fraction", "backward_norm", "backward_std",
         "weight_grad_norm", "weight_norm", "update_ratio")
"""Per-layer scalars; unit_spread is the std across a layer's units (mean over up to 64 samples):
0 when all units are identical, as after zero init; saturated_fraction is NaN unless the activation is bounded (tanh, sigmoid),
dead_fraction NaN unless it is a rectifier, update_ratio NaN when no update followed the probe."""

UNIT_SPREAD_ROWS = 64  # unit_spread averages the across-unit std over the batch's first 64 samples


def histogram_summary(values: torch.Tensor, bins: int, sample: int | None = None) -> torch.Tensor:
    """[min, max, num, mean, std, count_1..count_bins] of ``values``, computed on its device.

    min, max, mean and std use every value (std without the cancellation of sum-of-squares
    formulas). The counts bin a strided sample of at most ``sample`` values (all when
    None or fewer) and are rescaled to sum to num.
    """
    flat = values.detach().reshape(-1).float()
    low, high = torch.aminmax(flat)
    mean, var = flat.mean(), flat.var()  # var_mean is ~8x slower on CPU
    num = flat.numel()
    picked = flat[:: max(1, num // sample)] if sample else flat
    span = (high - low).clamp_min(1e-30)  # all values equal (zero init): everything in bin 0
    index = ((picked - low) * (bins / span)).nan_to_num_(0.0).long().clamp_(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).float() * (num / picked.numel())
    head = torch.stack([low, high, torch.full_like(low, float(num)), mean, var.nan_to_num(0.0).sqrt()])
    return torch.cat([head, counts])


def _norm(summary: torch.Tensor) -> torch.Tensor:
    """Per-row L2 norm from stacked histogram summaries: √(num·mean² + (num-1)·std²)."""
    num, mean, std = summary[:, 2], summary[:, 3], summary[:, 4]
    return (num * mean.square() + (num - 1) * std.square()).sqrt()


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
    def edges(self) -> np.ndarray:
        """The bins+1 bin edges from min to max."""
        return np.linspace(self.min, self.max, len(self.counts) + 1)

    def to_json(self) -> dict:
        """Strict-JSON fields (a non-finite moment becomes null)."""
        head = {k: (v if math.isfinite(v) else None) for k, v in
                (("min", self.min), ("max", self.max), ("num", self.num), ("sum", self.sum),
                 ("sum_squares", self.sum_squares))}
        return {**head, "counts": [round(c, 2) for c in self.counts]}

    @property
    def finite(self) -> bool:
        """Whether every value that went into it was finite."""
        values = [self.min, self.max, self.sum, self.sum_squares]
        return all(v is not None for v in values) and bool(np.isfinite(values).all())


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


class Probe:
    """Measures every hidden block of an ``MLP`` at the steps the runner asks for."""

    def __init__(self, model: nn.Module, activation: Activation, bins: int = 60,
                 saturation_margin: float = 0.01, sample: int | None = 16384) -> None:
        self.blocks = list(model.blocks)
        self.activation = activation
        self.bins = bins
        self.sample = sample
        self.saturation_margin = saturation_margin
        self._pre: list[torch.Tensor] = []
        self._act: list[torch.Tensor] = []
        self._grad: list[torch.Tensor | None] = []

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record each block's activation input/output and, on backward, its gradient."""
        depth = len(self.blocks)
        self._pre, self._act, self._grad = [None] * depth, [None] * depth, [None] * depth

        def hook_for(i: int):
            def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
                self._pre[i], self._act[i] = inputs[0].detach(), output.detach()
                if output.requires_grad:
                    output.register_hook(lambda grad: self._grad.__setitem__(i, grad.detach()))
            return hook

        handles = [block.act.register_forward_hook(hook_for(i)) for i, block in enumerate(self.blocks)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def measure(self) -> dict[str, dict[str, torch.Tensor]]:
        """Statistics of the captured forward/backward pass and the current weights (on device).

        Call after ``loss.backward()`` and before ``optimizer.step()``.
        """
        weights = [block.linear.weight for block in self.blocks]
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]
        backward = [g if g is not None else torch.zeros_like(a) for g, a in zip(self._grad, self._act)]
        sources = {"preactivation": self._pre, "activation": self._act, "backward": backward,
                   "weight_grad": grads, "weight": weights}
        hist = {q: torch.stack([histogram_summary(t, self.bins, self.sample) for t in ts])
                for q, ts in sources.items()}
        nan = torch.full((len(self.blocks),), float("nan"), device=weights[0].device)
        stats = {
            "preactivation_mean": hist["preactivation"][:, 3], "preactivation_std": hist["preactivation"][:, 4],
            "activation_mean": hist["activation"][:, 3], "activation_std": hist["activation"][:, 4],
            "unit_spread": torch.stack([a[:UNIT_SPREAD_ROWS].std(dim=1).mean() for a in self._act]),
            "saturated_fraction": self._saturated() if self.activation.bounds else nan,
            "dead_fraction": torch.stack([(p <= 0).all(dim=0).float().mean() for p in self._pre])
            if self.activation.rectifier else nan,
            "backward_norm": _norm(hist["backward"]),
            "backward_std": hist["backward"][:, 4],
            "weight_grad_norm": _norm(hist["weight_grad"]),
            "weight_norm": _norm(hist["weight"]),
            "update_ratio": nan,
        }
        self._before = [w.detach().clone() for w in weights]
        return {"stats": stats, "hist": hist}

    def update_ratio(self, measured: dict[str, torch.Tensor]) -> None:
        """Fill in ||ΔW|| / ||W|| per layer; call right after ``optimizer.step()``."""
        weights = [block.linear.weight.detach() for block in self.blocks]
        measured["stats"]["update_ratio"] = torch.stack(
            [(w - b).norm() / b.norm().clamp_min(1e-30) for w, b in zip(weights, self._before)])

    def record(self, measured: dict[str, torch.Tensor], step: int) -> ProbeRecord:
        """Bring the measurement to the host in one transfer."""
        self._pre = self._act = self._grad = []
        self._before = []
        names = list(measured["stats"])
        stats = torch.stack([measured["stats"][n] for n in names]).float()
        hist = {q: h for q, h in measured["hist"].items()}
        flat = torch.cat([stats.flatten()] + [h.flatten() for h in hist.values()]).cpu().numpy().astype(float)
        depth = stats.shape[1]
        out_stats = {n: flat[i * depth:(i + 1) * depth].tolist() for i, n in enumerate(names)}
        offset, histograms = stats.numel(), {}
        for quantity, h in hist.items():
            rows = flat[offset: offset + h.numel()].reshape(h.shape)
            offset += h.numel()
            histograms[quantity] = [Histogram.from_moments(*row[:5].tolist(), counts=row[5:].tolist()) for row in rows]
        return ProbeRecord(step, out_stats, histograms)

    def _saturated(self) -> torch.Tensor:
        low, high = self.activation.bounds
        margin = self.saturation_margin * (high - low)
        center, half = (low + high) / 2, (high - low) / 2 - margin
        return torch.stack([((a - center).abs() >= half).float().mean() for a in self._act])
