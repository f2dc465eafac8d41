"""The deep MLP: depth x [Linear -> (BN) -> activation -> (BN) -> (dropout)] -> Linear head."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from layerscope.activations import build_activation

BN_PLACEMENTS = ("none", "before", "after")


class Block(nn.Module):
    """One hidden layer; ``bn`` puts batch norm before or after the activation (or nowhere)."""

    def __init__(self, fan_in: int, width: int, act: nn.Module, bn: str, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, width)
        self.bn_before = nn.BatchNorm1d(width) if bn == "before" else None
        self.act = act
        self.bn_after = nn.BatchNorm1d(width) if bn == "after" else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)  # (B, width)
        if self.bn_before is not None:
            x = self.bn_before(x)
        x = self.act(x)  # probes hook here: input = pre-activation, output = activation
        if self.bn_after is not None:
            x = self.bn_after(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    """``depth`` hidden blocks of ``width`` units and a linear classifier head."""

    def __init__(self, input_dim: int, num_classes: int, depth: int, width: int,
                 activation: str, activation_params: Mapping[str, Any] | None, bn: str, dropout: float) -> None:
        super().__init__()
        fans = [input_dim] + [width] * depth
        self.blocks = nn.ModuleList(
            Block(fans[i], width, build_activation(activation, activation_params), bn, dropout) for i in range(depth)
        )
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
