"""The lecture's update rules on K ≥ 1 members at once, each member with its own rule and hyper-parameters.

Parameters and gradients are (K, n) rows, a row per member (``StackedMLP.chunks``; a single run is K = 1).
Members come ordered by optimizer, so each rule updates a contiguous block of rows in place, with α, μ, ρ, δ,
the L2 weight decay and the clipping bounds as (rows, 1) tensors. With g = gradient + weight_decay · θ:
  sgd       θ -= α g                                   torch.optim.SGD
  momentum  v = μ v + g;  θ -= α v                     SGD(momentum=μ, dampening=0)
  nesterov  v = μ v + g;  θ -= α (g + μ v)             SGD(momentum=μ, nesterov=True)
  adagrad   r += g²;  θ -= α g / (√r + δ)              Adagrad(eps=δ)
  rmsprop   r = ρ r + (1-ρ) g²;  θ -= α g / (√r + δ)   RMSprop(alpha=ρ, eps=δ)
  adam      s = μ s + (1-μ) g;  r = ρ r + (1-ρ) g²;  θ -= α ŝ / (√r̂ + δ),  ŝ = s/(1-μᵗ), r̂ = r/(1-ρᵗ)
            (bias_correction=false: θ -= α s / (√r + δ))              Adam(betas=(μ, ρ), eps=δ)
tests/test_optim.py checks each rule against the lecture's formula and against torch.optim with those
arguments. The state keeps torch.optim's names, and a member's state is written in torch.optim's
``state_dict`` format. The step count t and the learning rates are device tensors: an update reads nothing
from the host, so a CUDA graph can replay it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterable, Mapping, Sequence

import torch

from layerscope.paths import preset
from layerscope.registry import Registry

OPTIMIZERS: Registry[tuple[str, ...]] = Registry("optimizer")
"""Each rule by name, with its state per parameter (torch.optim's names)."""
for _name, _state in {"sgd": (), "momentum": ("momentum_buffer",), "nesterov": ("momentum_buffer",),
                      "adagrad": ("sum",), "rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq")}.items():
    OPTIMIZERS.register(_name, _state)
COUNTS_STEPS = ("adagrad", "rmsprop", "adam")  # torch.optim keeps a per-parameter ``step`` for these
HYPER = ("mu", "rho", "delta")
CLIP_EPS = 1e-6  # clip_grad_norm_'s: coefficient = max_norm / (total_norm + 1e-6)


def rule(cfg: Mapping[str, Any]) -> str:
    """The rule optimizer ``cfg`` names (an unknown one is a ConfigError listing the choices)."""
    OPTIMIZERS.get(cfg.get("name"))
    return str(cfg["name"])


@functools.lru_cache(maxsize=None)
def _lecture(name: str) -> dict:
    return preset("optimizer", name)


def hyper_parameters(cfg: Mapping[str, Any]) -> dict[str, float]:
    """μ ρ δ of optimizer ``cfg``; one left out takes its configs/optimizer/<name>.yaml value (the lecture's)."""
    lecture = _lecture(rule(cfg))
    return {k: float(cfg[k] if k in cfg else lecture[k]) for k in HYPER if k in cfg or k in lecture}


def bias_corrected(cfg: Mapping[str, Any]) -> bool:
    """Whether Adam divides its moments by 1 − μᵗ and 1 − ρᵗ (``optimizer.bias_correction``, true unless set)."""
    return bool(cfg.get("bias_correction", True))


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).unsqueeze(1)


