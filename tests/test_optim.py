"""The project's optimizer follows the lecture's update rules exactly (and torch.optim's, where they are the same
rule), the schedules follow their formulas, and bad hyper-parameters fail with a ConfigError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from layerscope.config.validate import check_group
from layerscope.errors import ConfigError
from layerscope.optim.rules import build_optimizer
from layerscope.optim.schedules import learning_rate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OPTIMIZER_NAMES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]

THETA0 = np.array([0.5, -1.0, 2.0, 0.0, -0.3])
GRADIENTS = [  # varied signs and scales, a zero entry, and a sign flip between steps
    np.array([0.1, -2.0, 0.5, 0.0, 3.0]),
    np.array([-0.3, -1.0, 0.25, 1e-3, 2.0]),
    np.array([0.7, 0.5, -0.5, -0.2, 1.0]),
]


def _cfg(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIGS / "optimizer" / f"{name}.yaml"))


def _lecture_trajectory(name: str, c: dict) -> list[np.ndarray]:
    """The lecture's formulas, from scratch, in float64: theta after each step."""
    lr = c["lr"]
    theta = THETA0.copy()
    v = np.zeros_like(theta)  # momentum velocity
    r = np.zeros_like(theta)  # accumulated / averaged squared gradient
    s = np.zeros_like(theta)  # adam first moment
    out = []
    for t, g in enumerate(GRADIENTS, start=1):
        if name == "sgd":
            theta = theta - lr * g
        elif name == "momentum":
            v = c["mu"] * v + g
            theta = theta - lr * v
        elif name == "nesterov":
            v = c["mu"] * v + g
            theta = theta - lr * (g + c["mu"] * v)
        elif name == "adagrad":
            r = r + g**2
            theta = theta - lr / (np.sqrt(r) + c["delta"]) * g
        elif name == "rmsprop":
            r = c["rho"] * r + (1 - c["rho"]) * g**2
            theta = theta - lr / (np.sqrt(r) + c["delta"]) * g
        elif name == "adam":
            s = c["mu"] * s + (1 - c["mu"]) * g
            r = c["rho"] * r + (1 - c["rho"]) * g**2
            corrected = c.get("bias_correction", True)
            s_hat = s / (1 - c["mu"] ** t) if corrected else s
            r_hat = r / (1 - c["rho"] ** t) if corrected else r
            theta = theta - lr * s_hat / (np.sqrt(r_hat) + c["delta"])
        else:
            raise AssertionError(name)
        out.append(theta.copy())
    return out


def _torch_trajectory(cfg: dict, weight_decay: float = 0.0) -> list[np.ndarray]:
    p = torch.nn.Parameter(torch.tensor(THETA0, dtype=torch.float64))
    opt = build_optimizer([p], cfg, weight_decay)
    out = []
    for g in GRADIENTS:
        opt.zero_grad()
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_optimizer_matches_the_lecture_formula(name):
    cfg = _cfg(name)
    assert cfg["name"] == name
    expected = _lecture_trajectory(name, cfg)
    actual = _torch_trajectory(cfg)
    for step, (a, e) in enumerate(zip(actual, expected), start=1):
        # compare the displacement from theta0, so that even a 1e-8 change in an update shows
        np.testing.assert_allclose(a - THETA0, e - THETA0, rtol=1e-10, atol=1e-14, err_msg=f"step {step}")


