"""Experiment 21: how large a learning rate each optimizer stands on the ravine f = ½(a x² + b y²) (``ravine``).

The Hessian is diag(a, b), so λ_max = b. Per step SGD multiplies y by 1 − αb and x by 1 − αa: y overshoots the
floor once α > 1/λ_max and diverges once α > 2/λ_max, while x shrinks by αa < 2a/b: it crawls. Heavy-ball momentum
(v = μv + g) is stable up to α < 2(1 + μ)/λ_max. RMSProp divides each coordinate by its RMS gradient √r, and
r ≥ (1 − ρ)g², so its step per coordinate is at most α/√(1 − ρ) whatever the curvature. Every (optimizer, α) is a
row of one stacked run with the MLP's own update rules (``ravine.optimizer_paths``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from layerscope.lecture.ravine import START, A, B, optimizer_paths, ravine, steps_to
from layerscope.paths import preset

LAMBDA_MAX, LAMBDA_MIN = max(A, B), min(A, B)
SGD_LIMIT = 2 / LAMBDA_MAX  # |1 − αλ_max| < 1
OVERSHOOT = 1 / LAMBDA_MAX  # above it SGD's step across the ravine overshoots the floor: 1 − αλ_max < 0
SCALES = (0.1, 0.2, 0.4, 0.6, 0.75, 0.9, 0.95, 0.99, 1.01, 1.05, 1.2, 1.5)  # α in units of SGD_LIMIT
SAME = 0.75 * SGD_LIMIT  # drawn over time: the middle of SGD's zig-zag range (1/λ_max, 2/λ_max)
COMPARED = ("sgd", "momentum", "adagrad", "rmsprop")  # at every α of SCALES below SGD's limit
LARGER = ("sgd", "momentum", "rmsprop")  # at ``larger_rate``: above SGD's limit
STEPS = 500
TOL = 1e-4  # settled: f stays below 10⁻⁴ f(start), as in experiment 10


def hyper(name: str) -> dict:
    """The lecture's hyper-parameters of optimizer ``name`` (configs/optimizer), without its α."""
    return {k: v for k, v in preset("optimizer", name).items() if k != "lr"}


def momentum_limit(mu: float) -> float:
    """Heavy ball's stability limit on curvature λ_max: α < 2(1 + μ)/λ_max."""
    return 2 * (1 + mu) / LAMBDA_MAX


def larger_rate(mu: float) -> float:
    """An α between SGD's limit and momentum's: their midpoint."""
    return (SGD_LIMIT + momentum_limit(mu)) / 2


def settle_level() -> float:
    """|y| below which the steep coordinate alone keeps f under TOL · f(start): √(2 TOL f(start)/b)."""
    return math.sqrt(2 * TOL * float(ravine(torch.tensor(START))) / B)


def flat_floor() -> float:
    """The fewest steps any stable SGD needs: x must fall below √(2 TOL f(start)/a) shrinking by at most
    αa < 2λ_min/λ_max per step."""
    x_settled = math.sqrt(2 * TOL * float(ravine(torch.tensor(START))) / A)
    return math.log(abs(START[0]) / x_settled) / -math.log(1 - 2 * LAMBDA_MIN / LAMBDA_MAX)


@dataclass(frozen=True)
class Descent:
    """One optimizer's path on the ravine at one α."""

    name: str
    lr: float
    points: np.ndarray  # (STEPS + 1, 2)

    @property
    def values(self) -> np.ndarray:
        """f at each point."""
        return ravine(torch.from_numpy(self.points)).numpy()

    @property
    def steps_to_min(self) -> float:
        """The step from which on f stays below TOL · f(start) (inf: never)."""
        return steps_to(self.values, TOL * self.values[0])

    @property
    def diverged(self) -> bool:
        """f ended above where it started (or overflowed)."""
        return not self.values[-1] < self.values[0]

    def _swings(self) -> np.ndarray:
        """The steps of y while it is off the floor (max |y| of the step's ends above ``settle_level``)."""
        y = self.points[:, 1]
        off = np.maximum(np.abs(y[1:]), np.abs(y[:-1])) > settle_level()
        return np.flatnonzero(off)

    @property
    def travel(self) -> float:
        """How far y swings across the ravine beyond its net descent of the wall, while off the floor: the total
        variation of y less |y_end − y_start| (0 for a monotone descent)."""
        y, off = self.points[:, 1], self._swings()
        if not len(off):
            return 0.0
        moves = np.diff(y)[off]
        return float(np.sum(np.abs(moves)) - abs(np.sum(moves)))

    @property
    def crossings(self) -> int:
        """How often y changed sign while off the floor."""
        y, off = self.points[:, 1], self._swings()
        return int(np.sum(y[1:][off] * y[:-1][off] < 0))

    def gain(self, axis: int) -> float:
        """Σ|Δθ| / Σ α|∂f/∂θ| along ``axis`` before settling: 1 for SGD; above 1 where past steps add to the
        present one, below where they cancel it."""
        stop = int(min(self.steps_to_min, STEPS))
        curvature = (A, B)[axis]
        moves = np.abs(np.diff(self.points[:stop + 1, axis]))
        return float(moves.sum() / (self.lr * curvature * np.abs(self.points[:stop, axis]).sum()))

    @property
    def largest_step(self) -> float:
        """The largest move of one coordinate in one step, in units of α."""
        return float(np.nanmax(np.abs(np.diff(self.points, axis=0))) / self.lr)


@dataclass(frozen=True)
class Rates:
    """Each optimizer at every α below SGD's limit, SGD above it, and the optimizers at a larger rate."""

    grid: dict[str, list[Descent]]  # COMPARED, each at SCALES · SGD_LIMIT below 1
    above: list[Descent]  # SGD at SCALES · SGD_LIMIT above 1
    larger: dict[str, Descent]  # LARGER at larger_rate(μ)
    mu: float
    rho: float

    @property
    def sgd(self) -> list[Descent]:
        """SGD at every α of the grid, below and above its limit."""
        return self.grid["sgd"] + self.above

    def at(self, lr: float) -> dict[str, Descent]:
        """Each optimizer of the grid at ``lr``."""
        return {name: next(d for d in runs if math.isclose(d.lr, lr)) for name, runs in self.grid.items()}


def simulate() -> Rates:
    """Every path of the experiment, as rows of one stacked run."""
    mu, rho = hyper("momentum")["mu"], hyper("rmsprop")["rho"]
    below = [s * SGD_LIMIT for s in SCALES if s < 1]
    cfgs = ([{**hyper(n), "lr": lr} for n in COMPARED for lr in below]
            + [{"name": "sgd", "lr": s * SGD_LIMIT} for s in SCALES if s > 1]
            + [{**hyper(n), "lr": larger_rate(mu)} for n in LARGER])
    runs = [Descent(c["name"], c["lr"], p) for c, p in zip(cfgs, optimizer_paths(ravine, START, cfgs, STEPS))]
    n = len(COMPARED) * len(below)
    grid = {name: runs[i * len(below):(i + 1) * len(below)] for i, name in enumerate(COMPARED)}
    return Rates(grid, runs[n:-len(LARGER)], {d.name: d for d in runs[-len(LARGER):]}, mu, rho)
