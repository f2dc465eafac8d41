"""AdaGrad's and RMSProp's effective step α/(√r + δ) under gradients of a steady scale.

Each coordinate of θ (``COORDINATES`` of them) gets the gradient g = θ + σ·ε with ε ~ N(0, 1): a
quadratic bowl seen through minibatch noise, whose gradients keep the scale σ once θ is at the
bottom. The optimizers are the MLP's (torch.optim, same factories); their own state r gives the
effective step per coordinate. AdaGrad's r = Σ g² grows like t·σ², so its step shrinks like 1/√t
forever; RMSProp's r = ρ r + (1 − ρ) g² settles at σ², and its step at α/σ.
"""

from __future__ import annotations

import numpy as np
import torch

from layerscope.optim import build_optimizer

COORDINATES = 200
NOISE = 1.0  # σ
STATE = {"adagrad": "sum", "rmsprop": "square_avg"}  # torch.optim's name for r


def effective_steps(name: str, hyper: dict, steps: int, seed: int = 0) -> np.ndarray:
    """The median over coordinates of α/(√r + δ) after each of ``steps`` steps of optimizer ``name``."""
    generator = torch.Generator().manual_seed(seed)
    theta = torch.zeros(COORDINATES, dtype=torch.float64, requires_grad=True)
    optimizer = build_optimizer([theta], {**hyper, "name": name})
    out = np.empty(steps)
    for step in range(steps):
        theta.grad = theta.detach() + NOISE * torch.randn(COORDINATES, generator=generator, dtype=torch.float64)
        optimizer.step()
        r = optimizer.state[theta][STATE[name]]
        out[step] = float((hyper["lr"] / (r.sqrt() + hyper["delta"])).median())
    return out
