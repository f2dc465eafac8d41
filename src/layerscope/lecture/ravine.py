"""The lecture's 2-D ravine: f(x, y) = ½ (a x² + b y²) with b ≫ a, steep across and flat along.

Each optimizer runs from the same start with the MLP's own update rules (``optim``) and
the best learning rate of a small grid, so the comparison is of methods, not of lr choices. Every
(optimizer, lr) pair is one row of a single stacked run (``optimizer_paths``), as the MLP's members are.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerscope.files import write_json_atomic
from layerscope.optim.rules import Optimizer, build_optimizer
from layerscope.paths import preset
from layerscope.theory.meanfield import one_thread

A, B = 1.0, 40.0  # curvature along x (flat) and y (steep): condition number 40
START = (-8.0, 1.0)
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
RECORD = "ravine.json"


def ravine(p: torch.Tensor) -> torch.Tensor:
    """f(x, y) = ½ (a x² + b y²), minimum 0 at the origin."""
    return 0.5 * (A * p[..., 0] ** 2 + B * p[..., 1] ** 2)


@dataclass(frozen=True)
class Trajectory:
    """One optimizer's path on the ravine."""

    name: str
    lr: float
    points: np.ndarray  # (steps + 1, 2)
    steps_to_min: float  # the step from which on f stays below tol · f(start); inf if never

    @property
    def zigzag(self) -> int:
        """How often the steep coordinate y changed sign: the zig-zag across the ravine."""
        signs = np.sign(self.points[:, 1])
        return int(np.sum(signs[1:] * signs[:-1] < 0))

    @property
    def zigzag_rate(self) -> float:
        """Sign changes of y per step on the way to the minimum (1: every step crosses the ravine's floor)."""
        steps = int(min(self.steps_to_min, len(self.points) - 1))
        signs = np.sign(self.points[:steps + 1, 1])
        return float(np.sum(signs[1:] * signs[:-1] < 0) / steps) if steps else 0.0



def optimizer_path(function, start: tuple[float, float], optimizer_cfg: dict, steps: int) -> np.ndarray:
    """The points (steps + 1, 2) of the optimizer ``optimizer_cfg`` (the MLP's update rules, ``optim``) on a 2-D
    ``function`` from ``start``."""
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = build_optimizer([p], optimizer_cfg)
    points = [p.detach().clone().numpy()]
    for _ in range(steps):
        optimizer.zero_grad()
        function(p).backward()
        optimizer.step()
        points.append(p.detach().clone().numpy())
    return np.array(points)


def optimizer_paths(function, starts, optimizer_cfgs: list[dict], steps: int) -> np.ndarray:
    """The points (K, steps + 1, n) of K optimizers (``optimizer_cfgs``, the MLP's update rules) on ``function`` of
    (K, n) rows, each row from its own start (``starts``: (K, n), or one start for all): one stacked run, as the
    MLP's members train. A row that overflows turns inf/NaN alone."""
    order = sorted(range(len(optimizer_cfgs)), key=lambda k: optimizer_cfgs[k]["name"])  # rules in blocks
    start = torch.as_tensor(np.asarray(starts, dtype=float), dtype=torch.float64)
    rows = start.expand(len(order), start.shape[-1])[order].clone()
    optimizer = Optimizer([rows], [optimizer_cfgs[k] for k in order])
    points = torch.empty((steps + 1, *rows.shape), dtype=torch.float64)
    points[0] = rows
    for step in range(steps):
        p = rows.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(function(p).sum(), p)
        optimizer.step([grad])
        points[step + 1] = rows
    return points.permute(1, 0, 2)[np.argsort(order)].numpy()


def steps_to(values: np.ndarray, level: float) -> float:
    """The step from which on ``values`` stay below ``level`` (0 if always; inf if never; NaN counts as above)."""
    above = np.nonzero(~(values < level))[0]
    if not len(above):
        return 0.0
    return float(above[-1] + 1) if above[-1] + 1 < len(values) else math.inf


def _trajectory(name: str, lr: float, path: np.ndarray, tol: float) -> Trajectory:
    values = ravine(torch.from_numpy(path)).numpy()
    return Trajectory(name, lr, path, steps_to(values, tol * values[0]))


def descend(name: str, hyper: dict, lr: float, steps: int, tol: float) -> Trajectory:
    """Run optimizer ``name`` (lecture hyper-parameters ``hyper``) at ``lr`` for ``steps`` steps."""
    return _trajectory(name, lr, optimizer_path(ravine, START, {**hyper, "name": name, "lr": lr}, steps), tol)


def best_trajectories(hyper: dict[str, dict], steps: int = 500, tol: float = 1e-4) -> list[Trajectory]:
    """For each optimizer of ``hyper`` (name: lecture hyper-parameters) the fastest of ``LR_GRID`` (ties: the
    smaller lr); every (optimizer, lr) pair a row of one stacked run."""
    cfgs = [{**h, "name": name, "lr": lr} for name, h in hyper.items() for lr in LR_GRID]
    paths = optimizer_paths(ravine, START, cfgs, steps)
    runs = [_trajectory(c["name"], c["lr"], path, tol) for c, path in zip(cfgs, paths)]
    return [min((t for t in runs if t.name == name), key=lambda t: (t.steps_to_min, t.lr)) for name in hyper]


def best_trajectory(name: str, hyper: dict, steps: int = 500, tol: float = 1e-4) -> Trajectory:
    """The fastest of ``LR_GRID`` for this optimizer (ties: the smaller lr)."""
    return best_trajectories({name: hyper}, steps, tol)[0]


def record(file: Path, paths: list) -> Path:
    """Write 2-D optimizer paths (dataclasses with ``points``) to ``file`` as JSON; the checks read them back."""
    file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(file, [{**dataclasses.asdict(p), "points": p.points.tolist()} for p in paths])
    return file


def read_record(file: Path, kind: type) -> list:
    """The paths ``record`` wrote, as ``kind`` (null, a non-finite number in strict JSON, reads back as inf)."""
    return [kind(**{k: np.array(v, dtype=float) if k == "points" else (math.inf if v is None else v)
                    for k, v in row.items()}) for row in json.loads(file.read_text())]


def simulate(folder: Path) -> Path:
    """Each of ``OPTIMIZERS`` with its configs/optimizer hyper-parameters at its best lr, recorded in ``folder``."""
    hyper = {name: {k: v for k, v in preset("optimizer", name).items() if k not in ("name", "lr")}
             for name in OPTIMIZERS}
    with one_thread():
        return record(folder / RECORD, best_trajectories(hyper))


def recorded(folder: Path) -> list[Trajectory]:
    """The paths ``simulate`` recorded in ``folder``."""
    return read_record(folder / RECORD, Trajectory)
