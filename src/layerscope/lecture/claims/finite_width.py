"""The finite-width spread of a layer's std: fresh weight draws of the run's own network estimate how far a
measurement may sit from the infinite-width theory."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from omegaconf import OmegaConf

from layerscope.data.datasets import load_data
from layerscope.lecture.claims.thresholds import CONFIDENCE_Z
from layerscope.train.probed_model import initialized_model

FRESH_SEEDS = 10_000  # the simulated draws' seeds, apart from any run's


DRAWS = 16  # fresh weight draws that estimate the finite-width spread (the sd itself is then known to ~18%)


def ratio_per_layer(std: np.ndarray) -> float:
    """Geometric mean of std[l+1] / std[l]."""
    return float(np.exp(np.mean(np.log(std[1:] / std[:-1]))))


def ratio_spread(cfg: dict) -> float:
    """Standard deviation of ln(per-layer std ratio) over fresh draws of the run's network (``finite_width_stds``).

    ReLU is positively homogeneous, so the spread does not depend on σ_w²: it holds for the claim's
    σ_w² and for its near misses alike.
    """
    return float(np.std([math.log(ratio_per_layer(row)) for row in finite_width_stds(cfg)], ddof=1))


def allowed_distance(draws: np.ndarray, target: np.ndarray | float) -> np.ndarray:
    """How far a run may lie from ``target`` (per column): the fresh draws' bias from it plus ``CONFIDENCE_Z``
    of their standard deviations."""
    return np.abs(draws.mean(0) - target) + CONFIDENCE_Z * draws.std(0, ddof=1)


def finite_width_stds(cfg: dict, draws: int = DRAWS) -> np.ndarray:
    """Per-layer activation std (draws, depth) of fresh networks built exactly as the run's (its init, width,
    data and batch), seeded apart from it: the finite-width distribution of what the run measured."""
    return _finite_width_stds(OmegaConf.to_yaml(cfg), draws).copy()


@functools.lru_cache(maxsize=32)
def _finite_width_stds(cfg_yaml: str, draws: int) -> np.ndarray:
    base = OmegaConf.create(cfg_yaml)
    rows = []
    for draw in range(draws):
        fresh = base.copy()
        fresh.trainer.seed = FRESH_SEEDS + draw
        data = load_data(fresh.data, fresh.trainer.seed)
        model, stds = initialized_model(fresh, data), []  # train mode: batch statistics and dropout, as probed
        hooks = [block.act.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
                 for block in model.blocks]  # where the probes read the activation
        with torch.no_grad():
            model(data.x_train[:fresh.trainer.batch_size].to(next(model.parameters()).dtype))
        for hook in hooks:
            hook.remove()
        rows.append(stds)
    return np.array(rows)
