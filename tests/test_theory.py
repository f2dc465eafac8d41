"""Mean-field theory against closed forms and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from layerscope.theory.meanfield import (
    chi_1,
    chi_c,
    correlation_map,
    critical_sigma_w2,
    fixed_point_c,
    fixed_point_q,
    length_map,
    phase_diagram,
    xi_c,
    xi_q,
)
from layerscope.theory.phase import phase_figure
from layerscope.theory.prediction import init_variances, predict, relative_error


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


# Order to chaos (Poole et al. 2016, Schoenholz et al. 2017), against plain numpy Gauss-Hermite sums
# written here, not against the quadrature under test.

_Z, _W = np.polynomial.hermite_e.hermegauss(200)
_W = _W / _W.sum()  # E_z[f(z)] ≈ Σ _W f(_Z); exact to rounding for tanh with q ≲ 1.5


def _np_length_map(sigma_w2, sigma_b2, q):
    return sigma_w2 * np.dot(_W, np.tanh(math.sqrt(q) * _Z) ** 2) + sigma_b2


def _np_q_star(sigma_w2, sigma_b2):
    q = 1.0
    for _ in range(500):
        q = _np_length_map(sigma_w2, sigma_b2, q)
    return q


def _np_chi_1(sigma_w2, sigma_b2):
    return sigma_w2 * np.dot(_W, np.cosh(math.sqrt(_np_q_star(sigma_w2, sigma_b2)) * _Z) ** -4)


def _np_critical(sigma_b2):
    lo, hi = 1.0, 3.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _np_chi_1(mid, sigma_b2) < 1 else (lo, mid)
    return (lo + hi) / 2


_Z2, _W2 = np.polynomial.hermite_e.hermegauss(160)
_W2 = np.outer(_W2, _W2) / _W2.sum() ** 2  # weights of (z1, z2) on the product grid


def _np_correlation_map(sigma_w2, sigma_b2, q, c):
    u1 = math.sqrt(q) * _Z2[:, None]
    u2 = math.sqrt(q) * (c * _Z2[:, None] + math.sqrt(1 - c * c) * _Z2[None, :])
    return (sigma_w2 * np.sum(_W2 * np.tanh(u1) * np.tanh(u2)) + sigma_b2) / q


def test_q_star_tanh_matches_poole_and_numpy():
    q = fixed_point_q("tanh", None, 1.5, 0.05)
    assert q == pytest.approx(0.4180, abs=1e-3)  # Poole et al. 2016
    assert q == pytest.approx(_np_q_star(1.5, 0.05), abs=1e-10)
    assert length_map("tanh", None, 1.5, 0.05, q) == pytest.approx(q, rel=1e-12)


def test_q_star_limits():
    assert fixed_point_q("relu", None, 1.0, 0.1) == pytest.approx(0.1 / (1 - 1.0 / 2), rel=1e-10)  # σ_b²/(1 − σ_w²/2)
    assert fixed_point_q("relu", None, 1.5, 0.0) == 0.0  # q ← 0.75 q: the signal dies
    assert fixed_point_q("relu", None, 2.5, 0.0) == math.inf  # q ← 1.25 q
    assert fixed_point_q("relu", None, 2.0, 0.1) == math.inf  # q ← q + σ_b²
    assert fixed_point_q("tanh", None, 0.8, 0.0) == 0.0


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("sigma_b2", [0.0, 0.1])
def test_chi_1_relu_is_half_sigma_w2(sigma_w2, sigma_b2):
    assert chi_1("relu", None, sigma_w2, sigma_b2) == pytest.approx(sigma_w2 / 2, rel=1e-12)  # P(h > 0) = 1/2


@pytest.mark.parametrize("sigma_w2, sigma_b2", [(1.5, 0.05), (2.0, 0.2), (0.7, 0.01)])
def test_chi_1_tanh_matches_numpy(sigma_w2, sigma_b2):
    assert chi_1("tanh", None, sigma_w2, sigma_b2) == pytest.approx(_np_chi_1(sigma_w2, sigma_b2), rel=1e-10)


def test_critical_line_tanh():
    critical = critical_sigma_w2("tanh", None, 0.05)
    assert critical == pytest.approx(1.760955, abs=1e-4)  # Poole et al. 2016
    assert critical == pytest.approx(_np_critical(0.05), abs=1e-8)
    assert chi_1("tanh", None, critical, 0.05) == pytest.approx(1.0, abs=1e-10)
    assert critical_sigma_w2("tanh", None, 0.0) == pytest.approx(1.0, abs=1e-6)  # χ₁ = σ_w² φ'(0)² at q* = 0


def test_critical_line_of_rectifiers_is_vertical():
    assert critical_sigma_w2("relu", None, 0.2) == pytest.approx(2.0, rel=1e-10)
    slope = 0.2
    assert critical_sigma_w2("leaky_relu", {"negative_slope": slope}, 0.1) == pytest.approx(2 / (1 + slope**2), rel=1e-10)


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "gelu", "sigmoid"])
def test_correlation_map_at_one_is_one(activation):
    assert correlation_map(activation, None, 1.2, 0.1, 1.0) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("c", [-0.6, 0.0, 0.3, 0.9, 0.999])
def test_correlation_map_matches_arccos_kernel_and_numpy(c):
    sigma_w2, sigma_b2 = 1.5, 0.1  # ReLU: q* = 0.4
    q = sigma_b2 / (1 - sigma_w2 / 2)
    kernel = q * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)  # E[relu(u1) relu(u2)]
    assert correlation_map("relu", None, sigma_w2, sigma_b2, c) == pytest.approx((sigma_w2 * kernel + sigma_b2) / q,
                                                                                  abs=1e-12)
    q = _np_q_star(2.5, 0.05)
    assert correlation_map("tanh", None, 2.5, 0.05, c) == pytest.approx(_np_correlation_map(2.5, 0.05, q, c), abs=1e-11)


def test_c_star_in_the_ordered_phase_is_one():
    assert fixed_point_c("tanh", None, 1.5, 0.05) == 1.0
    assert chi_c("tanh", None, 1.5, 0.05) == pytest.approx(chi_1("tanh", None, 1.5, 0.05), rel=1e-12)


def test_c_star_in_the_chaotic_phase_matches_numpy():
    q = _np_q_star(2.5, 0.05)
    c = 0.5
    for _ in range(400):  # converges as χ_c^n, χ_c ≈ 0.92
        c = _np_correlation_map(2.5, 0.05, q, c)
    c_star = fixed_point_c("tanh", None, 2.5, 0.05)
    assert c_star == pytest.approx(c, abs=1e-9) and 0.3 < c_star < 0.6
    eps = 1e-5
    slope = (_np_correlation_map(2.5, 0.05, q, c + eps) - _np_correlation_map(2.5, 0.05, q, c - eps)) / (2 * eps)
    assert chi_c("tanh", None, 2.5, 0.05) == pytest.approx(slope, rel=1e-6)
    assert slope < 1 < chi_1("tanh", None, 2.5, 0.05)  # c* is stable, c = 1 is not


def test_at_the_critical_point_c_star_and_chi_c_are_one():
    critical = critical_sigma_w2("tanh", None, 0.05)
    assert fixed_point_c("tanh", None, critical, 0.05) == pytest.approx(1.0, abs=1e-6)
    assert chi_c("tanh", None, critical, 0.05) == pytest.approx(1.0, abs=1e-6)


def test_xi_c_diverges_at_the_critical_line():
    critical = critical_sigma_w2("tanh", None, 0.05)
    below = [xi_c("tanh", None, critical * (1 - d), 0.05) for d in (0.1, 0.01, 0.001)]
    above = [xi_c("tanh", None, critical * (1 + d), 0.05) for d in (0.1, 0.01, 0.001)]
    assert below[0] < below[1] < below[2] and above[0] < above[1] < above[2]
    assert min(below[2], above[2]) > 300
    assert below[0] == pytest.approx(-1 / math.log(chi_1("tanh", None, critical * 0.9, 0.05)), rel=1e-12)


@pytest.mark.parametrize("sigma_w2, sigma_b2", [(1.5, 0.05), (3.0, 0.1)])
def test_xi_q_is_set_by_the_slope_of_the_length_map(sigma_w2, sigma_b2):
    q, eps = _np_q_star(sigma_w2, sigma_b2), 1e-5
    slope = (_np_length_map(sigma_w2, sigma_b2, q + eps) - _np_length_map(sigma_w2, sigma_b2, q - eps)) / (2 * eps)
    assert math.exp(-1 / xi_q("tanh", None, sigma_w2, sigma_b2)) == pytest.approx(slope, rel=1e-7)


def test_phase_diagram_agrees_with_the_pointwise_functions():
    d = phase_diagram("tanh", None, [0.8, 2.0, 3.0], [0.0, 0.2])
    assert d["chi_1"].shape == d["q_star"].shape == (2, 3)
    assert d["chi_1"][1, 2] == pytest.approx(chi_1("tanh", None, 3.0, 0.2), rel=1e-12)
    assert d["critical_sigma_w2"][1] == pytest.approx(critical_sigma_w2("tanh", None, 0.2), rel=1e-10)
    ordered = d["sigma_w2"][None, :] < d["critical_sigma_w2"][:, None]
    assert np.all((d["chi_1"] < 1) == ordered)


def test_phase_figure_writes_a_150_dpi_png(tmp_path):
    path = phase_figure("tanh", None, (1.0, 0.05), tmp_path / "phase" / "tanh.png")
    assert path == tmp_path / "phase" / "tanh.png"
    with Image.open(path) as image:
        assert image.size == (960, 660)  # 6.4 x 4.4 in at 150 dpi
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 100  # a colored plane, not a blank page


def test_correlations_out_of_range_are_rejected():
    with pytest.raises(ValueError, match="correlation"):
        correlation_map("tanh", None, 1.5, 0.05, 1.5)
    with pytest.raises(ValueError, match="c0"):
        fixed_point_c("tanh", None, 1.5, 0.05, c0=-0.5)


def test_random_biases_are_the_theorys_sigma_b2_and_a_constant_bias_is_refused():
    fans = [500, 500]
    cfg = {"name": "xavier_normal", "gain": 1.0, "mode": "fan_in", "bias_std": 0.3}
    sigma_w2, sigma_b2 = init_variances(cfg, "tanh", None, fans, fans)
    assert sigma_w2 == pytest.approx([1.0, 1.0]) and sigma_b2 == pytest.approx([0.09, 0.09])
    assert init_variances({**cfg, "bias_std": 0.0, "bias": 0.1}, "tanh", None, fans, fans) is None  # shifts the mean
    assert init_variances({**cfg, "bias_std": 0.0}, "tanh", None, fans, fans)[1] == [0.0, 0.0]


def test_initialized_biases_have_the_configured_std():
    from layerscope.nets.init import initialize
    from layerscope.nets.mlp import build_model

    torch.manual_seed(0)
    model = build_model({"depth": 2, "width": 2000}, {"name": "tanh"}, {"placement": "none"}, 10, 3)
    initialize(model, {"name": "xavier_normal", "gain": 1.0, "mode": "fan_in", "bias_std": 0.3}, "tanh")
    biases = torch.cat([b.linear.bias for b in model.blocks])
    assert biases.std().item() == pytest.approx(0.3, rel=0.05) and abs(biases.mean().item()) < 0.02


# --- swish, selu, softplus; lecun, glorot, orthogonal -------------------------------------------

NEW_ACTIVATIONS = [("swish", {"beta": 2.0}), ("selu", None), ("softplus", None), ("softplus", {"beta": 3.0})]
NEW_IDS = ["swish_beta2", "selu", "softplus", "softplus_beta3"]


def _agrees(predicted: float, samples: torch.Tensor) -> bool:
    """predicted lies within 5 standard errors of the mean of the samples."""
    return abs(predicted - samples.mean().item()) <= 5 * samples.std().item() / math.sqrt(samples.numel())


@pytest.mark.parametrize("name, params", NEW_ACTIVATIONS, ids=NEW_IDS)
@pytest.mark.parametrize("q", [0.5, 4.0])
def test_new_activations_moments_match_monte_carlo(name, params, q):
    from layerscope.nets.activations import activation_fn

    torch.manual_seed(0)
    h = (math.sqrt(q) * torch.randn(2_000_000, dtype=torch.float64)).requires_grad_()
    y = activation_fn(name, params)(h)
    (dy,) = torch.autograd.grad(y.sum(), h)
    y = y.detach()
    p = predict(name, params, [q], [0.0], 1.0)
    assert _agrees(p.activation_mean[0], y)
    assert _agrees(p.activation_std[0] ** 2 + p.activation_mean[0] ** 2, y**2)  # E φ(h)²
    assert _agrees(p.chi[0], q * dy**2)  # σ_w² E φ'(h)², σ_w² = q for an input of second moment 1


def test_swish_with_beta_1_predicts_what_silu_does():
    layers = ([1.5] * 3, [0.1] * 3, 1.0)
    assert predict("swish", {"beta": 1.0}, *layers).to_json() == predict("silu", None, *layers).to_json()


def test_selu_fixed_point_is_mean_0_variance_1_at_sigma_w2_1():
    """SELU's λ and α are chosen so that h ~ N(0, 1) gives selu(h) mean 0 and variance 1 (Klambauer et al. 2017)."""
    assert fixed_point_q("selu", None, 1.0, 0.0) == pytest.approx(1.0, abs=1e-9)
    p = predict("selu", None, [1.0], [0.0], 1.0)
    assert p.activation_mean[0] == pytest.approx(0.0, abs=1e-5) and p.activation_std[0] == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "silu", "swish",
                                  "softplus", "softsign", "gelu"])
