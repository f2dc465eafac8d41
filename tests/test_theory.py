"""Mean-field theory against closed forms and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from layerscope.theory import init_variances, predict, relative_error


@pytest.mark.parametrize("sigma_w2", [1.0, 2.0, 3.0])
def test_relu_variance_follows_the_closed_form(sigma_w2):
    p = predict("relu", None, [sigma_w2] * 6, [0.0] * 6, 1.5)
    expected = 1.5 * sigma_w2 * (sigma_w2 / 2) ** np.arange(6)  # q_{l+1} = σ_w²/2 · q_l
    np.testing.assert_allclose(p.q, expected, rtol=1e-6)
    np.testing.assert_allclose(p.chi, sigma_w2 / 2, rtol=1e-6)  # χ = σ_w² P(h > 0)


def test_relu_activation_moments_closed_form():
    p = predict("relu", None, [2.0], [0.0], 1.0)  # h ~ N(0, 2)
    assert p.activation_mean[0] == pytest.approx(1 / math.sqrt(math.pi), rel=1e-5)  # E relu(h) = σ/√(2π)
    assert p.activation_std[0] == pytest.approx(math.sqrt(1 - 1 / math.pi), rel=1e-5)


def test_bias_variance_adds_to_q():
    p = predict("relu", None, [2.0, 2.0], [0.5, 0.5], 1.0)
    assert p.q[0] == pytest.approx(2.5) and p.q[1] == pytest.approx(2.0 * 2.5 / 2 + 0.5)


def test_tanh_small_weights_are_linear():
    p = predict("tanh", None, [0.05] * 4, [0.0] * 4, 1e-3)
    np.testing.assert_allclose(p.q[1:] / p.q[:-1], 0.05, rtol=1e-3)


@pytest.mark.parametrize("q", [0.3, 1.0, 400.0])
def test_tanh_moments_match_monte_carlo(q):
    torch.manual_seed(0)
    h = math.sqrt(q) * torch.randn(4_000_000, dtype=torch.float64)
    p = predict("tanh", None, [q], [0.0], 1.0)
    assert p.activation_std[0] == pytest.approx(float(torch.tanh(h).std()), rel=2e-3)
    assert p.chi[0] == pytest.approx(q * float((1 - torch.tanh(h) ** 2).pow(2).mean()), rel=1e-2)


def test_backward_scale_multiplies_chi_from_the_top():
    p = predict("tanh", None, [1.0] * 5, [0.0] * 5, 1.0)
    assert p.backward_scale[-1] == 1.0
    assert p.backward_scale[0] == pytest.approx(math.sqrt(np.prod(p.chi[1:])))


def test_init_variances_for_each_initializer():
    fans_in, fans_out = [64, 500, 500], [500, 500, 500]
    assert init_variances({"name": "he_normal", "gain": "auto"}, "relu", None, fans_in, fans_out)[0] == \
        pytest.approx([2.0] * 3)
    assert init_variances({"name": "xavier_uniform", "gain": 1.0}, "tanh", None, fans_in, fans_out)[0] == \
        pytest.approx([1.0] * 3)
    w2, _ = init_variances({"name": "xavier_normal", "gain": 1.0, "mode": "fan_avg"}, "tanh", None, fans_in, fans_out)
    assert w2 == pytest.approx([64 * 2 / 564, 1.0, 1.0])
    assert init_variances({"name": "normal", "std": 0.01}, "tanh", None, fans_in, fans_out)[0] == \
        pytest.approx([0.0064, 0.05, 0.05])
    w2, b2 = init_variances({"name": "default"}, "tanh", None, fans_in, fans_out)
    assert w2 == pytest.approx([1 / 3] * 3) and b2 == pytest.approx([1 / 192, 1 / 1500, 1 / 1500])


def test_relative_error():
    assert relative_error([1.1, 0.0], [1.0, 0.0])[0] == pytest.approx(0.1)
    assert math.isnan(relative_error([1.1, 0.0], [1.0, 0.0])[1])
