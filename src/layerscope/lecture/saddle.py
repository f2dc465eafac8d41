"""A 2-D saddle point: f(x, y) = ½ x² − ½ y² + ¼ y⁴, flat and unstable along y at the origin.

The origin is a saddle (f = 0); the minima lie at (0, ±1) with f = −¼. From a start a hair off the
saddle (y₀ = 10⁻⁴) the gradient along y is −y + y³ ≈ −y: tiny, so plain SGD drifts away only by the
factor 1 + α per step, while momentum compounds its velocity (growth λ, the larger root of
λ² − (1 + μ + α) λ + μ = 0). Each optimizer runs with the MLP's own update rules (``optim``), both as rows of
one stacked run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path as FilePath

import numpy as np
import torch

from layerscope.lecture.ravine import optimizer_path, optimizer_paths, read_record, record
from layerscope.theory.meanfield import one_thread
from layerscope.paths import preset

START = (1.0, 1e-4)
LR = 0.05  # the same α for SGD and momentum: small enough that SGD is stable at the minima (α < 1)
STEPS = 600
RECORD = "saddle.json"
ESCAPED = 0.5  # |y| past half the way to a minimum (|y| = 1): off the plateau
SETTLED = 1e-3  # within 0.1% of the minimum's depth: f < f_min + 10⁻³ · |f_min|
F_MIN = -0.25


def saddle(p: torch.Tensor) -> torch.Tensor:
    """f(x, y) = ½ x² − ½ y² + ¼ y⁴."""
    x, y = p[..., 0], p[..., 1]
    return 0.5 * x**2 - 0.5 * y**2 + 0.25 * y**4


def growth(lr: float, mu: float = 0.0) -> float:
    """Per-step growth of y near the saddle (f ≈ −½ y²): 1 + α for SGD, the larger root of
    λ² − (1 + μ + α) λ + μ = 0 for momentum with μ (heavy ball, v = μ v + g)."""
    b = 1 + mu + lr
    return (b + math.sqrt(b * b - 4 * mu)) / 2


@dataclass(frozen=True)
class Path:
    """One optimizer's path from the saddle."""

    name: str
    points: np.ndarray  # (steps + 1, 2)
    hyper: dict  # lr, and mu for momentum

    @property
    def escape_step(self) -> float:
        """The first step with |y| > ``ESCAPED`` (inf if never)."""
        off = np.flatnonzero(np.abs(self.points[:, 1]) > ESCAPED)
        return float(off[0]) if len(off) else math.inf

    @property
    def settle_step(self) -> float:
        """The step from which on f stays within ``SETTLED`` · |f_min| of f_min (inf if never)."""
        values = saddle(torch.from_numpy(self.points)).numpy()
        away = np.flatnonzero(values > F_MIN + SETTLED * abs(F_MIN))
        if not len(away):
            return 0.0
        return float(away[-1] + 1) if away[-1] + 1 < len(values) else math.inf


def descend(name: str, hyper: dict, steps: int) -> Path:
    """Run optimizer ``name`` with ``hyper`` (lr, mu, ...) from ``START`` for ``steps`` steps."""
    return Path(name, optimizer_path(saddle, START, {**hyper, "name": name}, steps), hyper)


def simulate(folder: FilePath) -> FilePath:
    """SGD and momentum (configs/optimizer's μ) at α = ``LR`` from ``START``, recorded in ``folder``."""
    mu = float(preset("optimizer", "momentum")["mu"])
    hyper = [{"lr": LR}, {"lr": LR, "mu": mu}]
    with one_thread():
        paths = optimizer_paths(saddle, START, [{**h, "name": n} for n, h in zip(("sgd", "momentum"), hyper)], STEPS)
    return record(folder / RECORD, [Path(n, p, h) for n, p, h in zip(("sgd", "momentum"), paths, hyper)])


def recorded(folder: FilePath) -> list[Path]:
    """The paths ``simulate`` recorded in ``folder``."""
    return read_record(folder / RECORD, Path)
