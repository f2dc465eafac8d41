"""K members of one MLP shape as one model: every parameter stacked along a leading member dim.

All learnable parameters of all members live in one (K, P) tensor ``flat``: row k holds member k's
parameters in the order of ``MLP.parameters()``, Linear weights as (fan_in, fan_out), so a GPU
updates every parameter of every member in a few elementwise kernels. Each layer multiplies with
``torch.baddbmm``: activations are (K, B, width). A single run is K = 1.
Batch norm normalizes each member over its own batch, layer norm each sample over its units. Dropout
draws each member's masks from that member's own generator, so a member's numbers do not depend on
which members share its stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from layerscope.nets.activations import build_activation
from layerscope.nets.mlp import BATCH_NORMS, MLP

BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # nn.BatchNorm1d's defaults, as the single run uses
LN_EPS = 1e-5  # nn.LayerNorm's default
PER_PARAMETER = {"cpu"}  # device types whose optimizer updates each parameter apart (memory-bound, not launch-bound)


def _is_linear_weight(name: str, shape: torch.Size) -> bool:
    return name.endswith("weight") and len(shape) == 2


def _is_linear_bias(name: str) -> bool:
    return name == "head.bias" or name.endswith(".linear.bias")


def _stored(name: str, p: torch.Tensor) -> torch.Tensor:
    """A Linear weight is stored (fan_in, fan_out), so x @ W needs no transpose and its gradient no copy; a Linear
    bias (1, fan_out), so that it adds to each sample's row as it is (no reshaping op and its backward per step)."""
    if _is_linear_weight(name, p.shape):
        return p.t()
    return p.unsqueeze(0) if _is_linear_bias(name) else p


@dataclass
class Captured:
    """One probed pass of K stacked members, per hidden layer: tensors with a leading member dim.

    pre: the activation's input (K, B, width); act: its output; grad: dL/d(act) (None before the
    backward pass); dead: (K, width), True where the activation's local derivative φ'(pre) is exactly 0 for
    every sample of the batch (no gradient passes the unit).
    """

    pre: list[torch.Tensor] = field(default_factory=list)
    act: list[torch.Tensor] = field(default_factory=list)
    grad: list[torch.Tensor | None] = field(default_factory=list)
    dead: list[torch.Tensor] = field(default_factory=list)

    def keep(self, layer: int, pre: torch.Tensor, act: torch.Tensor, derivative: torch.Tensor) -> None:
        """Store a layer's pre-activation, activation and which units pass no gradient (``derivative``: φ'(pre));
        its gradient arrives on backward."""
        self.pre.append(pre.detach())
        self.act.append(act.detach())
        self.dead.append((derivative == 0).all(dim=1))
        self.grad.append(None)
        if act.requires_grad:
            act.register_hook(lambda grad: self.grad.__setitem__(layer, grad.detach()))


