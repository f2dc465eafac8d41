"""softsign x/(1+|x|) and Glorot & Bengio 2010's "standard" init U[±1/√fan_in]: forward, derivative, the probes'
bounds, the mean-field integrals against Monte Carlo, the init's law, and one real run of both together."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerscope
from layerscope.nets.activations import ACTIVATIONS, activation_fn, activation_gain, build_activation
from layerscope.nets.init import initialize
from layerscope.nets.mlp import build_model
from layerscope.paths import preset
from layerscope.theory.meanfield import chi_1, critical_sigma_w2, fixed_point_q
from layerscope.theory.prediction import init_variances

# --- softsign -----------------------------------------------------------------------------------


def test_softsign_forward_values():
    x = torch.tensor([0.0, 1.0, -1.0, 3.0, -3.0, 99.0, -1e6], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.5, -0.5, 0.75, -0.75, 0.99, -1e6 / (1 + 1e6)], dtype=torch.float64)
    torch.testing.assert_close(build_activation("softsign")(x), expected, rtol=1e-15, atol=0.0)
    grid = torch.linspace(-50.0, 50.0, 2001, dtype=torch.float64)
    torch.testing.assert_close(activation_fn("softsign")(grid), grid / (1 + grid.abs()), rtol=1e-15, atol=1e-16)


def test_softsign_derivative_by_autograd_is_one_over_one_plus_abs_x_squared():
    x = torch.linspace(-20.0, 20.0, 4001, dtype=torch.float64).requires_grad_()
    (dy,) = torch.autograd.grad(activation_fn("softsign")(x).sum(), x)
    torch.testing.assert_close(dy, 1 / (1 + x.detach().abs()) ** 2, rtol=1e-13, atol=0.0)
    zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.grad(build_activation("softsign").double()(zero).sum(), zero)[0].item() == 1.0  # like tanh


def test_softsign_saturates_within_the_bounds_the_probes_read():
    spec = ACTIVATIONS.get("softsign")
    assert spec.bounds == (-1.0, 1.0) and not spec.rectifier
    y = build_activation("softsign")(torch.tensor([-1e12, -1e3, 1e3, 1e12], dtype=torch.float64))
    assert (y.abs() < 1).all() and (y.abs() > 0.999).all()
    # polynomially, not exponentially as tanh: within the default 1% margin of the range (0.02) only past |x| = 49
    margin = 0.01 * (spec.bounds[1] - spec.bounds[0])
    at = build_activation("softsign")(torch.tensor([48.0, 50.0], dtype=torch.float64))
    assert (1 - at[0]).item() > margin > (1 - at[1]).item()


def test_softsign_gain_is_moment_matched():
    """torch has no gain for softsign: g = 1/√E[φ(z)²], z ~ N(0, 1), by Monte Carlo to 1%."""
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert activation_gain("softsign") == pytest.approx(1 / math.sqrt(F.softsign(z).pow(2).mean().item()), rel=0.01)
    assert ACTIVATIONS.get("softsign").torch_gain is None


# --- its mean-field theory ----------------------------------------------------------------------


def _within_5_se(predicted: float, samples: torch.Tensor) -> bool:
    return abs(predicted - samples.mean().item()) <= 5 * samples.std().item() / math.sqrt(samples.numel())


@pytest.mark.parametrize("sigma_w2, sigma_b2", [(1.5, 0.05), (4.0, 0.05), (2.0, 0.3)])
def test_softsign_q_star_and_chi_1_match_monte_carlo(sigma_w2, sigma_b2):
    """q* is a fixed point of σ_w² E φ(√q* z)² + σ_b², χ₁ = σ_w² E φ'(√q* z)², both on 2M normal draws."""
    q = fixed_point_q("softsign", None, sigma_w2, sigma_b2)
    assert 0 < q < sigma_w2 + sigma_b2  # |φ| < 1 bounds it
    h = (math.sqrt(q) * torch.randn(2_000_000, generator=torch.Generator().manual_seed(7),
                                    dtype=torch.float64)).requires_grad_()
    y = F.softsign(h)
    (dy,) = torch.autograd.grad(y.sum(), h)
    assert _within_5_se(q, sigma_w2 * y.detach() ** 2 + sigma_b2)
    assert _within_5_se(chi_1("softsign", None, sigma_w2, sigma_b2), sigma_w2 * dy**2)


