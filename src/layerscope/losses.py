"""Loss functions by name: cross-entropy on logits, or MSE between logits and one-hot targets."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from layerscope.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")
LOSSES.register("cross_entropy", F.cross_entropy)
LOSSES.register("mse", lambda logits, y: F.mse_loss(logits, F.one_hot(y, logits.shape[1]).to(logits.dtype)))
