"""K members of one MLP shape as one model: every parameter stacked along a leading member dim.

All learnable parameters of all members live in one (K, P) tensor ``flat``: row k holds member k's
parameters in the order of ``MLP.parameters()`` (``parameters_to_vector``), so a member's row is
its single-run model, and the optimizer updates every parameter of every member in a few
elementwise kernels. Each layer multiplies with ``torch.baddbmm``: activations are (K, B, width).
Batch norm normalizes each member over its own batch; dropout draws one mask per member.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from layerscope.activations import build_activation
from layerscope.model import MLP
from layerscope.probes import Captured

BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # nn.BatchNorm1d's defaults, as the single run uses


class StackedMLP:
    """The stacked forward pass of K ``MLP`` members that share depth, width, activation, BN and dropout."""

    def __init__(self, members: list[MLP], activation_cfg: Mapping[str, Any], device: torch.device,
                 dtype: torch.dtype) -> None:
        first = members[0]
        self.depth = len(first.blocks)
        self.bn = "before" if first.blocks[0].bn_before is not None else (
            "after" if first.blocks[0].bn_after is not None else "none")
        self.dropout = first.blocks[0].dropout.p if first.blocks[0].dropout is not None else 0.0
        self.prelu = isinstance(first.blocks[0].act, nn.PReLU)
        self.act = build_activation(activation_cfg.get("name"), activation_cfg)
        self.flat = torch.stack([parameters_to_vector(m.parameters()).detach() for m in members]).to(device, dtype)
        members_count = len(members)
        self.params: dict[str, torch.Tensor] = {}
        offset = 0
        for name, p in first.named_parameters():  # leaves that share the storage of flat's columns
            view = self.flat[:, offset:offset + p.numel()].view(members_count, *p.shape)
            self.params[name] = view.detach().requires_grad_()
            offset += p.numel()
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in members]).to(device, dtype)
                        for name, _ in first.named_buffers() if not name.endswith("num_batches_tracked")}
        self.batches_tracked = 0
        self.training = True

    @property
    def members(self) -> int:
        """K."""
        return len(self.flat)

    def train(self) -> None:
        """Batch statistics and dropout on."""
        self.training = True

    def eval(self) -> None:
        """Running statistics, no dropout."""
        self.training = False

    def weights(self) -> list[torch.Tensor]:
        """The hidden layers' Linear weights, (K, width, fan_in) each."""
        return [self.params[f"blocks.{i}.linear.weight"] for i in range(self.depth)]

    def linear_weights(self) -> list[torch.Tensor]:
        """Every Linear weight, the head's included (what L1 penalizes)."""
        return self.weights() + [self.params["head.weight"]]

    def grad(self) -> torch.Tensor:
        """The gradient of every parameter as one (K, P) tensor, in ``flat``'s layout."""
        return torch.cat([p.grad.reshape(self.members, -1) for p in self.params.values()], dim=1)

    def zero_grad(self) -> None:
        """Drop the gradients (the next backward pass allocates them anew)."""
        for p in self.params.values():
            p.grad = None

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        weight, bias = self.params[f"{name}.weight"], self.params[f"{name}.bias"]
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))  # (K, B, out)

    def _batch_norm(self, h: torch.Tensor, name: str) -> torch.Tensor:
        mean_name, var_name = f"{name}.running_mean", f"{name}.running_var"
        if self.training:
            mean, var = h.mean(1, keepdim=True), h.var(1, unbiased=False, keepdim=True)
            with torch.no_grad():
                n = h.shape[1]
                self.buffers[mean_name].lerp_(mean.squeeze(1), BN_MOMENTUM)
                self.buffers[var_name].lerp_(var.squeeze(1) * (n / (n - 1)), BN_MOMENTUM)
        else:
            mean, var = self.buffers[mean_name].unsqueeze(1), self.buffers[var_name].unsqueeze(1)
        weight, bias = self.params[f"{name}.weight"].unsqueeze(1), self.params[f"{name}.bias"].unsqueeze(1)
        return (h - mean) * torch.rsqrt(var + BN_EPS) * weight + bias

    def _activation(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        if self.prelu:
            slope = self.params[f"blocks.{layer}.act.weight"].view(-1, 1, 1)
            return torch.where(h > 0, h, slope * h)
        return self.act(h)

    def __call__(self, x: torch.Tensor, captured: Captured | None = None) -> torch.Tensor:
        """Logits (K, B, classes) of inputs (K, B, features), or (B, features) shared by every member."""
        if x.dim() == 2:
            x = x.expand(self.members, *x.shape)
        if self.training and self.bn != "none":
            self.batches_tracked += 1
        for i in range(self.depth):
            h = self._linear(x, f"blocks.{i}.linear")
            if self.bn == "before":
                h = self._batch_norm(h, f"blocks.{i}.bn_before")
            x = self._activation(h, i)
            if captured is not None:
                captured.keep(i, h, x)
            if self.bn == "after":
                x = self._batch_norm(x, f"blocks.{i}.bn_after")
            if self.dropout:
                x = F.dropout(x, self.dropout, self.training)
        return self._linear(x, "head")

    @torch.no_grad()
    def member_state(self, k: int, model: MLP) -> dict[str, torch.Tensor]:
        """Member ``k`` written into its single-run ``model`` (on the CPU): that model's state_dict."""
        vector_to_parameters(self.flat[k].to("cpu", next(model.parameters()).dtype), model.parameters())
        state = model.state_dict()
        for name, value in self.buffers.items():
            state[name].copy_(value[k])
        for name in state:
            if name.endswith("num_batches_tracked"):
                state[name].fill_(self.batches_tracked)
        return state
