"""Mean-field prediction of per-layer statistics of a wide MLP at initialization.

For weights W ~ N(0, σ_w²/fan_in) and biases N(0, σ_b²), the pre-activation variance of
layer l follows
    q_1 = σ_w² · m_in + σ_b²                      (m_in: mean second moment of the input)
    q_l = σ_w² · E_z[φ(√q_{l-1} z)²] + σ_b²,      z ~ N(0, 1)
and the backward signal (dL/d activation) shrinks or grows from layer l to l-1 by
    χ_l = σ_w² · E_z[φ'(√q_l z)²]   (per unit, in mean square).
Expectations are Gauss-Legendre sums on a grid that resolves both √q and φ's own unit scale
(``gaussian.normal_grid``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from layerscope.nets.activations import activation_fn
from layerscope.nets.gaussian import normal_grid
from layerscope.nets.init import INITIALIZERS, gain_setting, resolve_gain, weight_variance
from layerscope.nets.mlp import hidden_fans
from layerscope.theory.meanfield import derivatives


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


_MOMENT_PANELS = 250_000  # panels stay at most 1 wide (φ's own scale) up to √q = 12,500: at most 2e6 nodes


def _moments(phi, q: float) -> tuple[float, float, float]:
    """E[φ(h)], E[φ(h)²], E[φ'(h)²] for h ~ N(0, q) (q = 0: at h = 0), on ``gaussian.normal_grid``.

    The per-layer recursion meets very large q (tanh with N(0, 1) weights has √q ≈ 20, std 50 weights far
    more), where φ' of a saturating φ lives in |h| < 3: the panels must stay narrow there, hence the budget.
    """
    h, w = normal_grid(q, panels=_MOMENT_PANELS)
    y, dy = derivatives(phi, h, 1)
    return float(w @ y), float(w @ y**2), float(w @ dy**2)


def predict(activation: str, activation_params: Mapping[str, Any] | None, sigma_w2: Sequence[float],
            sigma_b2: Sequence[float], input_second_moment: float, norm: str = "none") -> Prediction:
    """Run the mean-field recursion through ``len(sigma_w2)`` layers.

    ``norm`` is where a batch or layer norm sits (at init its scale is 1 and its shift 0). ``before``: every
    pre-activation is normalized to N(0, 1), so q_l = 1 at every layer. ``after``: every activation is
    normalized to mean 0 and variance 1, so the next layer reads a second moment of 1. At large width batch
    and layer norm agree (a unit's spread over the batch and a sample's over the units are the same q). The
    backward gain through a normalization is not χ (it couples the samples or the units): χ is NaN there.
    """
    params = tuple(sorted((k, v) for k, v in (activation_params or {}).items() if k != "name"))
    return _predict(activation, params, tuple(sigma_w2), tuple(sigma_b2), input_second_moment, norm)


@functools.lru_cache(maxsize=256)
def _predict(activation: str, params: tuple, sigma_w2: tuple[float, ...], sigma_b2: tuple[float, ...],
             input_second_moment: float, norm: str) -> Prediction:
    """``predict``, once per process for each setting: a sweep's members that differ in their seed, optimizer or
    learning rate share it (read-only)."""
    phi = activation_fn(activation, dict(params))
    depth = len(sigma_w2)
    q, mean, std, chi = (np.zeros(depth) for _ in range(4))
    second = input_second_moment
    for layer in range(depth):
        q[layer] = 1.0 if norm == "before" else sigma_w2[layer] * second + sigma_b2[layer]
        m1, m2, d2 = _moments(phi, q[layer])
        mean[layer], std[layer] = m1, math.sqrt(max(m2 - m1**2, 0.0))
        chi[layer] = sigma_w2[layer] * d2 if norm == "none" else math.nan
        second = 1.0 if norm == "after" else m2
    scale = np.ones(depth)
    for layer in range(depth - 2, -1, -1):  # g_l = χ_{l+1}^{1/2} g_{l+1}
        scale[layer] = scale[layer + 1] * math.sqrt(chi[layer + 1])
    if norm != "none":
        scale[:] = math.nan
    for values in (q, mean, std, chi, scale):
        values.flags.writeable = False
    return Prediction(q, mean, std, chi, scale)


def init_variances(init_cfg: Mapping[str, Any], activation: str, activation_params: Mapping[str, Any] | None,
                   fan_ins: Sequence[int], fan_outs: Sequence[int]) -> tuple[list[float], list[float]] | None:
    """σ_w² (= fan_in · Var W, ``init.weight_variance``) and σ_b² (= bias_std²) per layer that ``init_cfg`` gives,
    or None where the theory does not apply: an unknown initializer, or a constant bias (``init.bias`` ≠ 0),
    which shifts every pre-activation's mean and is not the random N(0, σ_b²) bias the recursion assumes.

    Orthogonal weights are not i.i.d., but at large width their pre-activations are as Gaussian and their
    mean-square gains are the same as i.i.d. weights of the same variance, which is all the recursion reads;
    a layer wider than its input (fan_out > fan_in) embeds it isometrically, so σ_w² = gain² · fan_in/fan_out.
    """
    name = init_cfg.get("name")
    if name not in INITIALIZERS:
        return None
    if name == "default":  # U(±1/√fan_in) for W and b
        return [1.0 / 3] * len(fan_ins), [1.0 / (3 * fan_in) for fan_in in fan_ins]
    if float(init_cfg.get("bias", 0.0)) != 0.0 and not float(init_cfg.get("bias_std", 0.0)):
        return None
    gain = resolve_gain(gain_setting(init_cfg), activation, activation_params)
    sigma_w2 = [fan_in * weight_variance(init_cfg, fan_in, fan_out, gain) for fan_in, fan_out in zip(fan_ins, fan_outs)]
    return sigma_w2, [float(init_cfg.get("bias_std", 0.0)) ** 2] * len(fan_ins)


def relative_error(measured: Sequence[float], predicted: Sequence[float]) -> list[float]:
    """|measured - predicted| / |predicted| per layer (NaN where the prediction is 0)."""
    m, p = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.abs(m - p) / np.abs(p)).tolist()


def predict_run(cfg: Mapping[str, Any], input_dim: int, input_second_moment: float) -> Prediction | None:
    """The prediction for a run's config, or None where the theory does not apply (dropout)."""
    model = cfg["model"]
    if model.get("dropout", 0.0) > 0:
        return None
    depth, width = model["depth"], model["width"]
    activation = cfg["activation"]
    variances = init_variances(cfg["init"], activation["name"], activation, hidden_fans(input_dim, width, depth),
                               [width] * depth)
    if variances is None:
        return None
    placement = cfg["bn"]["placement"]
    norm = "none" if placement == "none" else placement.removeprefix("ln_")
    return predict(activation["name"], activation, *variances, input_second_moment, norm)


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
