"""Every loss against its formula written here from the lecture notes, on one model and on K stacked members."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from layerscope.config.validate import READS, check_group
from layerscope.errors import ConfigError
from layerscope.nets.losses import LOSSES, build_loss, cross_entropy, focal

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted((CONFIGS / "loss").glob("*.yaml"))
K, B, C = 3, 16, 5


def _batch(*leading: int, scale: float = 2.0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = scale * torch.randn(*leading, B, C, generator=gen, dtype=dtype)
    return logits.requires_grad_(), torch.randint(0, C, (*leading, B), generator=gen)


def _reference(name: str, z: torch.Tensor, y: torch.Tensor, alpha=1.0, gamma=2.0, beta=1.0) -> torch.Tensor:
    """The formulas as the notes write them, for one model's (B, C) logits."""
    t = F.one_hot(y, C).double()
    p_t = z.softmax(-1)[torch.arange(B), y]
    d = z - t
    return {
        "cross_entropy": lambda: -p_t.log().mean(),
        "focal": lambda: (-alpha * (1 - p_t) ** gamma * p_t.log()).mean(),
        "bce": lambda: -(t * z.sigmoid().log() + (1 - t) * (1 - z.sigmoid()).log()).mean(),
        "mse": lambda: d.pow(2).mean(),
        "sigmoid_mse": lambda: (z.sigmoid() - t).pow(2).mean(),
        "l1": lambda: d.abs().mean(),
        "smooth_l1": lambda: torch.where(d.abs() < beta, 0.5 * d**2 / beta, d.abs() - 0.5 * beta).mean(),
    }[name]()


def _cfg(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path))


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_every_loss_config_equals_its_formula(path):
    cfg = _cfg(path)
    logits, labels = _batch()
    value = build_loss(cfg)(logits, labels)
    keys = {k: v for k, v in cfg.items() if k != "name"}
    assert value.shape == ()
    assert value.item() == pytest.approx(_reference(cfg["name"], logits, labels, **keys).item(), rel=1e-12)


@pytest.mark.parametrize("cfg", [{"name": "focal", "alpha": 0.25, "gamma": 0.5},
                                 {"name": "focal", "alpha": 0.7, "gamma": 3},
                                 {"name": "smooth_l1", "beta": 0.3}, {"name": "smooth_l1", "beta": 4.0}],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_the_keys_reach_the_formula(cfg):
    logits, labels = _batch()
    expected = _reference(cfg["name"], logits, labels, **{k: v for k, v in cfg.items() if k != "name"})
    assert build_loss(cfg)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stacked_members_equal_a_loop_over_members(name, dtype):
    logits, labels = _batch(K, dtype=dtype)
    loss = LOSSES.get(name)
    stacked = loss(logits, labels)
    assert stacked.shape == (K,)
    looped = torch.stack([loss(logits[k], labels[k]) for k in range(K)])
    assert looped.shape == (K,)
    torch.testing.assert_close(stacked, looped, rtol=4 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("leading", [(), (K,)], ids=["one model", "stacked"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_with_gamma_0_and_alpha_1_is_cross_entropy_exactly(leading, dtype):
    logits, labels = _batch(*leading, scale=8.0, dtype=dtype)  # some p_t round to 1, some are tiny
    a, b = focal(logits, labels, alpha=1.0, gamma=0.0), cross_entropy(logits, labels)
    assert torch.equal(a, b)
    (grad_a,) = torch.autograd.grad(a.sum(), logits)
    (grad_b,) = torch.autograd.grad(b.sum(), logits)
    assert torch.equal(grad_a, grad_b)


def test_focal_alpha_weights_every_example_alike():
    logits, labels = _batch()
    base = focal(logits, labels, alpha=1.0, gamma=2.0)
    assert focal(logits, labels, alpha=0.25, gamma=2.0).item() == pytest.approx(0.25 * base.item(), rel=1e-14)


def test_focal_gradient_stays_finite_where_p_t_rounds_to_1():
    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 1.0, 2.0]], requires_grad=True)  # row 0: p_t = 1 in float32
    labels = torch.tensor([0, 2])
    for gamma in (0.0, 0.5, 1.0, 2.0):
        (grad,) = torch.autograd.grad(focal(logits, labels, 1.0, gamma), logits)
        assert torch.isfinite(grad).all(), gamma
        assert grad[0].abs().max() == 0  # an example the model gets right with certainty teaches nothing


def test_smooth_l1_default_beta_is_torchs():
    logits, labels = _batch()
    expected = F.smooth_l1_loss(logits, F.one_hot(labels, C).double())  # torch's default beta = 1.0
    assert build_loss({"name": "smooth_l1"})(logits, labels).item() == pytest.approx(expected.item(), rel=1e-14)


def test_bce_is_torchs_binary_cross_entropy_on_one_hot_targets():
    logits, labels = _batch()
    expected = F.binary_cross_entropy(logits.sigmoid(), F.one_hot(labels, C).double())
    assert build_loss({"name": "bce"})(logits, labels).item() == pytest.approx(expected.item(), rel=1e-12)


def test_the_keys_each_loss_reads_are_validates():
    for name in LOSSES.names():
        keys = list(inspect.signature(LOSSES.get(name)).parameters)[2:]
        assert set(keys) == set(READS["loss"][name]), name


@pytest.mark.parametrize("cfg, expected", [
    ({"name": "focal", "alpha": 1.5}, "loss.alpha=1.5 must be a finite number in [0, 1]"),
    ({"name": "focal", "gamma": -1}, "loss.gamma=-1 must be a finite number >= 0"),
    ({"name": "smooth_l1", "beta": 0}, "loss.beta=0 must be a finite number > 0"),
    ({"name": "bce", "alpha": 0.5}, "loss.alpha is not a key of loss=bce"),
    ({"name": "l1", "beta": 1.0}, "loss.beta is not a key of loss=l1"),
    ({"name": "smooth_l1", "gamma": 2.0}, "loss.gamma is not a key of loss=smooth_l1"),
], ids=lambda c: str(c))
def test_a_bad_loss_key_is_one_line(cfg, expected):
    with pytest.raises(ConfigError) as info:
        check_group("loss", cfg)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
