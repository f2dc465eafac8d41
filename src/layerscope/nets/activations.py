"""Activation functions by name, with what the probes and initializers need to know of each."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from layerscope.nets.gaussian import expect_standard_normal
from layerscope.registry import Registry


@dataclass(frozen=True)
class Activation:
    """One activation: its module, its saturating range and its recommended init gain."""

    module: Callable[..., nn.Module]
    bounds: tuple[float, float] | None = None  # tanh/sigmoid saturate at these values
    rectifier: bool = False  # flat (or nearly) for negative input, so units can die
    torch_gain: Callable[..., float] | None = None  # None: gain by moment matching


class Swish(nn.Module):
    """x · σ(βx) (Ramachandran et al. 2017), computed as silu(βx)/β so that β = 1 is SiLU to the bit."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.beta * x) / self.beta


ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.register("sigmoid", Activation(nn.Sigmoid, bounds=(0.0, 1.0), torch_gain=lambda: 1.0))
ACTIVATIONS.register("tanh", Activation(nn.Tanh, bounds=(-1.0, 1.0), torch_gain=lambda: 5.0 / 3.0))
ACTIVATIONS.register("softsign", Activation(nn.Softsign, bounds=(-1.0, 1.0)))  # x/(1+|x|) (Glorot & Bengio 2010)
ACTIVATIONS.register("relu", Activation(nn.ReLU, rectifier=True, torch_gain=lambda: math.sqrt(2.0)))
ACTIVATIONS.register(
    "leaky_relu",
    Activation(
        nn.LeakyReLU,
        rectifier=True,
        torch_gain=lambda negative_slope=0.01: math.sqrt(2.0 / (1.0 + negative_slope**2)),
    ),
)
ACTIVATIONS.register(
    "prelu",
    Activation(
        nn.PReLU,
        rectifier=True,
        torch_gain=lambda init=0.25, num_parameters=1: math.sqrt(2.0 / (1.0 + init**2)),
    ),
)
ACTIVATIONS.register("elu", Activation(nn.ELU, rectifier=True))
ACTIVATIONS.register("selu", Activation(nn.SELU, rectifier=True, torch_gain=lambda: 3.0 / 4.0))
ACTIVATIONS.register("silu", Activation(nn.SiLU))
ACTIVATIONS.register("swish", Activation(Swish))
ACTIVATIONS.register("softplus", Activation(nn.Softplus, rectifier=True))
ACTIVATIONS.register("gelu", Activation(nn.GELU))
ACTIVATIONS.register("identity", Activation(nn.Identity, torch_gain=lambda: 1.0))  # no nonlinearity: a linear net


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if k != "name"}


def parameters(name: str) -> list[str]:
    """The config parameters activation ``name`` takes: its module's keyword arguments (``negative_slope``...)."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(ACTIVATIONS.get(name).module).parameters.values()
            if p.kind in named and p.name not in ("inplace", "device", "dtype")]


def build_activation(name: str, params: Mapping[str, Any] | None = None) -> nn.Module:
    """Instantiate activation ``name`` with its config parameters (checked by ``validate``)."""
    return ACTIVATIONS.get(name).module(**_params(params))


def activation_fn(name: str, params: Mapping[str, Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as a plain function of a tensor (float64-safe), for theory and gains."""
    module = build_activation(name, params).double()
    return lambda z: module(z)


def activation_gain(name: str, params: Mapping[str, Any] | None = None) -> float:
    """The init gain that keeps the second moment of activations constant through a layer.

    torch's ``calculate_gain`` values are used where torch has one (sigmoid 1, tanh 5/3, ReLU √2,
    leaky ReLU / PReLU √(2/(1+a²)), SELU 3/4). For elu, silu, swish, softplus, softsign and gelu, which torch
    lacks, the gain is g = 1/√E[φ(z)²], z ~ N(0, 1): the same rule that gives √2 for ReLU.
    """
    spec = ACTIVATIONS.get(name)
    kwargs = _params(params)
    if spec.torch_gain is not None:
        return float(spec.torch_gain(**kwargs))
    fn = activation_fn(name, params)
    with torch.no_grad():
        second_moment = expect_standard_normal(lambda z: fn(torch.from_numpy(z)).pow(2).numpy())
    return 1.0 / math.sqrt(second_moment)
