"""The lecture's update rules on K stacked members, each with its own optimizer and hyper-parameters.

Parameters and gradients are (K, P) rows (``StackedMLP.flat``). Members are ordered by optimizer,
so each optimizer updates a contiguous block of rows in place; α, μ, ρ, δ, the L2 weight decay and
the clipping bounds are (rows, 1) tensors. The rules are ``layerscope.optim``'s, written as torch.optim
computes them, so a member follows its single run (tests/test_stacked.py):
  sgd       θ -= α g                          momentum  v = μ v + g;  θ -= α v
  nesterov  v = μ v + g;  θ -= α (g + μ v)    adagrad   r += g²;  θ -= α g / (√r + δ)
  rmsprop   r = ρ r + (1-ρ) g²;  θ -= α g / (√r + δ)
  adam      s = μ s + (1-μ) g;  r = ρ r + (1-ρ) g²;  θ -= α/(1-μᵗ) · s / (√r/√(1-ρᵗ) + δ)
with g = gradient + weight_decay · θ. A member whose loss turned NaN/inf is masked: it is not updated.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from layerscope.optim import DEFAULTS

STATE = {"sgd": (), "momentum": ("momentum_buffer",), "nesterov": ("momentum_buffer",), "adagrad": ("sum",),
         "rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq")}
"""Each optimizer's state per parameter, by torch.optim's names (checkpoints use them)."""

CLIP_EPS = 1e-6  # clip_grad_norm_'s: coefficient = max_norm / (total_norm + 1e-6)


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).unsqueeze(1)


class Block:
    """The rows [start, stop) of the members that share one optimizer, with their hyper-parameters and state."""

    def __init__(self, name: str, start: int, stop: int, cfgs: list[Mapping[str, Any]], flat: torch.Tensor) -> None:
        self.name, self.start, self.stop = name, start, stop
        self.mu, self.rho, self.delta = (_column([float(c.get(k, DEFAULTS[k])) for c in cfgs], flat)
                                         for k in ("mu", "rho", "delta"))
        self.state = {key: torch.zeros_like(flat[start:stop]) for key in STATE[name]}
        self.steps = 0

    def direction(self, g: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """The update Δθ (to subtract) for gradients ``g`` of these rows at learning rates ``lr``."""
        self.steps += 1
        name, st = self.name, self.state
        if name in ("momentum", "nesterov"):
            buf = st["momentum_buffer"]
            buf.copy_(g) if self.steps == 1 else buf.mul_(self.mu).add_(g)
            return lr * (g + self.mu * buf if name == "nesterov" else buf)
        if name == "adagrad":
            st["sum"].addcmul_(g, g)
            return lr * g / (st["sum"].sqrt() + self.delta)
        if name == "rmsprop":
            st["square_avg"].mul_(self.rho).addcmul_(g, g * (1 - self.rho))
            return lr * g / (st["square_avg"].sqrt() + self.delta)
        if name == "adam":
            st["exp_avg"].lerp_(g, 1 - self.mu)
            st["exp_avg_sq"].mul_(self.rho).addcmul_(g, g * (1 - self.rho))
            correction1, correction2 = 1 - self.mu ** self.steps, (1 - self.rho ** self.steps).sqrt()
            return (lr / correction1) * st["exp_avg"] / (st["exp_avg_sq"].sqrt() / correction2 + self.delta)
        return lr * g

    def torch_state(self, row: int, shapes: list[torch.Size]) -> list[dict[str, torch.Tensor]]:
        """torch.optim's per-parameter state of member row ``row`` (a global row index), on the CPU."""
        out, offset = [], 0
        for shape in shapes:
            n = math.prod(shape)
            entry = {key: value[row - self.start, offset:offset + n].reshape(shape).cpu().clone()
                     for key, value in self.state.items()}
            if self.name in ("adagrad", "rmsprop", "adam"):
                entry["step"] = torch.tensor(float(self.steps))
            out.append(entry)
            offset += n
        return out


class StackedOptimizer:
    """Updates (K, P) rows in place; members must come ordered by optimizer name."""

    def __init__(self, flat: torch.Tensor, optimizers: list[Mapping[str, Any]], weight_decay: list[float],
                 clip_norm: list[float | None], clip_value: list[float | None]) -> None:
        self.flat = flat
        names = [str(c["name"]) for c in optimizers]
        if names != sorted(names, key=names.index):
            raise ValueError(f"members must come ordered by optimizer, not {names}")
        self.blocks = []
        for name in dict.fromkeys(names):
            start = names.index(name)
            stop = start + names.count(name)
            self.blocks.append(Block(name, start, stop, list(optimizers[start:stop]), flat))
        self.lr = _column([float(c["lr"]) for c in optimizers], flat)
        self.weight_decay = _column(weight_decay, flat) if any(weight_decay) else None
        self.clip_norm = _column([v or math.inf for v in clip_norm], flat) if any(clip_norm) else None
        self.clip_value = _column([v or math.inf for v in clip_value], flat) if any(clip_value) else None

    def set_lr(self, lrs: list[float]) -> None:
        """Each member's learning rate (after its schedule stepped)."""
        self.lr.copy_(_column(lrs, self.lr))

    @torch.no_grad()
    def step(self, grad: torch.Tensor, alive: torch.Tensor) -> None:
        """Clip, add weight decay and update every member whose ``alive`` (K,) is true."""
        if self.clip_norm is not None:  # as clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1
            norm = grad.norm(dim=1, keepdim=True)
            grad = grad * (self.clip_norm / (norm + CLIP_EPS)).clamp(max=1.0)
        if self.clip_value is not None:
            grad = torch.clamp(grad, -self.clip_value, self.clip_value)
        if self.weight_decay is not None:
            grad = grad + self.weight_decay * self.flat
        for block in self.blocks:
            rows = slice(block.start, block.stop)
            delta = block.direction(grad[rows], self.lr[rows])
            self.flat[rows] -= torch.where(alive[rows, None], delta, 0.0)
