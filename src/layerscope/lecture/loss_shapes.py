"""Experiment 24: what the product's own losses (``nets.losses``) do with an error, through autograd.

Each loss takes logits (B, classes) and labels and averages; the functions here undo the average (× the number
of elements), so every gradient is one element's. A single sigmoid output with target 1 is a (B, 1) batch with
label 0 (the one-hot target of one class is 1). A regression residual r = prediction − target enters the
regression losses as the logit r + 1 against that same target 1, so the loss sees d = r.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from layerscope.nets.losses import LOSSES, focal
from layerscope.nets.mlp import MLP
from layerscope.paths import preset

SEED = 0
CLASSES = 10
POINTS = 200  # random logit vectors at which cross-entropy's Hessian is computed
LOGIT_STD = 3.0  # their spread: confident and unsure predictions alike
ERRORS = np.linspace(0.001, 0.999, 199)  # a sigmoid output's error 1 − σ(z), target 1
P_TRUE = np.linspace(0.01, 0.99, 99)  # the softmax probability p_t of the true class
RESIDUALS = np.linspace(-100.0, 100.0, 2001)
# The outlier fit: a line y = 2x + 1 through 20 points and one point 10 above it, fitted by full-batch gradient
# descent from 0 with each regression loss.
LINE = (2.0, 1.0)
OUTLIER = 10.0
FIT_LR, FIT_STEPS = 0.2, 150  # MSE's slope settles by 1 − α·2⟨x²⟩ ≈ 0.85 a step: 10⁻¹⁰ in 150
ROBUST = ("l1", "smooth_l1", "mse")


def _sigmoid_output_gradient(name: str, errors: np.ndarray) -> np.ndarray:
    """|∂L/∂z| of one sigmoid output z with target 1 at each error 1 − σ(z)."""
    z = torch.tensor(np.log((1 - errors) / errors), dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    loss = LOSSES.get(name)(z, torch.zeros(len(errors), dtype=torch.long)) * len(errors)
    (grad,) = torch.autograd.grad(loss, z)
    return grad.abs().flatten().numpy()


def output_gradients() -> dict[str, np.ndarray]:
    """bce's and sigmoid_mse's |∂L/∂z| at each of ERRORS."""
    return {name: _sigmoid_output_gradient(name, ERRORS) for name in ("bce", "sigmoid_mse")}


def _logits_for(p_true: np.ndarray) -> torch.Tensor:
    """(n, CLASSES) logits whose softmax gives class 0 the probability ``p_true`` and the others an equal share."""
    logits = torch.zeros(len(p_true), CLASSES, dtype=torch.float64)
    logits[:, 0] = torch.tensor(np.log(p_true * (CLASSES - 1) / (1 - p_true)))
    return logits


def _logit_gradient(loss, logits: torch.Tensor) -> torch.Tensor:
    """∂loss/∂logits of each example (a row), label 0."""
    logits = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(logits, torch.zeros(len(logits), dtype=torch.long)) * len(logits), logits)
    return grad


def focal_ratio(gamma: float | None = None) -> np.ndarray:
    """|∂focal/∂z| / |∂CE/∂z| at each of P_TRUE (γ: configs/loss/focal's unless given)."""
    gamma = float(preset("loss", "focal")["gamma"]) if gamma is None else gamma
    logits = _logits_for(P_TRUE)
    ce = _logit_gradient(LOSSES.get("cross_entropy"), logits).norm(dim=1)
    return (_logit_gradient(lambda z, y: focal(z, y, gamma=gamma), logits).norm(dim=1) / ce).numpy()


def focal_gamma_zero_gap() -> float:
    """The largest |∂focal/∂z − ∂CE/∂z| with γ = 0, over P_TRUE."""
    logits = _logits_for(P_TRUE)
    ce = _logit_gradient(LOSSES.get("cross_entropy"), logits)
    return float((_logit_gradient(lambda z, y: focal(z, y, gamma=0.0), logits) - ce).abs().max())


def cross_entropy_hessians() -> np.ndarray:
    """The eigenvalues (POINTS, CLASSES) of cross-entropy's Hessian wrt the logits at random logit vectors."""
    generator = torch.Generator().manual_seed(SEED)
    logits = (LOGIT_STD * torch.randn(POINTS, CLASSES, generator=generator, dtype=torch.float64)).requires_grad_(True)
    labels = torch.randint(CLASSES, (POINTS,), generator=generator)
    (grad,) = torch.autograd.grad(LOSSES.get("cross_entropy")(logits, labels) * POINTS, logits, create_graph=True)
    rows = [torch.autograd.grad(grad[:, c].sum(), logits, retain_graph=True)[0] for c in range(CLASSES)]
    return torch.linalg.eigvalsh(torch.stack(rows, 1)).detach().numpy()


@dataclass(frozen=True)
class Chord:
    """A trained MLP W, the same MLP with two hidden units swapped W′ (the same function), and the loss along the
    segment between them."""

    t: np.ndarray  # the segment's points (1 − t) W + t W′
    losses: np.ndarray  # the loss at each

    @property
    def ends(self) -> float:
        """The loss at W (= at W′)."""
        return float(self.losses[0])

    @property
    def middle(self) -> float:
        """The loss at the midpoint."""
        return float(self.losses[len(self.losses) // 2])


def _blobs(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """60 points of 3 Gaussian classes in the plane."""
    labels = torch.arange(3).repeat_interleave(20)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centres[labels] + torch.randn(60, 2, generator=generator), labels


def mlp_chord(width: int = 8, steps: int = 150, lr: float = 1.0) -> Chord:
    """A 1×``width`` tanh MLP (the product's) trained by gradient descent with cross-entropy on 60 points, its
    hidden units 0 and 1 swapped, and the loss at 11 points of the segment between the two."""
    x, y = _blobs(torch.Generator().manual_seed(SEED))
    with torch.random.fork_rng(devices=[]):  # the layers draw their init from the global generator: leave it as it was
        torch.manual_seed(SEED)
        model = MLP(2, 3, 1, width, "tanh", None, "none", 0.0)
    loss = LOSSES.get("cross_entropy")
    for _ in range(steps):
        grads = torch.autograd.grad(loss(model(x), y), list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p -= lr * g
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    swap = torch.tensor([1, 0, *range(2, width)])
    swapped = {**weights, "blocks.0.linear.weight": weights["blocks.0.linear.weight"][swap],
               "blocks.0.linear.bias": weights["blocks.0.linear.bias"][swap],
               "head.weight": weights["head.weight"][:, swap]}
    t = np.linspace(0, 1, 11)
    losses = []
    with torch.no_grad():
        for s in t:
            model.load_state_dict({k: (1 - s) * weights[k] + s * swapped[k] for k in weights})
            losses.append(float(loss(model(x), y)))
    return Chord(t, np.array(losses))


def residual_gradients() -> dict[str, np.ndarray]:
    """|∂L/∂prediction| of one element at each of RESIDUALS, for each of ROBUST."""
    r = torch.tensor(RESIDUALS, dtype=torch.float64).reshape(-1, 1)
    return {name: _residual_gradient(name, r) for name in ROBUST}


def _residual_loss(name: str, residuals: torch.Tensor) -> torch.Tensor:
    """Loss ``name`` (the product's, ``loss`` config's keys) of residuals (n, 1), averaged."""
    keys = {k: v for k, v in preset("loss", name).items() if k != "name"}
    return LOSSES.get(name)(residuals + 1, torch.zeros(len(residuals), dtype=torch.long), **keys)


def _residual_gradient(name: str, residuals: torch.Tensor) -> np.ndarray:
    r = residuals.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_residual_loss(name, r) * len(r), r)
    return grad.abs().flatten().numpy()


def outlier_data() -> tuple[np.ndarray, np.ndarray]:
    """(x, y): 20 points on the line and one OUTLIER above it at the right end."""
    x = np.linspace(-1, 1, 21)
    y = LINE[0] * x + LINE[1]
    y[-1] += OUTLIER
    return x, y


def outlier_fits() -> dict[str, tuple[float, float]]:
    """(slope, intercept) fitted to ``outlier_data`` by gradient descent with each of ROBUST (one row each)."""
    x, y = (torch.tensor(v, dtype=torch.float64).reshape(-1, 1) for v in outlier_data())
    lines = torch.zeros(len(ROBUST), 2, dtype=torch.float64)
    for _ in range(FIT_STEPS):
        rows = lines.clone().requires_grad_(True)
        total = sum(_residual_loss(name, row[0] * x + row[1] - y) for name, row in zip(ROBUST, rows))
        (grad,) = torch.autograd.grad(total, rows)
        lines -= FIT_LR * grad
    return {name: (float(a), float(b)) for name, (a, b) in zip(ROBUST, lines.tolist())}


def pull(fit: tuple[float, float]) -> float:
    """The largest distance of a fitted line from the true one over the data's x range [−1, 1]."""
    return abs(fit[0] - LINE[0]) + abs(fit[1] - LINE[1])
