"""The lecture's update rules on K stacked members, each with its own optimizer and hyper-parameters.

Parameters and gradients are (K, n) rows (``StackedMLP.chunks``). Members are ordered by optimizer,
so each optimizer updates a contiguous block of rows in place; α, μ, ρ, δ, the L2 weight decay and
the clipping bounds are (rows, 1) tensors. The rules are ``layerscope.optim``'s, written as torch.optim
computes them, so a member follows its single run (tests/test_stacked.py):
  sgd       θ -= α g                          momentum  v = μ v + g;  θ -= α v
  nesterov  v = μ v + g;  θ -= α (g + μ v)    adagrad   r += g²;  θ -= α g / (√r + δ)
  rmsprop   r = ρ r + (1-ρ) g²;  θ -= α g / (√r + δ)
  adam      s = μ s + (1-μ) g;  r = ρ r + (1-ρ) g²;  θ -= α/(1-μᵗ) · s / (√r/√(1-ρᵗ) + δ)
            (bias_correction=false: θ -= α s / (√r + δ); a (rows, 1) switch per member)
with g = gradient + weight_decay · θ. A member whose loss turned NaN/inf is masked: it is not updated.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from layerscope.optim import HYPER, bias_corrected, hyper_parameters

STATE = {"sgd": (), "momentum": ("momentum_buffer",), "nesterov": ("momentum_buffer",), "adagrad": ("sum",),
         "rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq")}
"""Each optimizer's state per parameter, by torch.optim's names (checkpoints use them)."""
COUNTS_STEPS = ("adagrad", "rmsprop", "adam")  # torch.optim also keeps a per-parameter ``step`` for these

CLIP_EPS = 1e-6  # clip_grad_norm_'s: coefficient = max_norm / (total_norm + 1e-6)


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).unsqueeze(1)


class Block:
    """The rows [start, stop) of the members that share one optimizer, with their hyper-parameters and state."""

    def __init__(self, name: str, start: int, stop: int, cfgs: list[Mapping[str, Any]],
                 chunks: list[torch.Tensor]) -> None:
        self.name, self.start, self.stop = name, start, stop
        hyper = [hyper_parameters(c) for c in cfgs]
        self.mu, self.rho, self.delta = (_column([h.get(k, math.nan) for h in hyper], chunks[0])
                                         for k in HYPER)  # NaN: a key this optimizer does not read
        self.corrected = _column([float(bias_corrected(c)) for c in cfgs], chunks[0])
        self.state = {key: [torch.zeros_like(c[start:stop]) for c in chunks] for key in STATE[name]}
        self.steps = 0

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        """θ -= Δθ in place for these rows of every chunk, at learning rates ``lr`` (rows, 1)."""
        self.steps += 1
        for i, (theta, g) in enumerate(zip(params, grads)):
            st = {key: values[i] for key, values in self.state.items()}
            theta.addcmul_(self._direction(g, st), lr, value=-1.0)

    def _direction(self, g: torch.Tensor, st: dict[str, torch.Tensor]) -> torch.Tensor:
        """Δθ / α for gradients ``g`` (overwritten: the caller's copy). In place, one temporary at most: on the
        CPU each pass over the K members' parameters costs about as much as a matmul."""
        name = self.name
        if name == "sgd":
            return g
        if name in ("momentum", "nesterov"):
            buf = st["momentum_buffer"]
            buf.copy_(g) if self.steps == 1 else buf.mul_(self.mu).add_(g)
            return g.addcmul_(self.mu, buf) if name == "nesterov" else buf
        if name == "adagrad":
            st["sum"].addcmul_(g, g)
            return g.div_(torch.sqrt(st["sum"]).add_(self.delta))
        if name == "rmsprop":
            st["square_avg"].lerp_(g.square(), 1 - self.rho)
            return g.div_(torch.sqrt(st["square_avg"]).add_(self.delta))
        st["exp_avg"].lerp_(g, 1 - self.mu)  # adam
        st["exp_avg_sq"].lerp_(g.mul_(g), 1 - self.rho)
        correction1 = 1 - self.corrected * self.mu ** self.steps
        correction2 = (1 - self.corrected * self.rho ** self.steps).sqrt()
        denominator = torch.sqrt(st["exp_avg_sq"], out=g).div_(correction2).add_(self.delta)
        return torch.div(st["exp_avg"], denominator, out=denominator).div_(correction1)

    def rows(self, key: str, row: int) -> torch.Tensor:
        """State ``key`` of member row ``row`` (a global row index) as one flat row."""
        return torch.cat([chunk[row - self.start] for chunk in self.state[key]])


class StackedOptimizer:
    """Updates the rows of K members in place; members must come ordered by optimizer name.

    ``chunks`` hold the parameters as (K, n) tensors: one (K, P) block, or one per parameter.
    """

    def __init__(self, chunks: list[torch.Tensor], optimizers: list[Mapping[str, Any]], weight_decay: list[float],
                 clip_norm: list[float | None], clip_value: list[float | None]) -> None:
        self.chunks = chunks
        names = [str(c["name"]) for c in optimizers]
        if names != sorted(names, key=names.index):
            raise ValueError(f"members must come ordered by optimizer, not {names}")
        self.blocks = [Block(name, names.index(name), names.index(name) + names.count(name),
                             list(optimizers[names.index(name):names.index(name) + names.count(name)]), chunks)
                       for name in dict.fromkeys(names)]
        self.lr = _column([float(c["lr"]) for c in optimizers], chunks[0])
        self.weight_decay = _column(weight_decay, chunks[0]) if any(weight_decay) else None
        self.clip_norm = _column([v or math.inf for v in clip_norm], chunks[0]) if any(clip_norm) else None
        self.clip_value = _column([v or math.inf for v in clip_value], chunks[0]) if any(clip_value) else None

    def set_lr(self, lrs: list[float]) -> None:
        """Each member's learning rate (after its schedule stepped)."""
        self.lr.copy_(_column(lrs, self.lr))

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], alive: torch.Tensor) -> None:
        """Clip, add weight decay and update every member whose ``alive`` (K,) is true (``grads`` are ours to change).

        A masked member's learning rate is 0; its rows may turn NaN (0 · NaN) but are never read again:
        it has ended, with its last healthy checkpoint.
        """
        if self.clip_norm is not None:  # as clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1
            norm = sum(g.square().sum(1, keepdim=True) for g in grads).sqrt()
            coefficient = (self.clip_norm / (norm + CLIP_EPS)).clamp(max=1.0)
            for g in grads:
                g.mul_(coefficient)
        if self.clip_value is not None:
            for g in grads:
                torch.clamp(g, -self.clip_value, self.clip_value, out=g)
        if self.weight_decay is not None:
            for g, theta in zip(grads, self.chunks):
                g.addcmul_(theta, self.weight_decay)
        lr = self.lr * alive[:, None]
        for block in self.blocks:
            rows = slice(block.start, block.stop)
            block.update([c[rows] for c in self.chunks], [g[rows] for g in grads], lr[rows])