def test_the_length_map_increases_in_q(name):
    """``fixed_point_q`` brackets q* on this; it holds for every registered activation."""
    values = [length_map(name, None, 1.0, 0.0, q) for q in np.geomspace(1e-3, 1e3, 25)]
    assert np.all(np.diff(values) > 0)


NEW_INITS = [{"name": "lecun_normal"}, {"name": "lecun_uniform"}, {"name": "glorot_uniform", "gain": 1.0},
             {"name": "glorot_uniform", "gain": "auto"}, {"name": "orthogonal", "gain": 1.0},
             {"name": "orthogonal", "gain": "auto"}]


@pytest.mark.parametrize("init_cfg", NEW_INITS, ids=lambda c: "_".join(str(v) for v in c.values()))
@pytest.mark.parametrize("name, params", [("tanh", None), *NEW_ACTIVATIONS[:3]], ids=["tanh", *NEW_IDS[:3]])
def test_initialized_weights_have_the_theorys_variance(init_cfg, name, params):
    """Mean of W² per layer = σ_w²/fan_in, to 5 standard errors of a mean of n squared draws: √(2/n) for a
    normal law, √(0.8/n) for a uniform one (150k and 250k draws: 1.8% and 1.4%); exact for orthogonal."""
    from layerscope.nets.init import initialize
    from layerscope.nets.mlp import build_model

    fans_in, fans_out = [300, 500], [500, 500]  # the first layer wider than its input, then square
    model = build_model({"depth": 2, "width": 500}, {"name": name, **(params or {})}, {"placement": "none"}, 300, 10)
    torch.manual_seed(0)
    initialize(model, init_cfg, name, params)
    sigma_w2, _ = init_variances(init_cfg, name, params, fans_in, fans_out)
    for block, fan_in, s2 in zip(model.blocks, fans_in, sigma_w2):
        w = block.linear.weight.detach().double()
        tolerance = 1e-5 if init_cfg["name"] == "orthogonal" else 5 * math.sqrt(2 / w.numel())
        assert w.pow(2).mean().item() == pytest.approx(s2 / fan_in, rel=tolerance)