def test_softsign_is_critical_at_sigma_w2_1_without_bias_like_tanh():
    """φ'(0) = 1, so with σ_b² = 0: q* = 0 and χ₁ = σ_w² below σ_w² = 1; the critical line starts at σ_w² = 1."""
    assert fixed_point_q("softsign", None, 0.8, 0.0) == 0.0
    assert chi_1("softsign", None, 0.8, 0.0) == pytest.approx(0.8, rel=1e-9)
    assert critical_sigma_w2("softsign", None, 0.0) == pytest.approx(1.0, rel=1e-6)
    assert critical_sigma_w2("softsign", None, 0.05) > critical_sigma_w2("softsign", None, 0.0)


# --- glorot_standard ----------------------------------------------------------------------------

FAN_IN, FAN_OUT = 400, 500  # 200k draws


def _initialized(cfg: dict) -> nn.Module:
    model = build_model({"depth": 2, "width": FAN_OUT}, {"name": "softsign"}, {"placement": "none"}, FAN_IN, 10)
    with torch.no_grad():  # sentinels, so a layer the initializer skips is caught
        for p in model.parameters():
            p.fill_(7.0)
    torch.manual_seed(0)
    initialize(model, cfg, "softsign")
    return model


def test_glorot_standard_draws_uniform_within_one_over_sqrt_fan_in_with_zero_biases():
    linears = [m for m in _initialized(preset("init", "glorot_standard")).modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        w, bound = layer.weight.detach().double(), 1 / math.sqrt(layer.in_features)
        # Var W = 1/(3 fan_in) within 5 standard errors of a mean of n squared uniform draws (√(0.8/n) relative)
        assert w.pow(2).mean().item() == pytest.approx(1 / (3 * layer.in_features), rel=5 * math.sqrt(0.8 / w.numel()))
        assert w.abs().max().item() <= bound * (1 + 1e-6)
        assert w.abs().max().item() >= (1 - 20 / w.numel()) * bound  # n draws reach within ~b/n of the edge
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_glorot_standard_ignores_the_gain_and_takes_bias_std():
    plain, scaled = _initialized({"name": "glorot_standard"}), _initialized({"name": "glorot_standard", "gain": "auto"})
    assert torch.equal(plain.blocks[0].linear.weight, scaled.blocks[0].linear.weight)  # the paper's law has no gain
    biases = _initialized({"name": "glorot_standard", "bias_std": 0.3}).blocks[1].linear.bias.detach()
    assert biases.std().item() == pytest.approx(0.3, rel=0.2) and biases.abs().max().item() > 0


def test_glorot_standard_gives_the_theory_sigma_w2_one_third():
    sigma_w2, sigma_b2 = init_variances({"name": "glorot_standard", "bias_std": 0.2}, "softsign", None,
                                        [64, 500, 500], [500, 500, 500])
    assert sigma_w2 == pytest.approx([1 / 3] * 3, rel=1e-12) and sigma_b2 == pytest.approx([0.04] * 3)
    # the normalized init (glorot_uniform, gain 1) gives 1 on a square layer: σ_w² = fan_in · 2/(fan_in + fan_out)
    assert init_variances({"name": "glorot_uniform", "gain": 1.0}, "softsign", None, [500], [500])[0] == [1.0]


# --- one real run -------------------------------------------------------------------------------


def test_softsign_with_glorot_standard_trains_and_probes_saturation(tmp_path):
    run = layerscope.run(["activation=softsign", "init=glorot_standard", "model.width=16", "model.depth=3",
                          "trainer.max_steps=2", "probe.figures=false", "trainer.progress=false"],
                         output_dir=tmp_path / "run")
    assert run.status == "completed" and run.summary["steps"] == 2
    assert run.config["activation"]["name"] == "softsign" and run.config["init"]["name"] == "glorot_standard"
    rows = run.probes if isinstance(run.probes, list) else run.probes.to_dict("records")
    saturated = [r["value"] for r in rows if r["statistic"] == "saturated_fraction" and r["source"] == "measured"]
    assert saturated and all(0.0 <= v <= 1.0 for v in saturated)  # bounded: measured, not NaN
    theory = [r for r in rows if r["source"] == "theory"]
    assert theory  # the mean-field prediction applies to softsign with glorot_standard
