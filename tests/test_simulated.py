"""The simulated experiments (21–24): their simulations against theory, and their checks' statements."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from layerscope.lecture import local_minimum, loss_shapes, ravine_rates, zigzag
from layerscope.lecture.claims import CHECKS, CONTRADICTS, PASS
from layerscope.lecture.ravine import START, optimizer_path, optimizer_paths, ravine
from layerscope.lecture.ravine_rates import SGD_LIMIT, Descent, hyper, momentum_limit


def outcomes(verdict) -> list[str]:
    return [p.outcome for p in verdict.parts]


def test_stacked_paths_are_the_single_runs():
    """Each row of one stacked run follows the same path as that optimizer run alone."""
    cfgs = [{**hyper(name), "lr": lr} for name, lr in
            (("sgd", 0.03), ("adam", 0.1), ("momentum", 0.01), ("rmsprop", 0.01), ("sgd", 0.06), ("adagrad", 0.3))]
    stacked = optimizer_paths(ravine, START, cfgs, 40)
    for cfg, rows in zip(cfgs, stacked):
        assert np.array_equal(rows, optimizer_path(ravine, START, cfg, 40), equal_nan=True), cfg


@pytest.mark.parametrize("name, limit", [("sgd", SGD_LIMIT), ("momentum", momentum_limit(hyper("momentum")["mu"]))])
def test_stability_limits_on_the_ravine(name, limit):
    """SGD settles just below 2/λ_max and diverges just above; heavy ball likewise at 2(1 + μ)/λ_max."""
    cfgs = [{**hyper(name), "lr": factor * limit} for factor in (0.97, 1.03)]
    below, above = (Descent(name, c["lr"], p) for c, p in zip(cfgs, optimizer_paths(ravine, START, cfgs, 2000)))
    assert math.isfinite(below.steps_to_min) and not below.diverged
    assert above.diverged


def test_swing_counts_only_what_crosses_the_floor():
    """A monotone descent of the wall swings 0; y = 1, −½, ¼, … travels ½ + … beyond its net descent."""
    steps = np.arange(12)
    monotone = Descent("sgd", 0.01, np.stack([np.zeros(12), 0.5**steps], 1))
    assert monotone.travel == 0 and monotone.crossings == 0
    y = (-0.5) ** steps
    alternating = Descent("sgd", 0.01, np.stack([np.zeros(12), y], 1))
    off = np.maximum(np.abs(y[1:]), np.abs(y[:-1])) > ravine_rates.settle_level()
    moves = np.diff(y)[off]
    assert alternating.travel == pytest.approx(np.abs(moves).sum() - abs(moves.sum()))
    assert alternating.crossings == off.sum() > 0


def test_rates_on_the_ravine(tmp_path):
    verdict = CHECKS.get("rates_on_the_ravine")({}, tmp_path)
    assert verdict.passed and (tmp_path / "ravine_rates.png").exists()
    assert outcomes(verdict) == [CONTRADICTS, PASS, PASS, CONTRADICTS, PASS, PASS, PASS, CONTRADICTS, PASS, PASS]
    assert "√μ" in verdict.lecture_differs and "AdaGrad" in verdict.lecture_differs
    assert all(p.cite for p in verdict.parts)


def test_rmsprop_step_is_bounded_by_its_first():
    """RMSProp's largest step per coordinate is its first, α/√(1 − ρ) (r₁ = (1 − ρ)g²), at any rate."""
    rates = ravine_rates.simulate()
    rho = rates.rho
    for d in rates.grid["rmsprop"] + [rates.larger["rmsprop"]]:
        first = np.abs(d.points[1] - d.points[0]).max() / d.lr
        assert d.largest_step == pytest.approx(first) == pytest.approx(1 / math.sqrt(1 - rho), rel=1e-4)


