"""The deep MLP: depth x [Linear -> (norm) -> activation -> (norm) -> (dropout)] -> Linear head.

The norm is batch norm (``bn=before|after``: each unit normalized over the batch) or layer norm
(``bn=ln_before|ln_after``: each sample normalized over the layer's units), before or after the activation.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from layerscope.nets.activations import build_activation

BN_PLACEMENTS = ("none", "before", "after", "ln_before", "ln_after")
BATCH_NORMS = ("before", "after")  # the placements that normalize over the batch (they need 2+ samples)


def hidden_fans(input_dim: int, width: int, depth: int) -> list[int]:
    """The fan_in of each hidden layer: the input, then ``width`` (each has ``width`` units, its fan_out)."""
    return ([input_dim] + [width] * depth)[:depth]


class Block(nn.Module):
    """One hidden layer; ``bn`` puts batch or layer norm before or after the activation (or nowhere)."""

    def __init__(self, fan_in: int, width: int, act: nn.Module, bn: str, dropout: float) -> None:
        super().__init__()
        self.placement = bn
        self.linear = nn.Linear(fan_in, width)
        self.bn_before = nn.BatchNorm1d(width) if bn == "before" else None
        self.ln_before = nn.LayerNorm(width) if bn == "ln_before" else None
        self.act = act
        self.bn_after = nn.BatchNorm1d(width) if bn == "after" else None
        self.ln_after = nn.LayerNorm(width) if bn == "ln_after" else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)  # (B, width)
        for norm in (self.bn_before, self.ln_before):
            if norm is not None:
                x = norm(x)
        x = self.act(x)  # probes hook here: input = pre-activation, output = activation
        for norm in (self.bn_after, self.ln_after):
            if norm is not None:
                x = norm(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    """``depth`` hidden blocks of ``width`` units and a linear classifier head."""

    def __init__(self, input_dim: int, num_classes: int, depth: int, width: int,
                 activation: str, activation_params: Mapping[str, Any] | None, bn: str, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(fan_in, width, build_activation(activation, activation_params), bn, dropout)
                                    for fan_in in hidden_fans(input_dim, width, depth))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)  # (B, classes) logits


def build_model(model_cfg: Mapping[str, Any], activation_cfg: Mapping[str, Any], bn_cfg: Mapping[str, Any],
                input_dim: int, num_classes: int) -> MLP:
    """Build the MLP from the ``model``, ``activation`` and ``bn`` config groups."""
    return MLP(input_dim, num_classes, model_cfg["depth"], model_cfg["width"], activation_cfg.get("name"),
               activation_cfg, bn_cfg["placement"], float(model_cfg.get("dropout", 0.0)))