class Block:
    """The rows [start, stop) of the members that share one rule, with their hyper-parameters and state."""

    def __init__(self, name: str, start: int, stop: int, cfgs: list[Mapping[str, Any]],
                 chunks: list[torch.Tensor]) -> None:
        self.name, self.start, self.stop = name, start, stop
        hyper = [hyper_parameters(c) for c in cfgs]
        self.mu, self.rho, self.delta = (_column([h.get(k, math.nan) for h in hyper], chunks[0])
                                         for k in HYPER)  # NaN: a key this rule does not read
        self.corrected = _column([float(bias_corrected(c)) for c in cfgs], chunks[0])
        self.state = {key: [torch.zeros_like(c[start:stop]) for c in chunks] for key in OPTIMIZERS.get(name)}
        self.params = [c[start:stop] for c in chunks]  # views of these rows, made once
        self.rows = slice(start, stop) if stop - start < len(chunks[0]) else None  # None: every row, no view needed

    def update(self, grads: list[torch.Tensor], lr: torch.Tensor, t: torch.Tensor) -> None:
        """θ -= Δθ in place for these rows of every chunk, from every member's ``grads`` at learning rates ``lr``
        (K, 1), step ``t``: each operation on all chunks at once (``torch._foreach_*``: on the CPU a chunk per
        parameter, and dispatching an operation costs more than a small parameter's arithmetic)."""
        if self.rows is not None:
            grads, lr = [g[self.rows] for g in grads], lr[self.rows]
        torch._foreach_addcmul_(self.params, self._directions(grads, t), [lr] * len(self.params), value=-1.0)

    def _directions(self, g: list[torch.Tensor], t: torch.Tensor) -> list[torch.Tensor]:
        """Δθ / α for gradients ``g`` (overwritten: the caller's copy), chunk by chunk; the same operations in the
        same order as on one tensor."""
        name, state, every = self.name, self.state, lambda column: [column] * len(g)
        if name == "sgd":
            return g
        if name in ("momentum", "nesterov"):  # from v = 0, the first step gives v = g exactly
            buf = state["momentum_buffer"]
            torch._foreach_mul_(buf, every(self.mu))
            torch._foreach_add_(buf, g)
            if name == "nesterov":
                torch._foreach_addcmul_(g, every(self.mu), buf)
                return g
            return buf
        if name == "adagrad":
            torch._foreach_addcmul_(state["sum"], g, g)
            return self._over_root(g, state["sum"])
        if name == "rmsprop":
            torch._foreach_lerp_(state["square_avg"], torch._foreach_mul(g, g), every(1 - self.rho))
            return self._over_root(g, state["square_avg"])
        torch._foreach_lerp_(state["exp_avg"], g, every(1 - self.mu))  # adam
        torch._foreach_mul_(g, g)
        torch._foreach_lerp_(state["exp_avg_sq"], g, every(1 - self.rho))
        correction1 = 1 - self.corrected * self.mu.pow(t)
        correction2 = (1 - self.corrected * self.rho.pow(t)).sqrt()
        denominator = torch._foreach_sqrt(state["exp_avg_sq"])
        torch._foreach_div_(denominator, every(correction2))
        torch._foreach_add_(denominator, every(self.delta))
        directions = torch._foreach_div(state["exp_avg"], denominator)
        torch._foreach_div_(directions, every(correction1))
        return directions

    def _over_root(self, g: list[torch.Tensor], squares: list[torch.Tensor]) -> list[torch.Tensor]:
        """g / (√squares + δ), in place in ``g``."""
        root = torch._foreach_sqrt(squares)
        torch._foreach_add_(root, [self.delta] * len(g))
        torch._foreach_div_(g, root)
        return g

    def row(self, key: str, k: int) -> torch.Tensor:
        """State ``key`` of member ``k`` (a row of the whole stack) as one flat row."""
        return torch.cat([chunk[k - self.start] for chunk in self.state[key]])

    def set_row(self, key: str, k: int, row: torch.Tensor) -> None:
        """Overwrite state ``key`` of member ``k`` with one flat row."""
        offset = 0
        for chunk in self.state[key]:
            n = chunk.shape[1]
            chunk[k - self.start].copy_(row[offset:offset + n])
            offset += n