def test_momentum_leaves_the_local_minimum(tmp_path):
    verdict = CHECKS.get("momentum_leaves_local_minimum")({}, tmp_path)
    assert verdict.passed and outcomes(verdict) == [PASS, PASS, PASS]
    assert (tmp_path / "local_minimum.png").exists()
    deeper, barrier, shallow = local_minimum.critical_points()
    assert deeper < barrier < shallow and local_minimum.value(deeper) < local_minimum.value(shallow)
    x = torch.tensor([[deeper], [barrier], [shallow]], dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(local_minimum.f(x).sum(), x)
    assert slope.abs().max() < 1e-12  # they are f's critical points


def test_local_minimum_check_fails_from_the_deeper_well(tmp_path, monkeypatch):
    """Started on the deeper well's wall, neither optimizer meets the shallow minimum: neither statement holds."""
    monkeypatch.setattr(local_minimum, "START", -1.8)
    verdict = CHECKS.get("momentum_leaves_local_minimum")({}, tmp_path)
    assert outcomes(verdict)[:2] == [CONTRADICTS, CONTRADICTS]


def test_positive_inputs_give_gradients_of_one_sign():
    x = zigzag.inputs()
    assert (x["positive"] > 0).all() and np.allclose(x["centred"].mean(0), 0)
    walks = {name: zigzag.walks(v, name) for name, v in x.items()}
    reached = [w for w in walks["positive"] if math.isfinite(w.steps_to_target)]
    assert reached and all(w.one_sign == 1.0 for w in reached)
    assert all(w.one_sign < 1 for w in walks["centred"] if math.isfinite(w.steps_to_target))
    assert np.linalg.norm(zigzag.fastest(walks["centred"]).path[-1] - zigzag.TARGET) < 1e-9  # an exact teacher


def test_non_centred_inputs_zigzag(tmp_path):
    verdict = CHECKS.get("non_centred_inputs_zigzag")({}, tmp_path)
    assert verdict.passed and outcomes(verdict) == [PASS, PASS, PASS, CONTRADICTS, PASS]
    assert (tmp_path / "zigzag.png").exists() and "curvatures" in verdict.lecture_differs


def test_focal_gradient_ratio_matches_its_closed_form():
    """|∂FL/∂z| / |∂CE/∂z| = (1 − p)^γ + γ p (1 − p)^(γ−1) ln(1/p), the formula the verdict explains with."""
    p, gamma = loss_shapes.P_TRUE, 2.0
    closed = (1 - p) ** gamma + gamma * p * (1 - p) ** (gamma - 1) * np.log(1 / p)
    assert np.allclose(loss_shapes.focal_ratio(gamma), closed, rtol=1e-9)
    assert np.allclose(loss_shapes.focal_ratio(0.0), 1.0)


def test_outlier_fits_reach_their_minimizers():
    """Gradient descent's MSE fit is the least-squares line; the smooth L1 fit's gradient is near 0 (its first
    step's is about 1)."""
    fits = loss_shapes.outlier_fits()
    x, y = loss_shapes.outlier_data()
    assert np.allclose(fits["mse"], np.polyfit(x, y, 1), atol=1e-8)
    line = torch.tensor(fits["smooth_l1"], dtype=torch.float64, requires_grad=True)
    xs, ys = (torch.tensor(v, dtype=torch.float64).reshape(-1, 1) for v in (x, y))
    (grad,) = torch.autograd.grad(loss_shapes._residual_loss("smooth_l1", line[0] * xs + line[1] - ys), line)
    assert grad.abs().max() < 1e-3


def test_loss_gradients(tmp_path):
    verdict = CHECKS.get("loss_gradients")({}, tmp_path)
    assert verdict.passed and (tmp_path / "loss_gradients.png").exists()
    assert outcomes(verdict) == [PASS, PASS, PASS, CONTRADICTS, PASS, PASS, CONTRADICTS, PASS, PASS]
    assert "chord" in verdict.lecture_differs and "γp(1 − p)" in verdict.lecture_differs
