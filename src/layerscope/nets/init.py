"""Weight initializers by name, each written as the lecture writes its formula.

An initializer is a law for the entries of a ``(fan_out, fan_in)`` weight (normal, uniform,
orthogonal) and one formula for their variance Var W. The draw and the mean-field theory
(σ_w² = fan_in · Var W, ``theory.init_variances``) both read that formula, so the weights and the
prediction cannot disagree. Every variance formula has the interface
``variance(fan_in, fan_out, gain, std, mode)``; every law ``draw(weight, var, generator)`` fills ``weight``
in place from the run's own generator. ``gain`` is a number or ``auto`` (the activation's recommended gain,
see ``activations.activation_gain``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from layerscope.errors import ConfigError
from layerscope.nets.activations import activation_gain
from layerscope.registry import Registry

Variance = Callable[[int, int, float, float, str], float]


@dataclass(frozen=True)
class Initializer:
    """One initializer: the law its weights are drawn from and the variance of each weight."""

    draw: Callable[[torch.Tensor, float, torch.Generator | None], None]
    variance: Variance
    gain: float | str = 1.0  # used when the config gives none; auto: the activation's gain


# --- the laws: fill a (fan_out, fan_in) weight in place with entries of variance var ------------


def zeros_(weight: torch.Tensor, var: float, generator: torch.Generator | None = None) -> None:
    """W = 0 (var is 0)."""
    nn.init.zeros_(weight)


def normal_(weight: torch.Tensor, var: float, generator: torch.Generator | None = None) -> None:
    """W ~ N(0, var)."""
    nn.init.normal_(weight, 0.0, math.sqrt(var), generator=generator)


def uniform_(weight: torch.Tensor, var: float, generator: torch.Generator | None = None) -> None:
    """W ~ U(−b, b), b = √(3 · var): the uniform law of variance var."""
    bound = math.sqrt(3.0 * var)
    nn.init.uniform_(weight, -bound, bound, generator=generator)


def orthogonal_(weight: torch.Tensor, var: float, generator: torch.Generator | None = None) -> None:
    """W = g · Q, Q with orthonormal rows (or columns, if W is taller than wide), g = √(var · max(fan_in, fan_out)).

    g · Q's rows (columns) have norm g, so its entries have mean square g²/max(fan_in, fan_out) = var.
    """
    if weight.dim() != 2:
        raise ConfigError(f"init=orthogonal needs a 2-D (fan_out, fan_in) weight, not one of shape "
                          f"{tuple(weight.shape)}")
    nn.init.orthogonal_(weight, math.sqrt(var * max(weight.shape)), generator=generator)


# --- the variances, as the lecture writes them -------------------------------------------------


def fan(fan_in: float, fan_out: float, mode: str) -> float:
    """fan_in, fan_out, or their mean (fan_avg)."""
    return float({"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode])


def zero(fan_in: int, fan_out: int, gain: float, std: float, mode: str) -> float:
    """Var W = 0: every unit of a layer computes the same function."""
    return 0.0


def fixed(fan_in: int, fan_out: int, gain: float, std: float, mode: str) -> float:
    """Var W = std², the same in every layer (the lecture's N(0, 0.01²) and N(0, 1))."""
    return std**2


def scaled(fan_in: int, fan_out: int, gain: float, std: float, mode: str) -> float:
    """Var W = gain²/fan: Xavier N(0, 1/fan_in) as the lecture writes it (gain 1), He N(0, 2/fan_in) (gain √2 for
    ReLU), Glorot's 2/(fan_in+fan_out) with fan_avg; the uniform variants bound at gain · √(3/fan)."""
    return gain**2 / fan(fan_in, fan_out, mode)


def lecun(fan_in: int, fan_out: int, gain: float, std: float, mode: str) -> float:
    """Var W = 1/fan_in (LeCun et al. 1998): N(0, 1/fan_in), or U(±√(3/fan_in))."""
    return 1.0 / fan_in


def glorot(fan_in: int, fan_out: int, gain: float, std: float, mode: str) -> float:
    """Var W = gain² · 2/(n_in+n_out): b²/3 of U[−√6/√(n_in+n_out), +√6/√(n_in+n_out)] · gain (Glorot & Bengio 2010)."""
    return gain**2 * 2.0 / (fan_in + fan_out)


def glorot_standard(fan_in: int, fan_out: int, gain: float, std: float, mode: str) -> float:
    """Var W = 1/(3 n_in): b²/3 of U[−1/√n_in, +1/√n_in], Glorot & Bengio 2010's "standard" init (eq. 1)."""
    return 1.0 / (3.0 * fan_in)


def orthogonal(fan_in: int, fan_out: int, gain: float, std: float, mode: str) -> float:
    """Var W = gain²/max(n_in, n_out): gain · Q, Q semi-orthogonal (Saxe et al. 2014); gain²/n when square."""
    return gain**2 / max(fan_in, fan_out)


INITIALIZERS: Registry[Initializer | None] = Registry("init")
INITIALIZERS.register("zeros", Initializer(zeros_, zero))
INITIALIZERS.register("normal", Initializer(normal_, fixed))
INITIALIZERS.register("xavier_normal", Initializer(normal_, scaled))
INITIALIZERS.register("xavier_uniform", Initializer(uniform_, scaled))
INITIALIZERS.register("he_normal", Initializer(normal_, scaled, gain="auto"))
INITIALIZERS.register("he_uniform", Initializer(uniform_, scaled, gain="auto"))
INITIALIZERS.register("lecun_normal", Initializer(normal_, lecun))
INITIALIZERS.register("lecun_uniform", Initializer(uniform_, lecun))
INITIALIZERS.register("glorot_uniform", Initializer(uniform_, glorot))
INITIALIZERS.register("glorot_standard", Initializer(uniform_, glorot_standard))
INITIALIZERS.register("orthogonal", Initializer(orthogonal_, orthogonal))
INITIALIZERS.register("default", None)  # torch's own Linear init: U(±1/√fan_in) for W and b


def resolve_gain(gain: Any, activation: str, activation_params: Mapping[str, Any] | None) -> float:
    """A number stays; ``auto`` becomes the activation's recommended gain."""
    return activation_gain(activation, activation_params) if gain == "auto" else float(gain)


def gain_setting(cfg: Mapping[str, Any]) -> float | str:
    """The config's ``gain``, or the initializer's own when the config gives none."""
    return cfg.get("gain", INITIALIZERS.get(cfg.get("name")).gain)


def weight_variance(cfg: Mapping[str, Any], fan_in: int, fan_out: int, gain: float) -> float:
    """Var W of each weight of a (fan_out, fan_in) layer that ``cfg`` (the ``init`` group) draws with ``gain``."""
    spec = INITIALIZERS.get(cfg.get("name"))
    return spec.variance(fan_in, fan_out, gain, float(cfg.get("std", 1.0)), str(cfg.get("mode", "fan_in")))


def torch_default_(layer: nn.Linear, generator: torch.Generator | None = None) -> None:
    """nn.Linear's own init, as its ``reset_parameters`` draws it: W and b ~ U(±1/√fan_in)."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        bound = 1 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def initialize(
    model: nn.Module,
    cfg: Mapping[str, Any],
    activation: str,
    activation_params: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Initialize every Linear layer of ``model`` as ``cfg`` (the ``init`` group) says, drawing from ``generator``.

    Hidden layers use the activation's gain when ``gain: auto``; the output layer, which has
    no activation, uses gain 1. Biases are drawn from N(0, ``cfg.bias_std``²) (the mean-field σ_b²)
    when ``bias_std`` > 0, else set to the constant ``cfg.bias`` (0), except for ``default``.
    """
    spec = INITIALIZERS.get(cfg.get("name"))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        if spec is None:
            for layer in linears:
                torch_default_(layer, generator)
            return
        setting = gain_setting(cfg)
        hidden_gain = resolve_gain(setting, activation, activation_params)
        for index, layer in enumerate(linears):
            is_head = index == len(linears) - 1
            gain = 1.0 if (is_head and setting == "auto") else hidden_gain
            spec.draw(layer.weight, weight_variance(cfg, layer.in_features, layer.out_features, gain), generator)
            if layer.bias is not None and float(cfg.get("bias_std", 0.0)) > 0:
                layer.bias.normal_(0.0, float(cfg["bias_std"]), generator=generator)
            elif layer.bias is not None:
                layer.bias.fill_(float(cfg.get("bias", 0.0)))
