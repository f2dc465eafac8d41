"""Loss functions by name: cross-entropy on logits, or MSE between logits and one-hot targets.

Each takes logits (..., B, classes) and labels (..., B) and returns the mean over the batch,
keeping leading dims: a scalar for one model, (K,) for K stacked members.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from layerscope.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[y], averaged over the batch."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, y)
    return F.cross_entropy(logits.movedim(-1, 1), y, reduction="none").mean(-1)  # classes second: (K, C, B)


def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the logits and one-hot targets, averaged over batch and classes."""
    target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    return F.mse_loss(logits, target, reduction="none").mean((-2, -1))


LOSSES.register("cross_entropy", cross_entropy)
LOSSES.register("mse", mse)