class StackedMLP:
    """The stacked forward pass of K ``MLP`` members that share depth, width, activation, BN and dropout."""

    def __init__(self, members: list[MLP], activation_cfg: Mapping[str, Any], device: torch.device,
                 dtype: torch.dtype, dropout: list[torch.Generator] | None = None) -> None:
        first = members[0]
        self.depth, self.width = len(first.blocks), first.blocks[0].linear.out_features
        self.bn = first.blocks[0].placement
        self.norm_before = {"before": "bn_before", "ln_before": "ln_before"}.get(self.bn)  # the norm's module name
        self.norm_after = {"after": "bn_after", "ln_after": "ln_after"}.get(self.bn)
        self.dropout = first.blocks[0].dropout.p if first.blocks[0].dropout is not None else 0.0
        self.generators = dropout or []  # one per member: its dropout masks
        self.prelu = isinstance(first.blocks[0].act, nn.PReLU)
        self.act = build_activation(activation_cfg.get("name"), activation_cfg)
        members_count = len(members)
        rows = [torch.cat([_stored(n, p).reshape(-1) for n, p in m.named_parameters()]) for m in members]
        self.flat = torch.stack(rows).detach().to(device, dtype)
        self.params: dict[str, torch.Tensor] = {}
        self.shapes: dict[str, torch.Size] = {}
        offset = 0
        for name, p in first.named_parameters():  # leaves that share the storage of flat's columns
            stored = _stored(name, p).shape
            view = self.flat[:, offset:offset + p.numel()].view(members_count, *stored)
            self.params[name], self.shapes[name] = view.detach().requires_grad_(), p.shape
            offset += p.numel()
        # what the optimizer updates: one (K, P) block on a GPU (a few kernels per step); per parameter on
        # the CPU, where gathering the gradients into one block would cost a pass over memory per step
        self.per_parameter = device.type in PER_PARAMETER
        self.chunks = ([p.detach().view(members_count, -1) for p in self.params.values()] if self.per_parameter
                       else [self.flat])
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in members]).to(device, dtype)
                        for name, _ in first.named_buffers() if not name.endswith("num_batches_tracked")}
        self.keys = list(first.state_dict())  # a member's state_dict, in the plain MLP's order
        self.initial = [w.detach().clone(memory_format=torch.contiguous_format) for w in self.weights()]  # W_0
        tracked = [b for name, b in first.named_buffers() if name.endswith("num_batches_tracked")]
        self.tracked = (tracked[0] if tracked else torch.zeros((), dtype=torch.long)).to(device).clone()
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
        """The hidden layers' Linear weights as a single run holds them, (K, width, fan_in) each."""
        return [self.params[f"blocks.{i}.linear.weight"].transpose(1, 2) for i in range(self.depth)]

    def weight_grads(self) -> list[torch.Tensor]:
        """Their gradients, (K, width, fan_in) each."""
        return [self.params[f"blocks.{i}.linear.weight"].grad.transpose(1, 2) for i in range(self.depth)]

    def initial_weights(self) -> list[torch.Tensor]:
        """W_0: the hidden layers' weights at the run's step 0, (K, width, fan_in) each, contiguous (NaN where
        unknown)."""
        return self.initial

    def member_initial(self, k: int) -> list[torch.Tensor]:
        """Member ``k``'s W_0 per hidden layer as its single run holds it, (width, fan_in), on the CPU."""
        return [w[k].cpu().clone() for w in self.initial]

    @torch.no_grad()
    def set_initial(self, k: int, weights: list[torch.Tensor] | None) -> None:
        """Member ``k``'s W_0 from ``member_initial``'s list (a checkpoint's); None (unknown): NaN."""
        for layer, w in enumerate(self.initial):
            w[k] = float("nan") if weights is None else weights[layer].to(w.device, w.dtype)

    def linear_weights(self) -> list[torch.Tensor]:
        """Every Linear weight, the head's included (what L1 penalizes)."""
        return [p for name, p in self.params.items() if name.endswith("linear.weight") or name == "head.weight"]

    def grads(self) -> list[torch.Tensor]:
        """The gradients in the layout of ``chunks``."""
        grads = [p.grad.view(self.members, -1) for p in self.params.values()]
        return grads if self.per_parameter else [torch.cat(grads, dim=1)]

    def restack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Inverse of ``unstack``: one member's parameters (or an optimizer state of each) as one flat row."""
        return torch.cat([_stored(name, t).reshape(-1) for name, t in zip(self.shapes, tensors)])

    def unstack(self, row: torch.Tensor) -> list[torch.Tensor]:
        """One member's row of ``flat`` (or of an optimizer state) as its single-run parameters, on the CPU: views of
        one copy of the row (a view of ``flat`` itself would be saved with every member's rows)."""
        out, offset, row = [], 0, row.detach().to("cpu", copy=True)
        for name, shape in self.shapes.items():
            n = shape.numel()
            stored = self.params[name].shape[1:]
            chunk = row[offset:offset + n].reshape(stored)
            out.append(chunk.t() if _is_linear_weight(name, shape) else chunk.view(shape))
            offset += n
        return out

    def zero_grad(self) -> None:
        """Drop the gradients (the next backward pass allocates them anew)."""
        for p in self.params.values():
            p.grad = None

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        weight, bias = self.params[f"{name}.weight"], self.params[f"{name}.bias"]  # (K, in, out), (K, 1, out)
        return torch.baddbmm(bias, x, weight)  # (K, B, out)

    def _norm(self, h: torch.Tensor, layer: int, module: str) -> torch.Tensor:
        name = f"blocks.{layer}.{module}"
        return self._batch_norm(h, name) if module.startswith("bn") else self._layer_norm(h, name)

    def _layer_norm(self, h: torch.Tensor, name: str) -> torch.Tensor:
        weight, bias = self.params[f"{name}.weight"].unsqueeze(1), self.params[f"{name}.bias"].unsqueeze(1)
        return torch.addcmul(bias, F.layer_norm(h, h.shape[-1:], eps=LN_EPS), weight)

    def _batch_norm(self, h: torch.Tensor, name: str) -> torch.Tensor:
        """torch's batch norm over (B, K·width): each member's units are channels of their own, normalized over
        that member's batch (its running statistics updated in place, as ``nn.BatchNorm1d`` updates them)."""
        k, b, width = h.shape
        flat = F.batch_norm(h.transpose(0, 1).reshape(b, k * width), self.buffers[f"{name}.running_mean"].view(-1),
                            self.buffers[f"{name}.running_var"].view(-1), self.params[f"{name}.weight"].reshape(-1),
                            self.params[f"{name}.bias"].reshape(-1), self.training, BN_MOMENTUM, BN_EPS)
        return flat.view(b, k, width).transpose(0, 1)

    def _dropout_noise(self, batch: int) -> torch.Tensor:
        """Each member's uniform draws for this pass's masks, (K, depth, B, width), from its own generator."""
        shape = (self.depth, batch, self.width)
        return torch.stack([torch.rand(shape, generator=g, device=self.flat.device, dtype=self.flat.dtype)
                            for g in self.generators])

    def _activation(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        if self.prelu:
            slope = self.params[f"blocks.{layer}.act.weight"].view(-1, 1, 1)
            return torch.where(h > 0, h, slope * h)
        return self.act(h)

    def derivative(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """φ'(h) of layer ``layer``'s activation at each entry of ``h``, by autograd of the activation itself."""
        with torch.enable_grad():
            h = h.detach().requires_grad_()
            # the sum's gradient is φ'(h) elementwise; a grad_outputs tensor would import torch's sympy (~0.3 s)
            return torch.autograd.grad(self._activation(h, layer).sum(), h)[0]

    def __call__(self, x: torch.Tensor, captured: Captured | None = None) -> torch.Tensor:
        """Logits (K, B, classes) of inputs (K, B, features), or (B, features) shared by every member."""
        if x.dim() == 2:
            x = x.expand(self.members, *x.shape)
        if self.training and self.bn in BATCH_NORMS:
            self.tracked.add_(1)
        noise = self._dropout_noise(x.shape[1]) if self.training and self.dropout else None
        for i in range(self.depth):
            h = self._linear(x, f"blocks.{i}.linear")
            if self.norm_before:
                h = self._norm(h, i, self.norm_before)
            x = self._activation(h, i)
            if captured is not None:
                captured.keep(i, h, x, self.derivative(h, i))
            if self.norm_after:
                x = self._norm(x, i, self.norm_after)
            if noise is not None:  # inverted dropout: keep with probability 1 - p, scaled by 1 / (1 - p)
                x = x * (noise[:, i] >= self.dropout) / (1 - self.dropout)
        return self._linear(x, "head")

    @torch.no_grad()
    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k`` as the plain MLP's ``state_dict`` (on the CPU): ``MLP.load_state_dict`` takes it."""
        state = dict(zip(self.shapes, self.unstack(self.flat[k])))
        state.update({name: value[k].detach().cpu().clone() for name, value in self.buffers.items()})
        tracked = self.tracked.detach().cpu().clone()
        return {key: state[key] if key in state else tracked for key in self.keys}
