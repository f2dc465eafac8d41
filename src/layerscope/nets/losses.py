"""Loss functions by name: classification losses on the logits, and regression of the logits onto one-hot targets.

Each takes logits (..., B, classes) and labels (..., B), and its config keys as keyword arguments,
and returns the mean over the batch keeping leading dims: a scalar for one model, (K,) for K
stacked members. ``build_loss`` binds the ``loss`` group's keys.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from layerscope.registry import Registry

Loss = Callable[..., torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")


def _nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−log p_t per example (..., B), p_t = softmax(logits)[y]."""
    return F.cross_entropy(logits.movedim(-1, 1), y, reduction="none")  # classes second: (K, C, B); (B, C) stays


def _one_hot(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, logits.shape[-1]).to(logits.dtype)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−log softmax(logits)[y], averaged over the batch."""
    return _nll(logits, y).mean(-1)


def focal(logits: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """−α (1 − p_t)^γ log p_t, p_t = softmax(logits)[y], averaged over the batch (Lin et al. 2017).

    With softmax there is only the true class's term, so the binary α_t (α for positives, 1 − α for
    negatives) has nothing to split: α weights every example alike, a constant factor on the loss.
    γ = 0 and α = 1 give ``cross_entropy`` exactly. 1 − p_t is floored at the dtype's smallest normal
    number, so a p_t that rounds to 1 has a finite gradient for 0 < γ < 1.
    """
    nll = _nll(logits, y)
    miss = (-torch.expm1(-nll)).clamp_min(torch.finfo(nll.dtype).tiny)  # 1 − p_t
    return (alpha * miss.pow(gamma) * nll).mean(-1)


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−[t log σ(z) + (1 − t) log(1 − σ(z))], t one-hot: a sigmoid per class, averaged over batch and classes."""
    return F.binary_cross_entropy_with_logits(logits, _one_hot(logits, y), reduction="none").mean((-2, -1))


def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the logits and one-hot targets, averaged over batch and classes."""
    return F.mse_loss(logits, _one_hot(logits, y), reduction="none").mean((-2, -1))


def sigmoid_mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(σ(z) − t)², t one-hot: MSE on sigmoid outputs, averaged over batch and classes.

    Its gradient 2 (σ(z) − t) σ'(z) carries σ'(z), which vanishes where σ saturates; bce's is σ(z) − t.
    """
    return F.mse_loss(torch.sigmoid(logits), _one_hot(logits, y), reduction="none").mean((-2, -1))


def l1(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|z − t| between the logits and one-hot targets, averaged over batch and classes."""
    return F.l1_loss(logits, _one_hot(logits, y), reduction="none").mean((-2, -1))


def smooth_l1(logits: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """d²/(2β) where |d| < β, else |d| − β/2 (Huber / β), d = z − t, t one-hot; averaged over batch and classes."""
    return F.smooth_l1_loss(logits, _one_hot(logits, y), reduction="none", beta=beta).mean((-2, -1))


for _fn in (cross_entropy, mse, bce, sigmoid_mse, focal, l1, smooth_l1):
    LOSSES.register(_fn.__name__, _fn)


def build_loss(cfg: Mapping[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``cfg`` (the ``loss`` group) names, with its keys (alpha, gamma, beta) bound."""
    return partial(LOSSES.get(cfg.get("name")), **{k: v for k, v in cfg.items() if k != "name"})
