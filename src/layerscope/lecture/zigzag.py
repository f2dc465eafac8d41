"""Experiment 23: a unit fed by sigmoid outputs, z = wᵀx with every x > 0, learning a target with mixed-sign weights.

The per-sample gradient of ½(z − t)² is (z − t)·x: with x > 0 all its components share the sign of z − t, so
each update moves every weight up or every weight down (quadrants 1 and 3 of the w-plane), and the way to
w* = (1, −1), in quadrant 4, is a zig-zag. The same inputs centred (x − x̄) have mixed signs. The teacher is
exact (t = w*ᵀx), so both reach w* exactly; each runs per-sample SGD over the same sample order at every rate
of a grid, all rates as rows of one vectorized run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TARGET = np.array([1.0, -1.0])  # w*: mixed signs, the quadrant that all-positive inputs cannot step into
SAMPLES = 64
SEED = 0  # the inputs' draw and the sample order: fixed, the simulation is decided once
LRS = tuple(2.0**k for k in range(-3, 6))  # α from 1/8 to 32
BATCH = 16  # the lecture's remedy: a mini-batch's gradient mixes samples with z − t of both signs
STEPS = 2000
REACHED = 0.05  # at w*: |w − w*| below 5% of |w*|


def inputs() -> dict[str, np.ndarray]:
    """The sigmoid outputs σ(h), h ~ N(0, 1), (SAMPLES, 2), all positive, and the same inputs centred."""
    h = np.random.default_rng(SEED).standard_normal((SAMPLES, len(TARGET)))
    positive = 1 / (1 + np.exp(-h))
    return {"positive": positive, "centred": positive - positive.mean(0)}


def _order(batch: int) -> np.ndarray:
    """(STEPS, batch) sample indices: epochs of one fixed shuffle per epoch."""
    rng = np.random.default_rng(SEED + 1)
    need = STEPS * batch
    order = np.concatenate([rng.permutation(SAMPLES) for _ in range(-(-need // SAMPLES))])
    return order[:need].reshape(STEPS, batch)


@dataclass(frozen=True)
class Walk:
    """Per-sample (or mini-batch) SGD from w = 0 at one rate."""

    inputs: str
    lr: float
    batch: int
    path: np.ndarray  # (STEPS + 1, 2)
    updates: np.ndarray  # (STEPS, 2): −Δw/α, the gradient of each step

    @property
    def steps_to_target(self) -> float:
        """The step from which on w stays within REACHED · |w*| of w* (inf: never)."""
        with np.errstate(invalid="ignore", over="ignore"):
            off = ~(np.linalg.norm(self.path - TARGET, axis=1) < REACHED * np.linalg.norm(TARGET))
        last = np.flatnonzero(off)
        if not len(last):
            return 0.0
        return float(last[-1] + 1) if last[-1] + 1 < len(self.path) else math.inf

    def _moving(self) -> np.ndarray:
        """The updates before w reached w*, less those of exactly 0."""
        updates = self.updates[:int(min(self.steps_to_target, STEPS))]
        return updates[np.any(updates != 0, axis=1)]

    @property
    def one_sign(self) -> float:
        """The share of updates (before reaching w*) whose components all share one sign."""
        moving = self._moving()
        return float(np.mean(np.all(moving > 0, 1) | np.all(moving < 0, 1))) if len(moving) else math.nan

    @property
    def winding(self) -> float:
        """The length of the path to w* over the straight line from the start."""
        stop = int(min(self.steps_to_target, STEPS))
        length = np.sum(np.linalg.norm(np.diff(self.path[:stop + 1], axis=0), axis=1))
        return float(length / np.linalg.norm(TARGET - self.path[0]))


def walks(x: np.ndarray, name: str, batch: int = 1) -> list[Walk]:
    """SGD on ½(wᵀx − w*ᵀx)² from w = 0 at every rate of LRS (a row each), mean gradient over ``batch`` samples."""
    lrs = np.array(LRS)[:, None]
    t = x @ TARGET
    w = np.zeros((len(LRS), len(TARGET)))
    path, grads = [w], []
    with np.errstate(over="ignore", invalid="ignore"):
        for idx in _order(batch):
            g = ((w @ x[idx].T - t[idx]) @ x[idx]) / batch  # (rates, 2)
            w = w - lrs * g
            path.append(w)
            grads.append(g)
    path, grads = np.stack(path, 1), np.stack(grads, 1)
    return [Walk(name, float(lr), batch, p, g) for lr, p, g in zip(LRS, path, grads)]


def fastest(runs: list[Walk]) -> Walk:
    """The rate that reaches w* in the fewest steps (ties: the smaller rate)."""
    return min(runs, key=lambda r: (r.steps_to_target, r.lr))


def simulate() -> dict[str, list[Walk]]:
    """Per-sample SGD on the positive and the centred inputs, and mini-batch SGD on the positive ones."""
    x = inputs()
    return {"positive": walks(x["positive"], "positive"), "centred": walks(x["centred"], "centred"),
            "positive, batch": walks(x["positive"], "positive", BATCH)}
