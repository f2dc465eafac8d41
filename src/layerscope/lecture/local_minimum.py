"""Experiment 22: a shallow local minimum beside a deeper one, f(x) = ¼x⁴ − ½x² + c x with tilt c = 0.3.

f′(x) = x³ − x + c has three roots: the deeper minimum on the left, a barrier (a maximum) and the shallow
minimum on the right. From a start on the shallow well's outer wall plain gradient descent slides into the
shallow minimum, where f′ = 0, and stops; momentum (v = μv + g) arrives with speed and may carry on over the
barrier. Each optimizer runs with the MLP's own update rules, all as rows of one stacked run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from layerscope.lecture.ravine import optimizer_paths
from layerscope.lecture.ravine_rates import hyper

TILT = 0.3
START = 1.5  # on the shallow well's outer wall, right of its minimum
LR = 0.05  # α for both: far below the stability limit 2/f″ at either minimum (f″ ≤ 2.8 there: α < 0.7)
GRID_LRS = (0.02, 0.05, 0.1)  # other rates and starts: how general the escape is
GRID_STARTS = (1.5, 2.0)
STEPS = 400


def f(p: torch.Tensor) -> torch.Tensor:
    """¼x⁴ − ½x² + c x of the rows' single coordinate."""
    x = p[..., 0]
    return 0.25 * x**4 - 0.5 * x**2 + TILT * x


def critical_points() -> tuple[float, float, float]:
    """(deeper minimum, barrier, shallow minimum): the roots of x³ − x + c, left to right."""
    deeper, barrier, shallow = np.sort(np.roots([1.0, 0.0, -1.0, TILT]).real)
    return float(deeper), float(barrier), float(shallow)


def value(x: float) -> float:
    """f at ``x``."""
    return float(f(torch.tensor([x], dtype=torch.float64)))


@dataclass(frozen=True)
class Roll:
    """One optimizer's path from ``start``."""

    name: str
    lr: float
    start: float
    xs: np.ndarray  # (STEPS + 1,)

    @property
    def end(self) -> float:
        """Where it ended."""
        return float(self.xs[-1])

    @property
    def escaped(self) -> bool:
        """It started right of the barrier, in the shallow well, and ended left of it, in the deeper one."""
        barrier = critical_points()[1]
        return self.start > barrier > self.end

    @property
    def farthest(self) -> float:
        """Its leftmost point."""
        return float(self.xs.min())


@dataclass(frozen=True)
class Rolls:
    """SGD and momentum at ``LR`` from ``START``, from rest at the shallow minimum, and over the grid."""

    sgd: Roll
    momentum: Roll
    at_rest: dict[str, Roll]  # from the shallow minimum itself
    grid: list[tuple[Roll, Roll]]  # (sgd, momentum) for each start and rate of the grid
    mu: float


def simulate() -> Rolls:
    """Every roll of the experiment, as rows of one stacked run."""
    shallow = critical_points()[2]
    runs = [(name, LR, START) for name in ("sgd", "momentum")] + [(name, LR, shallow) for name in ("sgd", "momentum")]
    runs += [(name, lr, x0) for x0 in GRID_STARTS for lr in GRID_LRS for name in ("sgd", "momentum")]
    cfgs = [{**hyper(name), "lr": lr} for name, lr, _ in runs]
    paths = optimizer_paths(f, [[x0] for _, _, x0 in runs], cfgs, STEPS)
    rolls = [Roll(name, lr, x0, path[:, 0]) for (name, lr, x0), path in zip(runs, paths)]
    return Rolls(rolls[0], rolls[1], {r.name: r for r in rolls[2:4]}, list(zip(rolls[4::2], rolls[5::2])),
                 hyper("momentum")["mu"])