def test_orthogonal_sigma_w2_is_gain_squared_times_fan_in_over_max_fan():
    w2, _ = init_variances({"name": "orthogonal", "gain": 2.0}, "tanh", None, [64, 500, 3072], [500, 500, 500])
    assert w2 == pytest.approx([4.0 * 64 / 500, 4.0, 4.0])  # a wider layer embeds its input: E h² shrinks by 64/500
    assert init_variances({"name": "lecun_normal"}, "relu", None, [64, 500], [500, 500])[0] == pytest.approx([1.0, 1.0])
    w2, _ = init_variances({"name": "glorot_uniform", "gain": 1.0}, "tanh", None, [64, 500], [500, 500])
    assert w2 == pytest.approx([64 * 2 / 564, 1.0])


def test_selu_with_lecun_normal_stays_at_its_fixed_point_through_10_layers():
    """Width 500, 2000 inputs x ~ N(0, 1): pre-activation second moment and activation std stay at the prediction
    (q* = 1, std 1) in every layer, within 5% (finite width and batch)."""
    from layerscope.nets.init import initialize
    from layerscope.nets.mlp import build_model

    depth, width = 10, 500
    torch.manual_seed(0)
    model = build_model({"depth": depth, "width": width}, {"name": "selu"}, {"placement": "none"}, width, 10)
    initialize(model, {"name": "lecun_normal"}, "selu")
    x = torch.randn(2000, width)
    p = predict("selu", None, *init_variances({"name": "lecun_normal"}, "selu", None, [width] * depth, [width] * depth),
                float(x.square().mean()))
    np.testing.assert_allclose(p.q, fixed_point_q("selu", None, 1.0, 0.0), rtol=0.01)
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            h = block.linear(x)
            x = block.act(h)
            assert h.square().mean().item() == pytest.approx(p.q[layer], rel=0.05), layer
            assert x.std().item() == pytest.approx(p.activation_std[layer], rel=0.05), layer


