"""Optimizers and learning-rate schedules by name, with the lecture's symbols as config keys.

The lecture's update rules (g: gradient, α: lr) and the torch.optim arguments that match them:
  sgd       θ -= α g
  momentum  v = μ v + g;  θ -= α v                               SGD(momentum=μ, dampening=0)
  nesterov  v = μ v + g;  θ -= α (g + μ v)                       SGD(momentum=μ, nesterov=True)
  adagrad   r += g²;  θ -= α / (√r + δ) · g                      Adagrad(eps=δ)
  rmsprop   r = ρ r + (1-ρ) g²;  θ -= α / (√r + δ) · g           RMSprop(alpha=ρ, eps=δ)
  adam      s = μ s + (1-μ) g;  r = ρ r + (1-ρ) g²;
            ŝ = s/(1-μᵗ);  r̂ = r/(1-ρᵗ);  θ -= α ŝ / (√r̂ + δ)     Adam(betas=(μ, ρ), eps=δ)
            bias_correction=false: θ -= α s / (√r + δ)            UncorrectedAdam (the notes call ŝ, r̂ optional)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping

import torch

from layerscope.paths import preset
from layerscope.registry import Registry

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], Mapping[str, Any], float], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
OPTIMIZERS.register("sgd", lambda p, c, wd: torch.optim.SGD(p, lr=c["lr"], weight_decay=wd))
OPTIMIZERS.register(
    "momentum", lambda p, c, wd: torch.optim.SGD(p, lr=c["lr"], momentum=c["mu"], weight_decay=wd)
)
OPTIMIZERS.register(
    "nesterov",
    lambda p, c, wd: torch.optim.SGD(p, lr=c["lr"], momentum=c["mu"], nesterov=True, weight_decay=wd),
)
OPTIMIZERS.register("adagrad", lambda p, c, wd: torch.optim.Adagrad(p, lr=c["lr"], eps=c["delta"], weight_decay=wd))
OPTIMIZERS.register(
    "rmsprop", lambda p, c, wd: torch.optim.RMSprop(p, lr=c["lr"], alpha=c["rho"], eps=c["delta"], weight_decay=wd)
)


class UncorrectedAdam(torch.optim.Optimizer):
    """Adam without bias correction: s = μ s + (1-μ) g;  r = ρ r + (1-ρ) g²;  θ -= α s / (√r + δ).

    Its state has torch.optim.Adam's names (exp_avg, exp_avg_sq, step), so checkpoints read alike.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            mu, rho = group["betas"]
            for p in (p for p in group["params"] if p.grad is not None):
                g = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                if not state:
                    state.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                state["exp_avg"].lerp_(g, 1 - mu)
                state["exp_avg_sq"].mul_(rho).addcmul_(g, g, value=1 - rho)
                p.addcdiv_(state["exp_avg"], state["exp_avg_sq"].sqrt().add_(group["eps"]), value=-group["lr"])


def _adam(p: Iterable[torch.nn.Parameter], c: Mapping[str, Any], wd: float) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if c["bias_correction"] else UncorrectedAdam
    return kind(p, lr=c["lr"], betas=(c["mu"], c["rho"]), eps=c["delta"], weight_decay=wd)


OPTIMIZERS.register("adam", _adam)

HYPER = ("mu", "rho", "delta")


@functools.lru_cache(maxsize=None)
def _lecture(name: str) -> dict:
    return preset("optimizer", name)


def hyper_parameters(cfg: Mapping[str, Any]) -> dict[str, float]:
    """μ ρ δ of optimizer ``cfg``; one left out takes its configs/optimizer/<name>.yaml value (the lecture's)."""
    lecture = _lecture(str(cfg["name"]))
    return {k: float(cfg[k] if k in cfg else lecture[k]) for k in HYPER if k in cfg or k in lecture}


def bias_corrected(cfg: Mapping[str, Any]) -> bool:
    """Whether Adam divides its moments by 1 − μᵗ and 1 − ρᵗ (``optimizer.bias_correction``, true unless set)."""
    return bool(cfg.get("bias_correction", True))


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: Mapping[str, Any], weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """The optimizer ``cfg.name`` with lr α, μ, ρ, δ from ``cfg`` and L2 ``weight_decay``."""
    factory = OPTIMIZERS.get(cfg.get("name"))
    values = {"lr": float(cfg["lr"]), **hyper_parameters(cfg), "bias_correction": bias_corrected(cfg)}
    return factory(params, values, weight_decay)


SchedulerFactory = Callable[[torch.optim.Optimizer, Mapping[str, Any]], torch.optim.lr_scheduler.LRScheduler]
SCHEDULERS: Registry[SchedulerFactory] = Registry("scheduler")
SCHEDULERS.register("constant", lambda o, c: torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 1.0))
SCHEDULERS.register(
    "step", lambda o, c: torch.optim.lr_scheduler.StepLR(o, step_size=int(c["step_size"]), gamma=c["gamma"])
)
SCHEDULERS.register("exponential", lambda o, c: torch.optim.lr_scheduler.ExponentialLR(o, gamma=c["gamma"]))
SCHEDULERS.register(
    "inverse_time",  # α = α₀ / (1 + d · epoch)
    lambda o, c: torch.optim.lr_scheduler.LambdaLR(o, lambda epoch, d=c["decay"]: 1.0 / (1.0 + d * epoch)),
)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any]
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule ``cfg.name`` (stepped once after every epoch)."""
    return SCHEDULERS.get(cfg.get("name"))(optimizer, cfg)
