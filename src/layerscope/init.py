"""Weight initializers by name, each written as the lecture writes its formula.

Every initializer has the interface ``fn(weight, gain, std, mode)`` and fills ``weight``
(shape ``(fan_out, fan_in)``) in place from torch's global RNG. ``gain`` is a number or
``auto`` (the activation's recommended gain, see ``activations.activation_gain``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch import nn

from layerscope.activations import activation_gain
from layerscope.registry import Registry

Initializer = Callable[[torch.Tensor, float, float, str], None]
INITIALIZERS: Registry[Initializer | None] = Registry("init")


def fan(weight: torch.Tensor, mode: str) -> float:
    """fan_in, fan_out, or their mean (fan_avg) of a ``(fan_out, fan_in)`` weight."""
    fan_out, fan_in = weight.shape
    return float({"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode])


def zeros(weight: torch.Tensor, gain: float, std: float, mode: str) -> None:
    """W = 0: every unit of a layer computes the same function."""
    nn.init.zeros_(weight)


def normal(weight: torch.Tensor, gain: float, std: float, mode: str) -> None:
    """W ~ N(0, std²), the same std for every layer."""
    nn.init.normal_(weight, 0.0, std)


def xavier_normal(weight: torch.Tensor, gain: float, std: float, mode: str) -> None:
    """W ~ N(0, gain²/fan): std = gain · √(1/fan_in) (lecture), or √(2/(fan_in+fan_out)) with fan_avg."""
    nn.init.normal_(weight, 0.0, gain / math.sqrt(fan(weight, mode)))


def xavier_uniform(weight: torch.Tensor, gain: float, std: float, mode: str) -> None:
    """W ~ U(-b, b), b = gain · √(3/fan): the same variance as xavier_normal."""
    bound = gain * math.sqrt(3.0 / fan(weight, mode))
    nn.init.uniform_(weight, -bound, bound)


def he_normal(weight: torch.Tensor, gain: float, std: float, mode: str) -> None:
    """W ~ N(0, gain²/fan_in), gain = √2 for ReLU: std = √(2/fan_in)."""
    nn.init.normal_(weight, 0.0, gain / math.sqrt(fan(weight, mode)))


def he_uniform(weight: torch.Tensor, gain: float, std: float, mode: str) -> None:
    """W ~ U(-b, b), b = gain · √(3/fan_in), gain = √2 for ReLU: b = √(6/fan_in)."""
    bound = gain * math.sqrt(3.0 / fan(weight, mode))
    nn.init.uniform_(weight, -bound, bound)


for _fn in (zeros, normal, xavier_normal, xavier_uniform, he_normal, he_uniform):
    INITIALIZERS.register(_fn.__name__, _fn)
INITIALIZERS.register("default", None)  # torch's own Linear init: U(±1/√fan_in) for W and b

_DEFAULT_GAIN = {"xavier_normal": 1.0, "xavier_uniform": 1.0, "he_normal": "auto", "he_uniform": "auto"}


def resolve_gain(gain: Any, activation: str, activation_params: Mapping[str, Any] | None) -> float:
    """A number stays; ``auto`` becomes the activation's recommended gain."""
    return activation_gain(activation, activation_params) if gain == "auto" else float(gain)


def initialize(
    model: nn.Module,
    cfg: Mapping[str, Any],
    activation: str,
    activation_params: Mapping[str, Any] | None = None,
) -> None:
    """Initialize every Linear layer of ``model`` as ``cfg`` (the ``init`` group) says.

    Hidden layers use the activation's gain when ``gain: auto``; the output layer, which has
    no activation, uses gain 1. Biases are drawn from N(0, ``cfg.bias_std``²) (the mean-field σ_b²)
    when ``bias_std`` > 0, else set to the constant ``cfg.bias`` (0), except for ``default``.
    """
    name = cfg.get("name")
    fn = INITIALIZERS.get(name)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    std, mode = cfg.get("std", 1.0), str(cfg.get("mode", "fan_in"))
    gain_setting = cfg.get("gain", _DEFAULT_GAIN.get(name, 1.0))
    hidden_gain = resolve_gain(gain_setting, activation, activation_params)
    with torch.no_grad():
        for index, layer in enumerate(linears):
            if fn is None:
                layer.reset_parameters()
                continue
            is_head = index == len(linears) - 1
            gain = 1.0 if (is_head and gain_setting == "auto") else hidden_gain
            fn(layer.weight, gain, float(std), mode)
            if layer.bias is not None and float(cfg.get("bias_std", 0.0)) > 0:
                layer.bias.normal_(0.0, float(cfg["bias_std"]))
            elif layer.bias is not None:
                layer.bias.fill_(float(cfg.get("bias", 0.0)))