@pytest.mark.parametrize("placement", ["before", "ln_before", "after", "ln_after"])
def test_a_normalized_net_matches_its_prediction(placement):
    """Norm before: every pre-activation is N(0, 1), so tanh's std is that of tanh(z) at every layer; norm
    after: each layer reads a unit second moment. Measured on fresh draws at width 500, within 3%."""
    from hydra import compose, initialize_config_dir

    from layerscope.data.datasets import load_data
    from layerscope.paths import config_dir
    from layerscope.theory.prediction import predict_run
    from layerscope.train.probed_model import initialized_model

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"bn={placement}", "data=gaussian", "init=normal",
                                          "trainer.batch_size=500"])
    data = load_data(cfg.data, 0)
    prediction = predict_run(cfg, data.input_dim, float(data.x_train.square().mean()))
    model, stds = initialized_model(cfg, data), []
    for block in model.blocks:
        block.act.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
    with torch.no_grad():
        model(data.x_train[:500])
    np.testing.assert_allclose(stds, prediction.activation_std, rtol=0.03)
    assert np.isnan(prediction.chi).all() and np.isnan(prediction.backward_scale).all()
    if placement.endswith("before"):
        np.testing.assert_allclose(prediction.q, 1.0)


@pytest.mark.parametrize("q", [1e6, 1e8])
def test_the_backward_gain_stays_exact_at_very_large_q(q):
    """tanh's φ' lives in |h| < 3 however wide h is: E[φ'(h)²] → (4/3) / √(2π q), resolved up to √q = 10⁴."""
    p = predict("tanh", None, [q], [0.0], 1.0)
    assert p.chi[0] == pytest.approx(q * (4 / 3) / math.sqrt(2 * math.pi * q), rel=1e-5)