def _torch_optim(cfg: dict, p: torch.nn.Parameter) -> torch.optim.Optimizer:
    """torch.optim's version of the same rule (adagrad, rmsprop and adam put δ outside the root, as the lecture)."""
    name, lr, mu, rho, delta = cfg["name"], cfg["lr"], cfg.get("mu"), cfg.get("rho"), cfg.get("delta")
    return {
        "sgd": lambda: torch.optim.SGD([p], lr=lr),
        "momentum": lambda: torch.optim.SGD([p], lr=lr, momentum=mu),
        "nesterov": lambda: torch.optim.SGD([p], lr=lr, momentum=mu, nesterov=True),
        "adagrad": lambda: torch.optim.Adagrad([p], lr=lr, eps=delta),
        "rmsprop": lambda: torch.optim.RMSprop([p], lr=lr, alpha=rho, eps=delta),
        "adam": lambda: torch.optim.Adam([p], lr=lr, betas=(mu, rho), eps=delta),
    }[name]()


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_the_lecture_rule_is_torch_optims_rule(name):
    cfg = _cfg(name)
    p = torch.nn.Parameter(torch.tensor(THETA0, dtype=torch.float64))
    reference = _torch_optim(cfg, p)
    for g, ours in zip(GRADIENTS, _torch_trajectory(cfg)):
        p.grad = torch.tensor(g, dtype=torch.float64)
        reference.step()
        np.testing.assert_allclose(ours - THETA0, p.detach().numpy() - THETA0, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "rmsprop", "adam"])
def test_non_default_hyper_parameters_reach_the_optimizer(name):
    cfg = {"name": name, "lr": 0.2, "mu": 0.5, "rho": 0.8, "delta": 1e-3}
    expected = _lecture_trajectory(name, cfg)
    actual = _torch_trajectory(cfg)
    np.testing.assert_allclose(actual[-1] - THETA0, expected[-1] - THETA0, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_without_bias_correction_follows_the_raw_moments(weight_decay):
    """bias_correction=false: θ -= α s / (√r + δ); the first step is then about 0.1/√0.001 ≈ 3 times α·sign(g)."""
    cfg = {**_cfg("adam"), "bias_correction": False}
    actual = _torch_trajectory(cfg, weight_decay)
    expected_grads = []
    theta = THETA0.copy()
    for g, after in zip(GRADIENTS, actual):  # L2 weight decay adds λθ to the gradient, as torch's Adam does
        expected_grads.append(g + weight_decay * theta)
        theta = after
    s, r, theta = np.zeros(5), np.zeros(5), THETA0.copy()
    for g, after in zip(expected_grads, actual):
        s, r = cfg["mu"] * s + (1 - cfg["mu"]) * g, cfg["rho"] * r + (1 - cfg["rho"]) * g**2
        theta = theta - cfg["lr"] * s / (np.sqrt(r) + cfg["delta"])
        np.testing.assert_allclose(after - THETA0, theta - THETA0, rtol=1e-10, atol=1e-14)
    assert not np.allclose(actual[0], _torch_trajectory(_cfg("adam"), weight_decay)[0])


def test_omitted_hyper_parameters_take_the_documented_defaults():
    cfg = {"name": "adam", "lr": 0.01}
    expected = _lecture_trajectory("adam", {"lr": 0.01, "mu": 0.9, "rho": 0.999, "delta": 1e-5})
    np.testing.assert_allclose(_torch_trajectory(cfg)[-1] - THETA0, expected[-1] - THETA0, rtol=1e-10, atol=1e-14)


def test_weight_decay_adds_the_l2_gradient():
    cfg = {"name": "sgd", "lr": 0.05}
    wd = 0.1
    theta = THETA0.copy()
    for g in GRADIENTS:
        theta = theta - cfg["lr"] * (g + wd * theta)
    np.testing.assert_allclose(_torch_trajectory(cfg, weight_decay=wd)[-1], theta, rtol=1e-12, atol=1e-14)


# --- schedulers ---------------------------------------------------------------------------------

LR0 = 0.1


def _lrs(scheduler_cfg, epochs: int) -> list[float]:
    """The lr in effect during epochs 0..epochs-1."""
    return [learning_rate({"name": "sgd", "lr": LR0}, scheduler_cfg, epoch) for epoch in range(epochs)]


@pytest.mark.parametrize("name", ["constant", "step", "exponential", "inverse_time"])
def test_the_closed_form_is_torchs_scheduler(name):
    """torch.optim.lr_scheduler stepped once per epoch gives the same rates as the closed form."""
    cfg = _scheduler_yaml(name)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR0)
    scheduler = {
        "constant": lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0),
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, cfg.get("step_size"), cfg.get("gamma")),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(opt, cfg.get("gamma")),
        "inverse_time": lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 / (1.0 + cfg.get("decay") * e)),
    }[name]()
    expected = []
    for _ in range(25):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert _lrs(cfg, 25) == pytest.approx(expected, rel=1e-12)


