"""The config groups under configs/ and the registries in the source name the same choices,
every choice builds and runs, and bad names or parameters fail with a ConfigError."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from layerscope.config.validate import check_group, validate
from layerscope.data import datasets as data
from layerscope.errors import ConfigError
from layerscope.nets import activations, init, losses
from layerscope.nets import mlp as model
from layerscope.nets.activations import ACTIVATIONS, activation_fn, activation_gain, build_activation
from layerscope.optim import rules as optim
from layerscope.optim import schedules
from layerscope.paths import config_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _group_files(group: str) -> list[Path]:
    files = sorted((CONFIGS / group).glob("*.yaml"))
    assert files, f"no yaml files in configs/{group}"
    return files


def _group_ids(group: str) -> list[str]:
    return [f.stem for f in _group_files(group)]


def _load(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


REGISTRY_OF_GROUP = {
    "activation": activations.ACTIVATIONS,
    "init": init.INITIALIZERS,
    "optimizer": optim.OPTIMIZERS,
    "scheduler": schedules.SCHEDULERS,
    "data": data.DATASETS,
    "loss": losses.LOSSES,
}


# --- config groups <-> registries ---------------------------------------------------------------


@pytest.mark.parametrize("group", sorted(REGISTRY_OF_GROUP))
def test_config_group_names_equal_registry_keys(group):
    names = {_load(f)["name"] for f in _group_files(group)}
    assert names == set(REGISTRY_OF_GROUP[group].names())


def test_bn_placements_equal_model_bn_placements():
    placements = [_load(f)["placement"] for f in _group_files("bn")]
    assert sorted(placements) == sorted(model.BN_PLACEMENTS)
    assert len(placements) == len(set(placements))


# --- every choice builds and runs ---------------------------------------------------------------


@pytest.mark.parametrize("path", _group_files("activation"), ids=_group_ids("activation"))
def test_every_activation_config_builds_and_runs(path):
    cfg = OmegaConf.load(path)
    module = build_activation(cfg.name, cfg)
    params = {k: v for k, v in _load(path).items() if k != "name"}
    for key, value in params.items():  # the yaml's parameters reached the module
        assert getattr(module, key) == value, key
    x = torch.linspace(-3.0, 3.0, 13).reshape(1, 13)
    y = module(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert torch.equal(y, x) == (cfg.name == "identity")  # only the identity leaves its input as it is


@pytest.mark.parametrize("path", _group_files("optimizer"), ids=_group_ids("optimizer"))
def test_every_optimizer_config_builds_with_its_hyper_parameters(path):
    cfg = OmegaConf.load(path)
    assert optim.rule(cfg) == cfg.name
    assert set(optim.hyper_parameters(cfg)) == {k for k in ("mu", "rho", "delta") if k in cfg}
    for key, value in optim.hyper_parameters(cfg).items():
        assert value == cfg[key]
    p = torch.nn.Parameter(torch.ones(3))
    opt = optim.build_optimizer([p], cfg)
    p.grad = torch.ones(3)
    opt.step()
    assert (p.detach() < 1.0).all()  # one step moved against the gradient


@pytest.mark.parametrize("path", _group_files("scheduler"), ids=_group_ids("scheduler"))
def test_every_scheduler_config_gives_a_rate_in_every_epoch(path):
    cfg = OmegaConf.load(path)
    rates = [schedules.learning_rate({"lr": 0.1}, cfg, epoch) for epoch in range(12)]
    assert rates[0] == pytest.approx(0.1)  # epoch 0 keeps the base lr
    assert all(0.0 < later <= earlier for earlier, later in zip(rates, rates[1:]))


@pytest.mark.parametrize("path", _group_files("loss"), ids=_group_ids("loss"))
def test_every_loss_config_works_on_logits_and_labels(path):
    """Builds with its keys and gives a scalar with a finite gradient (the formulas: ``test_losses.py``)."""
    cfg = _load(path)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    loss = losses.build_loss(cfg)
    assert loss.keywords == {k: v for k, v in cfg.items() if k != "name"}  # the yaml's keys reached the loss
    value = loss(logits, labels)
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# --- unknown names and parameters ---------------------------------------------------------------


def _unknown_activation():
    build_activation("no_such_choice")


def _unknown_init():
    initialize_target = torch.nn.Sequential(torch.nn.Linear(2, 2))
    init.initialize(initialize_target, {"name": "no_such_choice"}, "relu")


def _unknown_optimizer():
    optim.build_optimizer([torch.nn.Parameter(torch.ones(1))], {"name": "no_such_choice", "lr": 0.1})


def _unknown_scheduler():
    schedules.learning_rate({"lr": 0.1}, {"name": "no_such_choice"}, 0)


def _unknown_data():
    data.load_data({"name": "no_such_choice"}, seed=0)


def _unknown_loss():
    losses.LOSSES.get("no_such_choice")


UNKNOWN_NAME_CALLS = {
    "activation": _unknown_activation,
    "init": _unknown_init,
    "optimizer": _unknown_optimizer,
    "scheduler": _unknown_scheduler,
    "data": _unknown_data,
    "loss": _unknown_loss,
}


@pytest.mark.parametrize("group", sorted(UNKNOWN_NAME_CALLS))
def test_unknown_name_raises_config_error_listing_every_choice(group):
    with pytest.raises(ConfigError) as info:
        UNKNOWN_NAME_CALLS[group]()
    message = str(info.value)
    assert "no_such_choice" in message
    for name in REGISTRY_OF_GROUP[group].names():
        assert name in message, f"{name!r} missing from: {message}"


def test_unhashable_or_missing_name_raises_config_error():
    with pytest.raises(ConfigError):
        ACTIVATIONS.get(["relu"])
    with pytest.raises(ConfigError, match="data.name=None"):
        data.load_data({}, seed=0)


@pytest.mark.parametrize(
    "name, accepted",
    [("leaky_relu", ["negative_slope"]), ("elu", ["alpha"]), ("gelu", ["approximate"]), ("prelu", ["init"])],
)
def test_unknown_activation_parameter_names_the_accepted_parameters(name, accepted):
    with pytest.raises(ConfigError) as info:
        check_group("activation", {"name": name, "slope_typo": 0.1})
    message = str(info.value)
    assert "slope_typo" in message
    for parameter in accepted:
        assert parameter in message
    assert "inplace" not in message  # not a config parameter


def test_unknown_activation_parameter_of_parameterless_activation_says_none():
    with pytest.raises(ConfigError, match="activation.negative_slope is not a key of activation=relu; its keys: name; "
                                         "activation.negative_slope is a key of activation=.*leaky_relu"):
        check_group("activation", {"name": "relu", "negative_slope": 0.1})


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_unknown_parameter_of_sigmoid_tanh_says_none(name):
    with pytest.raises(ConfigError) as info:
        check_group("activation", {"name": name, "negative_slope": 0.1})
    message = str(info.value)
    assert "its keys: name; activation.negative_slope is a key of activation=" in message
    assert "args" not in message


# --- activation_gain ----------------------------------------------------------------------------

MOMENT_MATCHED = ["elu", "silu", "swish", "softplus", "softsign", "gelu"]  # torch has no gain for these


@pytest.mark.parametrize(
    "name, params, torch_name, torch_param",
    [
        ("sigmoid", None, "sigmoid", None),
        ("tanh", None, "tanh", None),
        ("relu", None, "relu", None),
        ("leaky_relu", None, "leaky_relu", None),  # both default to slope 0.01
        ("leaky_relu", {"negative_slope": 0.01}, "leaky_relu", 0.01),
        ("leaky_relu", {"negative_slope": 0.3}, "leaky_relu", 0.3),
        ("selu", None, "selu", None),
    ],
)
def test_activation_gain_equals_torch_calculate_gain(name, params, torch_name, torch_param):
    expected = torch.nn.init.calculate_gain(torch_name, torch_param)
    assert activation_gain(name, params) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("path", [CONFIGS / "activation" / f"{n}.yaml" for n in MOMENT_MATCHED],
                         ids=MOMENT_MATCHED)
def test_activation_gain_moment_matches_by_monte_carlo(path):
    cfg = OmegaConf.load(path)
    gain = activation_gain(cfg.name, cfg)
    assert math.isfinite(gain) and gain > 1.0
    gen = torch.Generator().manual_seed(1234)
    z = torch.randn(2_000_000, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        second_moment = activation_fn(cfg.name, cfg)(z).pow(2).mean().item()
    assert gain == pytest.approx(1.0 / math.sqrt(second_moment), rel=0.01)


def test_activation_gain_of_elu_follows_alpha():
    # a larger alpha makes the negative side larger, so E[phi^2] grows and the gain shrinks
    assert activation_gain("elu", {"alpha": 2.0}) < activation_gain("elu", {"alpha": 1.0})


def test_every_activation_without_a_torch_gain_is_moment_matched():
    assert {n for n in ACTIVATIONS.names() if ACTIVATIONS.get(n).torch_gain is None} == set(MOMENT_MATCHED)


# --- swish, selu, softplus ----------------------------------------------------------------------


def test_swish_with_beta_1_is_silu_exactly():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    assert torch.equal(build_activation("swish", {"beta": 1.0})(x), F.silu(x))
    assert activation_gain("swish", {"beta": 1.0}) == activation_gain("silu")


@pytest.mark.parametrize("beta", [0.5, 2.0, 10.0])
def test_swish_is_x_times_sigmoid_of_beta_x(beta):
    x = torch.linspace(-8.0, 8.0, 1001, dtype=torch.float64)
    torch.testing.assert_close(build_activation("swish", {"beta": beta})(x), x * torch.sigmoid(beta * x),
                               rtol=1e-14, atol=1e-15)


def test_selu_and_softplus_are_torchs():
    x = torch.linspace(-8.0, 30.0, 1001, dtype=torch.float64)
    assert torch.equal(build_activation("selu")(x), torch.selu(x))
    softplus = build_activation("softplus", {"beta": 2.0, "threshold": 10.0})
    assert torch.equal(softplus(x), F.softplus(x, beta=2.0, threshold=10.0))


@pytest.mark.parametrize("name, keys", [("swish", ["beta"]), ("selu", []), ("softplus", ["beta", "threshold"])])
def test_new_activations_take_their_constructor_keys(name, keys):
    assert activations.parameters(name) == keys


@pytest.fixture(scope="module")
def composed():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        yield lambda overrides: compose("train", overrides=overrides)


@pytest.mark.parametrize("overrides, expected", [
    (["activation=swish", "activation.beta=0"], "activation.beta=0 must be a finite number > 0"),
    (["activation=swish", "activation.beta=-1.5"], "activation.beta=-1.5 must be a finite number > 0"),
    (["activation=softplus", "activation.beta=0"], "activation.beta=0 must be a finite number > 0"),
    (["activation=softplus", "activation.threshold=inf"], "activation.threshold=inf must be a finite number"),
    (["activation=selu", "+activation.alpha=1.0"], "activation.alpha is not a key of activation=selu"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_activation_keys_are_refused_by_validate_in_one_line(composed, overrides, expected):
    with pytest.raises(ConfigError) as info:
        validate(composed(overrides))
    message = str(info.value)
    assert expected in message and "\n" not in message, message
