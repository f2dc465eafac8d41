"""The finite-width spread of a layer's statistics: fresh weight draws of the run's own network estimate how far a
measurement may sit from the infinite-width theory. The run's own network, rebuilt from its config and seed, measures
what the probes do not record: each unit's spread over the input samples, in exact (float64) arithmetic."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from layerscope.data.datasets import load_data
from layerscope.lecture.claims.thresholds import CONFIDENCE_Z
from layerscope.nets.losses import build_loss
from layerscope.theory.meanfield import one_thread
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
    with one_thread():
        return _draw_stds(OmegaConf.create(cfg_yaml), draws)


def _draw_stds(base: DictConfig, draws: int) -> np.ndarray:
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


def finite_width_backward(cfg: dict, draws: int = DRAWS) -> np.ndarray:
    """Per-layer backward-signal std (draws, depth), dL/da of the run's loss at step 0, of fresh networks built
    exactly as the run's (its init, width, data, batch and dtype), seeded apart from it."""
    return _draws(OmegaConf.to_yaml(cfg), draws, backward=True, exact=False)["backward_std"].copy()


def finite_width_signal(cfg: dict, draws: int = DRAWS) -> dict[str, np.ndarray]:
    """``activation_mean``, ``activation_std`` and ``sample_spread`` (each unit's std over the samples, RMS over the
    layer's units), per layer (draws, depth), of fresh networks built as the run's, computed in float64 and seeded
    apart from it."""
    rows = _draws(OmegaConf.to_yaml(cfg), draws, backward=False, exact=True)
    return {key: rows[key].copy() for key in ("activation_mean", "activation_std", "sample_spread")}


def own_signal(cfg: dict, device: str = "cpu") -> dict[str, np.ndarray]:
    """The run's own network (its seed; its first batch, as drawn on the run's ``device``) in float64, on the CPU:
    per-layer ``activation_std`` (what the probe recorded, to rounding) and ``sample_spread``, the part of each unit's
    output that depends on the input."""
    with one_thread():
        return _measure(OmegaConf.create(cfg), int(cfg["trainer"]["seed"]), backward=False, exact=True, own=device)


@functools.lru_cache(maxsize=32)
def _draws(cfg_yaml: str, draws: int, backward: bool, exact: bool) -> dict[str, np.ndarray]:
    cfg = OmegaConf.create(cfg_yaml)
    with one_thread():
        rows = [_measure(cfg, FRESH_SEEDS + draw, backward, exact) for draw in range(draws)]
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def _measure(cfg: DictConfig, seed: int, backward: bool, exact: bool, own: str | None = None) -> dict[str, np.ndarray]:
    """Per-layer statistics of the network ``cfg`` builds with ``seed`` (its data too; ``exact``: in float64), on the
    batch its probe reads (``own``: the run's first batch, as a probe-only run on that device draws it; else the
    first rows); with ``backward``, the std of dL/da of the run's loss."""
    cfg.trainer.seed = seed
    if exact:
        cfg.trainer.dtype = "float64"
    data = load_data(cfg.data, seed)
    model, acts = initialized_model(cfg, data), []  # train mode: batch statistics and dropout, as probed
    batch = cfg.trainer.batch_size
    rows = _first_batch(len(data.x_train), batch, seed, own) if own else slice(0, batch)
    hooks = [block.act.register_forward_hook(lambda _m, _i, out: acts.append(out)) for block in model.blocks]
    with torch.set_grad_enabled(backward):
        logits = model(data.x_train[rows].to(next(model.parameters()).dtype))
        for act in acts * backward:
            act.retain_grad()
        if backward:
            build_loss(cfg.loss)(logits, data.y_train[rows]).backward()
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        stats = {"activation_mean": [float(a.mean()) for a in acts], "activation_std": [float(a.std()) for a in acts],
                 "sample_spread": [float(a.var(0).mean().sqrt()) for a in acts]}
        if backward:
            stats["backward_std"] = [float(a.grad.std()) for a in acts]
    return {key: np.array(values) for key, values in stats.items()}


def _first_batch(n: int, batch: int, seed: int, device: str) -> torch.Tensor:
    """The rows a probe-only run's first batch takes: its data order drawn on its device from its seed."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randperm(n, device=device, generator=generator)[:batch].cpu()