class Optimizer:
    """The update of K members' rows in place; members must come ordered by optimizer name.

    ``chunks`` hold the parameters as (K, n) tensors: one (K, P) block, or one per parameter.
    """

    def __init__(self, chunks: list[torch.Tensor], optimizers: list[Mapping[str, Any]],
                 weight_decay: list[float] | None = None, clip_norm: list[float | None] | None = None,
                 clip_value: list[float | None] | None = None) -> None:
        self.chunks = chunks
        names = [rule(c) for c in optimizers]
        if names != sorted(names, key=names.index):
            raise ValueError(f"members must come ordered by optimizer, not {names}")
        self.blocks = [Block(name, names.index(name), names.index(name) + names.count(name),
                             list(optimizers[names.index(name):names.index(name) + names.count(name)]), chunks)
                       for name in dict.fromkeys(names)]
        like = chunks[0]
        self.lr = _column([float(c["lr"]) for c in optimizers], like)
        self.t = torch.zeros((), dtype=like.dtype, device=like.device)  # steps taken
        weight_decay, clip_norm, clip_value = (v or [None] * len(names) for v in (weight_decay, clip_norm, clip_value))
        self.weight_decay = _column([v or 0.0 for v in weight_decay], like) if any(weight_decay) else None
        self.clip_norm = _column([v or math.inf for v in clip_norm], like) if any(clip_norm) else None
        self.clip_value = _column([v or math.inf for v in clip_value], like) if any(clip_value) else None

    def set_lr(self, lrs: list[float]) -> None:
        """Each member's learning rate (its schedule's, for the epoch that begins)."""
        self.lr.copy_(_column(lrs, self.lr))

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], alive: torch.Tensor | None = None) -> None:
        """Clip, add weight decay and update every member whose ``alive`` (K,) is true (``grads`` are ours to change).

        A masked member's learning rate is 0; its rows may turn NaN (0 · NaN) but are never read again:
        it has ended, with its last healthy checkpoint.
        """
        self.t.add_(1)
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
        lr = self.lr if alive is None else self.lr * alive[:, None]
        for block in self.blocks:
            block.update(grads, lr, self.t)

    def _block(self, k: int) -> Block:
        return next(b for b in self.blocks if b.start <= k < b.stop)

    def member_state(self, k: int, unstack) -> dict[str, Any]:
        """Member ``k``'s state in torch.optim's ``state_dict`` format; ``unstack`` turns a flat row into the
        member's parameters (``StackedMLP.unstack``)."""
        block = self._block(k)
        per_key = {key: unstack(block.row(key, k)) for key in block.state}
        count = len(next(iter(per_key.values()))) if per_key else 0
        state = {i: {key: values[i] for key, values in per_key.items()} for i in range(count)}
        if block.name in COUNTS_STEPS:
            for entry in state.values():
                entry["step"] = self.t.detach().cpu().float().clone()
        return {"state": state, "param_groups": [{"lr": float(self.lr[k]), "name": block.name,
                                                  "params": list(range(count))}]}

    def load_member_state(self, k: int, saved: Mapping[str, Any], restack) -> None:
        """Member ``k``'s state from what ``member_state`` (or torch.optim, for the same rule) wrote; ``restack``
        turns the member's parameters into a flat row (``StackedMLP.restack``)."""
        block, state = self._block(k), saved.get("state", {})
        for key in block.state:
            block.set_row(key, k, restack([state[i][key] for i in sorted(state)]).to(self.lr.device, self.lr.dtype))
        steps = [float(entry["step"]) for entry in state.values() if "step" in entry]
        if steps:
            self.t.fill_(steps[0])


class ParameterOptimizer:
    """One optimizer config on plain tensors (a 2-D simulation's point, a test's parameter): ``step`` reads their
    ``.grad`` and updates them in place with the rules above."""

    def __init__(self, params: Iterable[torch.Tensor], cfg: Mapping[str, Any], weight_decay: float = 0.0) -> None:
        self.params = list(params)
        self.rows = Optimizer([p.detach().view(1, -1) for p in self.params], [cfg], [weight_decay])

    def zero_grad(self) -> None:
        """Drop the gradients."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One update from the current gradients."""
        self.rows.step([p.grad.detach().reshape(1, -1).clone() for p in self.params])


def build_optimizer(params: Iterable[torch.Tensor], cfg: Mapping[str, Any],
                    weight_decay: float = 0.0) -> ParameterOptimizer:
    """The optimizer ``cfg.name`` with lr α, μ, ρ, δ from ``cfg`` and L2 ``weight_decay``, on plain tensors."""
    return ParameterOptimizer(params, cfg, weight_decay)
