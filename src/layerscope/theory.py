"""Mean-field prediction of per-layer statistics of a wide MLP at initialization.

For weights W ~ N(0, σ_w²/fan_in) and biases N(0, σ_b²), the pre-activation variance of
layer l follows
    q_1 = σ_w² · m_in + σ_b²                      (m_in: mean second moment of the input)
    q_l = σ_w² · E_z[φ(√q_{l-1} z)²] + σ_b²,      z ~ N(0, 1)
and the backward signal (dL/d activation) shrinks or grows from layer l to l-1 by
    χ_l = σ_w² · E_z[φ'(√q_l z)²]   (per unit, in mean square).
Expectations are computed by Gauss-Hermite quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from layerscope.activations import activation_fn
from layerscope.init import _DEFAULT_GAIN, resolve_gain


@dataclass(frozen=True)
class Prediction:
    """Per-layer predictions, index 0 = layer 1."""

    q: np.ndarray  # pre-activation variance
    activation_mean: np.ndarray
    activation_std: np.ndarray
    chi: np.ndarray  # backward gain χ_l
    backward_scale: np.ndarray  # predicted backward-signal std relative to the last layer's

    def to_json(self) -> dict[str, list[float]]:
        """Plain lists, for JSON files."""
        return {k: [float(v) for v in getattr(self, k)] for k in self.__dataclass_fields__}


def _moments(phi, q: float) -> tuple[float, float, float]:
    """E[φ(h)], E[φ(h)²], E[φ'(h)²] for h ~ N(0, q), by the midpoint rule on a fine grid.

    Gauss-Hermite nodes in z = h/√q are too sparse once √q is large (tanh with N(0, 1) weights
    has √q ≈ 20, so φ'(h) lives in |z| < 0.1): the grid resolves both scales, √q and 1.
    """
    if q <= 0:
        h = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        y = phi(h)
        (dy,) = torch.autograd.grad(y.sum(), h)
        return float(y.detach()), float(y.detach()) ** 2, float(dy) ** 2
    sd = math.sqrt(q)
    cells = min(int(20 * sd / min(sd / 50, 0.01)) // 2 * 2, 2_000_000)  # even: no midpoint at h = 0
    step = 20 * sd / cells
    h = (torch.arange(cells, dtype=torch.float64) + 0.5) * step - 10 * sd
    h.requires_grad_(True)
    y = phi(h)
    (dy,) = torch.autograd.grad(y.sum(), h)
    weight = torch.exp(-0.5 * (h.detach() / sd) ** 2) * step / (sd * math.sqrt(2 * math.pi))
    y = y.detach()
    return float(weight @ y), float(weight @ y**2), float(weight @ dy**2)


def predict(activation: str, activation_params: Mapping[str, Any] | None, sigma_w2: Sequence[float],
            sigma_b2: Sequence[float], input_second_moment: float) -> Prediction:
    """Run the mean-field recursion through ``len(sigma_w2)`` layers."""
    phi = activation_fn(activation, activation_params)
    depth = len(sigma_w2)
    q, mean, std, chi = (np.zeros(depth) for _ in range(4))
    second = input_second_moment
    for layer in range(depth):
        q[layer] = sigma_w2[layer] * second + sigma_b2[layer]
        m1, m2, d2 = _moments(phi, q[layer])
        mean[layer], std[layer] = m1, math.sqrt(max(m2 - m1**2, 0.0))
        chi[layer] = sigma_w2[layer] * d2
        second = m2
    scale = np.ones(depth)
    for layer in range(depth - 2, -1, -1):  # g_l = χ_{l+1}^{1/2} g_{l+1}
        scale[layer] = scale[layer + 1] * math.sqrt(chi[layer + 1])
    return Prediction(q, mean, std, chi, scale)


def init_variances(init_cfg: Mapping[str, Any], activation: str, activation_params: Mapping[str, Any] | None,
                   fan_ins: Sequence[int], fan_outs: Sequence[int]) -> tuple[list[float], list[float]] | None:
    """σ_w² (= fan_in · Var W) and σ_b² per layer that ``init_cfg`` gives, or None if not Gaussian-like."""
    name = init_cfg.get("name")
    sigma_w2, sigma_b2 = [], []
    for fan_in, fan_out in zip(fan_ins, fan_outs):
        if name == "zeros":
            var, bias_var = 0.0, 0.0
        elif name == "normal":
            var, bias_var = float(init_cfg.get("std", 1.0)) ** 2, 0.0
        elif name == "default":  # U(±1/√fan_in) for W and b
            var, bias_var = 1.0 / (3 * fan_in), 1.0 / (3 * fan_in)
        elif name in _DEFAULT_GAIN:
            gain = resolve_gain(init_cfg.get("gain", _DEFAULT_GAIN[name]), activation, activation_params)
            fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
            var, bias_var = gain**2 / fans[str(init_cfg.get("mode", "fan_in"))], 0.0
        else:
            return None
        sigma_w2.append(var * fan_in)
        sigma_b2.append(bias_var + float(init_cfg.get("bias", 0.0)) ** 2 if name != "default" else bias_var)
    return sigma_w2, sigma_b2


def relative_error(measured: Sequence[float], predicted: Sequence[float]) -> list[float]:
    """|measured - predicted| / |predicted| per layer (NaN where the prediction is 0)."""
    m, p = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.abs(m - p) / np.abs(p)).tolist()


def predict_run(cfg: Mapping[str, Any], input_dim: int, input_second_moment: float) -> Prediction | None:
    """The prediction for a run's config, or None where the theory does not apply (BN, dropout)."""
    model = cfg["model"]
    if cfg["bn"]["placement"] != "none" or model.get("dropout", 0.0) > 0:
        return None
    depth, width = model["depth"], model["width"]
    activation = cfg["activation"]
    variances = init_variances(cfg["init"], activation["name"], activation, [input_dim] + [width] * (depth - 1),
                               [width] * depth)
    if variances is None:
        return None
    return predict(activation["name"], activation, *variances, input_second_moment)


def compare(prediction: Prediction, stats: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Predicted activation mean/std and backward std beside their relative errors vs ``stats``."""
    backward = (prediction.backward_scale * float(stats["backward_std"][-1])).tolist()
    return {
        "activation_mean": prediction.activation_mean.tolist(),
        "activation_std": prediction.activation_std.tolist(),
        "backward_std": backward,
        "chi": prediction.chi.tolist(),
        "rel_error_activation_std": relative_error(stats["activation_std"], prediction.activation_std),
        "rel_error_backward_std": relative_error(stats["backward_std"], backward),
    }