def _scheduler_yaml(name: str):
    return OmegaConf.load(CONFIGS / "scheduler" / f"{name}.yaml")


def test_constant_keeps_lr():
    assert _lrs(_scheduler_yaml("constant"), 30) == pytest.approx([LR0] * 30, rel=1e-12)


def test_step_halves_every_step_size_epochs():
    cfg = _scheduler_yaml("step")
    assert (cfg.step_size, cfg.gamma) == (10, 0.5)
    expected = [LR0 * 0.5 ** (epoch // 10) for epoch in range(35)]
    assert _lrs(cfg, 35) == pytest.approx(expected, rel=1e-12)


def test_step_with_another_step_size():
    expected = [LR0 * 0.5 ** (epoch // 3) for epoch in range(10)]
    assert _lrs({"name": "step", "step_size": 3, "gamma": 0.5}, 10) == pytest.approx(expected, rel=1e-12)


def test_exponential_multiplies_by_gamma_each_epoch():
    cfg = _scheduler_yaml("exponential")
    expected = [LR0 * cfg.gamma**epoch for epoch in range(20)]
    assert _lrs(cfg, 20) == pytest.approx(expected, rel=1e-12)


def test_inverse_time_gives_lr0_over_1_plus_decay_epoch():
    cfg = _scheduler_yaml("inverse_time")
    expected = [LR0 / (1.0 + cfg.decay * epoch) for epoch in range(6)]
    assert _lrs(cfg, 6) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "step", "step_size": 0, "gamma": 0.5},
        {"name": "step", "step_size": 2.5, "gamma": 0.5},
        {"name": "step", "step_size": 10, "gamma": 0.0},
        {"name": "exponential", "gamma": -0.5},
        {"name": "exponential", "gamma": "fast"},
        {"name": "inverse_time", "decay": 0.0},
        {"name": "no_such_schedule"},
    ],
    ids=lambda c: ",".join(f"{k}={v!r}" for k, v in c.items()),
)
def test_bad_scheduler_values_raise_config_error(cfg):
    with pytest.raises(ConfigError):
        check_group("scheduler", cfg)


# --- bad optimizer values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, weight_decay, key",
    [
        ({"lr": 0.0}, 0.0, "lr"),
        ({"lr": -0.1}, 0.0, "lr"),
        ({"lr": None}, 0.0, "lr"),
        ({"lr": "fast"}, 0.0, "lr"),
        ({"lr": True}, 0.0, "lr"),
        ({"mu": 1.0}, 0.0, "mu"),
        ({"mu": -0.1}, 0.0, "mu"),
        ({"mu": 1.5}, 0.0, "mu"),
        ({"rho": 1.0}, 0.0, "rho"),
        ({"rho": -0.01}, 0.0, "rho"),
        ({"delta": 0.0}, 0.0, "delta"),
        ({"delta": -1e-8}, 0.0, "delta"),
        ({}, -0.1, "weight_decay"),
    ],
)
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_bad_optimizer_values_raise_config_error_naming_the_key(name, override, weight_decay, key):
    cfg = {**_cfg(name), **override}
    with pytest.raises(ConfigError, match=key):
        check_group("optimizer", cfg)
        check_group("trainer", {"weight_decay": weight_decay})


def test_mu_zero_and_rho_zero_are_allowed():
    p = torch.nn.Parameter(torch.zeros(1))
    build_optimizer([p], {"name": "adam", "lr": 0.1, "mu": 0.0, "rho": 0.0})


@pytest.mark.parametrize("cfg", [{"name": "step", "gamma": 0.5}, {"name": "exponential"}, {"name": "inverse_time"}],
                         ids=["step_without_step_size", "exponential_without_gamma", "inverse_time_without_decay"])
def test_missing_scheduler_key_raises_config_error(cfg):
    with pytest.raises(ConfigError, match="needs scheduler"):
        check_group("scheduler", cfg)
