"""Expectations under a normal law: Gauss-Legendre panels over ±10 standard deviations, one grid for every
Gaussian integral layerscope computes (activation gains, the mean-field theory)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


def _gauss_legendre(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of 8-point Gauss-Legendre on each panel between consecutive edges (last axis)."""
    left, width = edges[..., :-1, None], np.diff(edges)[..., None]
    nodes = left + width * (_GL_NODES + 1) / 2
    return nodes.reshape(*edges.shape[:-1], -1), (width / 2 * _GL_WEIGHTS).reshape(*edges.shape[:-1], -1)


def normal_grid(var: float, center: np.ndarray | float = 0.0, panels: int = 1000, per_sd: float = 2,
                 refine: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Nodes h and weights w (Σ w = 1 on the last axis) of h ~ N(center, var), center of any shape.

    Gauss-Legendre panels of width min(√var/per_sd, 1) (wider if more than ``panels`` are needed) over
    center ± 10√var, so both scales, √var and the unit scale of φ, are resolved. Panel edges lie on
    multiples of the width: a kink of φ at 0 (ReLU, PReLU; ELU's φ'') is an edge and costs no accuracy.
    ``refine`` halves the two panels at 0 down to that width (scalar center only). var = 0 gives the
    point mass at center.
    """
    center = np.asarray(center, dtype=float)
    if var <= 0:
        return center[..., None], np.ones_like(center)[..., None]
    sd = math.sqrt(var)
    width = max(min(sd / per_sd, 1.0), 20 * sd / panels)
    count = math.ceil(20 * sd / width) + 1
    edges = np.floor((center - 10 * sd) / width)[..., None] * width + width * np.arange(count + 1)
    if 0 < refine < width:
        halves = width / 2 ** np.arange(1, math.ceil(math.log2(width / refine)) + 1)
        edges = np.union1d(edges, np.concatenate([halves, -halves]))
    h, w = _gauss_legendre(edges)
    w = w * np.exp(-0.5 * ((h - center[..., None]) / sd) ** 2)
    return h, w / w.sum(-1, keepdims=True)


def expect_standard_normal(fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """E_z[fn(z)] for z ~ N(0, 1), on ``normal_grid``."""
    z, w = normal_grid(1.0)
    return float(w @ fn(z))
