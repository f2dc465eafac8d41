"""Every initializer draws from the distribution its docstring writes down, on every Linear."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from layerscope.config.validate import READS, check_group
from layerscope.errors import ConfigError
from layerscope.nets.init import INITIALIZERS, gain_setting, initialize, resolve_gain, weight_variance
from layerscope.nets.mlp import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

FAN_IN, FAN_OUT = 300, 500  # the probed layer: nn.Linear(300, 500), weight (500, 300), 150k samples
FAN_AVG = (FAN_IN + FAN_OUT) / 2
TANH_GAIN = 5.0 / 3.0
RELU_GAIN = math.sqrt(2.0)
LEAKY_SLOPE = 0.5  # large enough that its gain differs from ReLU's by ~10%
LEAKY_GAIN = math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2))


class _Probe(nn.Module):
    """A hidden Linear (the layer under test) followed by a small head."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(FAN_IN, FAN_OUT)
        self.head = nn.Linear(FAN_OUT, 10)


def _fresh_probe() -> _Probe:
    probe = _Probe()
    with torch.no_grad():  # sentinels, so a layer the initializer skips is caught
        for layer in (probe.hidden, probe.head):
            layer.weight.fill_(7.0)
            layer.bias.fill_(7.0)
    return probe


def _normal(std: float) -> tuple[str, float, float | None]:
    return ("normal", std, None)


def _uniform(bound: float) -> tuple[str, float, float | None]:
    return ("uniform", bound / math.sqrt(3.0), bound)


def _yaml(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIGS / "init" / f"{name}.yaml"))


# (id, init cfg, activation, activation params, (family, expected std, uniform bound or None))
CASES = [
    ("normal", _yaml("normal"), "tanh", None, _normal(0.01)),
    ("normal_1", _yaml("normal_1"), "tanh", None, _normal(1.0)),
    ("normal_std_0.2", {"name": "normal", "std": 0.2}, "relu", None, _normal(0.2)),
    ("xavier_normal_yaml", _yaml("xavier_normal"), "tanh", None, _normal(1.0 / math.sqrt(FAN_IN))),
    ("xavier_normal_fan_in_gain1", {"name": "xavier_normal", "gain": 1.0, "mode": "fan_in"}, "tanh", None,
     _normal(1.0 / math.sqrt(FAN_IN))),
    ("xavier_normal_fan_avg_gain1", {"name": "xavier_normal", "gain": 1.0, "mode": "fan_avg"}, "tanh", None,
     _normal(1.0 / math.sqrt(FAN_AVG))),
    ("xavier_normal_fan_out_gain1", {"name": "xavier_normal", "gain": 1.0, "mode": "fan_out"}, "tanh", None,
     _normal(1.0 / math.sqrt(FAN_OUT))),
    ("xavier_normal_fan_in_auto", {"name": "xavier_normal", "gain": "auto", "mode": "fan_in"}, "tanh", None,
     _normal(TANH_GAIN / math.sqrt(FAN_IN))),
    ("xavier_normal_fan_avg_auto", {"name": "xavier_normal", "gain": "auto", "mode": "fan_avg"}, "tanh", None,
     _normal(TANH_GAIN / math.sqrt(FAN_AVG))),
    ("xavier_normal_no_gain_key", {"name": "xavier_normal"}, "tanh", None, _normal(1.0 / math.sqrt(FAN_IN))),
    ("xavier_uniform_yaml", _yaml("xavier_uniform"), "tanh", None, _uniform(math.sqrt(3.0 / FAN_IN))),
    ("xavier_uniform_fan_in_gain1", {"name": "xavier_uniform", "gain": 1, "mode": "fan_in"}, "tanh", None,
     _uniform(math.sqrt(3.0 / FAN_IN))),
    ("xavier_uniform_fan_avg_gain1", {"name": "xavier_uniform", "gain": 1, "mode": "fan_avg"}, "tanh", None,
     _uniform(math.sqrt(3.0 / FAN_AVG))),
    ("xavier_uniform_fan_in_auto", {"name": "xavier_uniform", "gain": "auto", "mode": "fan_in"}, "tanh", None,
     _uniform(TANH_GAIN * math.sqrt(3.0 / FAN_IN))),
    ("xavier_uniform_fan_avg_auto", {"name": "xavier_uniform", "gain": "auto", "mode": "fan_avg"}, "tanh", None,
     _uniform(TANH_GAIN * math.sqrt(3.0 / FAN_AVG))),
    ("he_normal_yaml_relu", _yaml("he_normal"), "relu", None, _normal(math.sqrt(2.0 / FAN_IN))),
    ("he_normal_auto_leaky", {"name": "he_normal", "gain": "auto"}, "leaky_relu",
     {"name": "leaky_relu", "negative_slope": LEAKY_SLOPE}, _normal(LEAKY_GAIN / math.sqrt(FAN_IN))),
    ("he_normal_no_gain_key_relu", {"name": "he_normal"}, "relu", None, _normal(RELU_GAIN / math.sqrt(FAN_IN))),
    ("he_uniform_yaml_relu", _yaml("he_uniform"), "relu", None, _uniform(math.sqrt(6.0 / FAN_IN))),
    ("he_uniform_auto_leaky", {"name": "he_uniform", "gain": "auto"}, "leaky_relu",
     {"negative_slope": LEAKY_SLOPE}, _uniform(LEAKY_GAIN * math.sqrt(3.0 / FAN_IN))),
    ("lecun_normal_yaml", _yaml("lecun_normal"), "selu", None, _normal(math.sqrt(1.0 / FAN_IN))),
    ("lecun_normal_relu", {"name": "lecun_normal"}, "relu", None, _normal(math.sqrt(1.0 / FAN_IN))),  # no gain
    ("lecun_uniform_yaml", _yaml("lecun_uniform"), "selu", None, _uniform(math.sqrt(3.0 / FAN_IN))),
    ("glorot_uniform_yaml", _yaml("glorot_uniform"), "tanh", None,
     _uniform(math.sqrt(6.0) / math.sqrt(FAN_IN + FAN_OUT))),
    ("glorot_uniform_auto", {"name": "glorot_uniform", "gain": "auto"}, "tanh", None,
     _uniform(TANH_GAIN * math.sqrt(6.0) / math.sqrt(FAN_IN + FAN_OUT))),
    # entries of a random semi-orthogonal matrix are nearly N(0, 1/max(fan_in, fan_out))
    ("orthogonal_yaml", _yaml("orthogonal"), "tanh", None, _normal(1.0 / math.sqrt(FAN_OUT))),
    ("orthogonal_auto", {"name": "orthogonal", "gain": "auto"}, "selu", None, _normal(0.75 / math.sqrt(FAN_OUT))),
]
CASE_IDS = [c[0] for c in CASES]


def _initialized_hidden_weight(cfg, activation, params, seed=0) -> torch.Tensor:
    probe = _fresh_probe()
    torch.manual_seed(seed)
    initialize(probe, cfg, activation, params)
    return probe.hidden.weight.detach().double()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_weight_std_matches_the_formula(case):
    _, cfg, activation, params, (_, std, _) = case
    w = _initialized_hidden_weight(cfg, activation, params)
    assert w.numel() == FAN_IN * FAN_OUT
    assert w.std().item() == pytest.approx(std, rel=0.03)
    assert abs(w.mean().item()) < 0.02 * std


@pytest.mark.parametrize("case", [c for c in CASES if c[4][0] == "uniform"],
                         ids=[c[0] for c in CASES if c[4][0] == "uniform"])
def test_uniform_weights_fill_but_stay_within_the_bound(case):
    _, cfg, activation, params, (_, _, bound) = case
    w = _initialized_hidden_weight(cfg, activation, params)
    assert w.abs().max().item() <= bound * (1 + 1e-6)
    assert w.abs().max().item() >= 0.99 * bound  # 150k draws reach the edge of U(-b, b)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_weight_distribution_family(case):
    """Kurtosis tells normal (3) from uniform (1.8)."""
    _, cfg, activation, params, (family, _, _) = case
    w = _initialized_hidden_weight(cfg, activation, params)
    centred = w - w.mean()
    kurtosis = (centred.pow(4).mean() / centred.pow(2).mean().pow(2)).item()
    assert kurtosis == pytest.approx({"normal": 3.0, "uniform": 1.8}[family], abs=0.1)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_biases_are_zero(case):
    _, cfg, activation, params, _ = case
    probe = _fresh_probe()
    initialize(probe, cfg, activation, params)
    assert torch.count_nonzero(probe.hidden.bias) == 0
    assert torch.count_nonzero(probe.head.bias) == 0


def test_bias_key_sets_every_bias():
    probe = _fresh_probe()
    initialize(probe, {"name": "xavier_normal", "bias": 0.1}, "tanh")
    for layer in (probe.hidden, probe.head):
        assert torch.allclose(layer.bias, torch.full_like(layer.bias, 0.1))


def test_same_seed_gives_same_weights():
    cfg = {"name": "he_normal", "gain": "auto"}
    assert torch.equal(_initialized_hidden_weight(cfg, "relu", None, seed=3),
                       _initialized_hidden_weight(cfg, "relu", None, seed=3))
    assert not torch.equal(_initialized_hidden_weight(cfg, "relu", None, seed=3),
                           _initialized_hidden_weight(cfg, "relu", None, seed=4))


def test_zeros_sets_every_weight_and_bias_to_zero():
    probe = _fresh_probe()
    initialize(probe, _yaml("zeros"), "tanh")
    for p in probe.parameters():
        assert torch.count_nonzero(p) == 0


def test_default_is_torch_own_linear_init():
    probe = _fresh_probe()
    torch.manual_seed(5)
    initialize(probe, _yaml("default"), "relu")
    for layer in (probe.hidden, probe.head):
        bound = 1.0 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max().item() <= bound
        assert layer.bias.abs().max().item() <= bound
        assert torch.count_nonzero(layer.bias) == layer.out_features  # torch draws the bias too
    assert probe.hidden.weight.abs().max().item() >= 0.99 / math.sqrt(FAN_IN)

    reference = _fresh_probe()
    torch.manual_seed(5)
    reference.hidden.reset_parameters()
    reference.head.reset_parameters()
    for mine, theirs in zip(probe.parameters(), reference.parameters()):
        assert torch.equal(mine, theirs)


# --- orthogonal -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(500, 300), (300, 500), (400, 400)], ids=["tall", "wide", "square"])
def test_orthogonal_rows_or_columns_have_norm_gain(shape):
    gain = 1.7
    weight = torch.empty(shape, dtype=torch.float64)
    torch.manual_seed(0)
    INITIALIZERS.get("orthogonal").draw(weight, weight_variance({"name": "orthogonal"}, shape[1], shape[0], gain))
    gram = weight.T @ weight if shape[0] >= shape[1] else weight @ weight.T
    torch.testing.assert_close(gram, gain**2 * torch.eye(min(shape), dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(500,), (4, 5, 6)], ids=["1-D", "3-D"])
def test_orthogonal_refuses_a_weight_that_is_not_2d_in_one_line(shape):
    with pytest.raises(ConfigError) as info:
        INITIALIZERS.get("orthogonal").draw(torch.empty(shape), 0.01)
    message = str(info.value)
    assert "init=orthogonal needs a 2-D" in message and str(shape) in message and "\n" not in message


# --- what each initializer reads ----------------------------------------------------------------


def _variance(cfg: dict) -> float:
    return weight_variance(cfg, FAN_IN, FAN_OUT, resolve_gain(gain_setting(cfg), "tanh", None))


@pytest.mark.parametrize("name", [n for n in INITIALIZERS.names() if n != "default"])
def test_the_variance_depends_on_exactly_the_keys_validate_lets_it_read(name):
    base = {"name": name, "gain": 1.0, "std": 0.1, "mode": "fan_in"}
    for key, other in (("gain", 2.0), ("std", 0.3), ("mode", "fan_out")):
        changed = _variance({**base, key: other}) != _variance(base)
        assert changed == (key in READS["init"][name]), key


# --- a real MLP from build_model ---------------------------------------------------------------

INPUT_DIM, WIDTH, DEPTH, CLASSES = 20, 64, 3, 10


def _mlp(bn: str = "none") -> nn.Module:
    mlp = build_model({"depth": DEPTH, "width": WIDTH}, {"name": "tanh"}, {"placement": bn}, INPUT_DIM, CLASSES)
    with torch.no_grad():
        for m in mlp.modules():
            if isinstance(m, nn.Linear):
                m.weight.fill_(7.0)
                m.bias.fill_(7.0)
    return mlp


def _linears(mlp: nn.Module) -> list[nn.Linear]:
    return [m for m in mlp.modules() if isinstance(m, nn.Linear)]


def test_initialize_reaches_every_linear_of_the_mlp_and_the_head_gets_gain_1_with_auto():
    mlp = _mlp()
    linears = _linears(mlp)
    assert len(linears) == DEPTH + 1 and linears[-1] is mlp.head
    torch.manual_seed(0)
    initialize(mlp, {"name": "xavier_uniform", "gain": "auto", "mode": "fan_in"}, "tanh")
    for index, layer in enumerate(linears):
        gain = 1.0 if layer is mlp.head else TANH_GAIN
        bound = gain * math.sqrt(3.0 / layer.in_features)
        biggest = layer.weight.abs().max().item()
        assert 0.9 * bound <= biggest <= bound * (1 + 1e-6), f"layer {index}"
        assert torch.count_nonzero(layer.bias) == 0, f"layer {index}"


def test_with_a_numeric_gain_the_head_uses_that_gain_too():
    mlp = _mlp()
    torch.manual_seed(0)
    initialize(mlp, {"name": "xavier_uniform", "gain": 2.0, "mode": "fan_in"}, "tanh")
    bound = 2.0 * math.sqrt(3.0 / WIDTH)
    assert 0.9 * bound <= mlp.head.weight.abs().max().item() <= bound * (1 + 1e-6)


def test_he_normal_auto_on_mlp_gives_relu_gain_in_hidden_layers_and_1_in_head():
    mlp = build_model({"depth": DEPTH, "width": 256}, {"name": "relu"}, {"placement": "none"}, 256, 200)
    torch.manual_seed(0)
    initialize(mlp, {"name": "he_normal", "gain": "auto"}, "relu")
    for block in mlp.blocks:  # 65k samples each
        assert block.linear.weight.std().item() == pytest.approx(RELU_GAIN / 16.0, rel=0.03)
    assert mlp.head.weight.std().item() == pytest.approx(1.0 / 16.0, rel=0.03)  # 51k samples


def test_batch_norm_parameters_are_left_alone():
    mlp = _mlp("before")
    initialize(mlp, {"name": "zeros"}, "tanh")
    for block in mlp.blocks:
        assert torch.equal(block.bn_before.weight, torch.ones(WIDTH))
        assert torch.equal(block.bn_before.bias, torch.zeros(WIDTH))


# --- bad values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "normal", "std": -0.01},
        {"name": "xavier_normal", "mode": "fan_sideways"},
        {"name": "he_uniform", "mode": "FAN_IN"},
        {"name": "xavier_normal", "gain": 0},
        {"name": "xavier_normal", "gain": 0.0},
        {"name": "xavier_uniform", "gain": -1.0},
        {"name": "he_normal", "gain": "big"},
        {"name": "he_normal", "gain": "Auto"},
        {"name": "he_normal", "gain": True},
        {"name": "he_normal", "gain": None},
        {"name": "no_such_init"},
    ],
    ids=lambda c: ",".join(f"{k}={v!r}" for k, v in c.items()),
)
def test_bad_values_raise_config_error(cfg):
    with pytest.raises(ConfigError):
        check_group("init", cfg)


def test_unknown_mode_error_lists_the_modes():
    with pytest.raises(ConfigError) as info:
        check_group("init", {"name": "xavier_normal", "mode": "fan_sideways"})
    for mode in ("fan_in", "fan_out", "fan_avg"):
        assert mode in str(info.value)


def test_bad_gain_error_names_the_value_and_auto():
    with pytest.raises(ConfigError) as info:
        check_group("init", {"name": "xavier_normal", "gain": -2.5})
    assert "-2.5" in str(info.value) and "auto" in str(info.value)


@pytest.mark.parametrize("std", ["abc", True], ids=["string", "bool"])
def test_non_numeric_std_raises_config_error(std):
    with pytest.raises(ConfigError, match="init.std"):
        check_group("init", {"name": "normal", "std": std})


# --- one formula: the draw, the spec and the theory ---------------------------------------------

LAW_SPREAD = {"normal_": 2.0, "uniform_": 0.8}  # Var(W²) / (Var W)² of the law: 3 − 1, 9/5 − 1


@pytest.mark.parametrize("activation", sorted(p.stem for p in (CONFIGS / "activation").glob("*.yaml")))
@pytest.mark.parametrize("init", sorted(p.stem for p in (CONFIGS / "init").glob("*.yaml")))
def test_the_weights_the_spec_and_the_theory_give_one_variance(init, activation):
    """For every init preset × activation preset and each hidden layer of an MLP (fans 300 → 500, 500 → 500):
    the spec's Var W (``weight_variance``) equals the theory's σ_w²/fan_in, and the initialized weights' mean
    square is that variance within 5 standard errors of a mean of n squared draws (exact for orthogonal and zeros)."""
    from layerscope.paths import preset
    from layerscope.theory.prediction import init_variances

    cfg, params = preset("init", init), preset("activation", activation)
    model = build_model({"depth": 2, "width": 500}, params, {"placement": "none"}, 300, 10)
    torch.manual_seed(0)
    initialize(model, cfg, activation, params)
    fans_in, fans_out = [300, 500], [500, 500]
    sigma_w2, _ = init_variances(cfg, activation, params, fans_in, fans_out)
    spec = INITIALIZERS.get(cfg["name"])
    for block, fan_in, fan_out, s2 in zip(model.blocks, fans_in, fans_out, sigma_w2):
        w = block.linear.weight.detach().double()
        law = spec.draw.__name__ if spec is not None else "uniform_"  # default: torch's U(±1/√fan_in)
        if spec is not None:
            variance = weight_variance(cfg, fan_in, fan_out, resolve_gain(gain_setting(cfg), activation, params))
            assert variance == pytest.approx(s2 / fan_in, rel=1e-12, abs=0.0)
        tolerance = 5 * math.sqrt(LAW_SPREAD[law] / w.numel()) if law in LAW_SPREAD else 1e-6
        assert w.pow(2).mean().item() == pytest.approx(s2 / fan_in, rel=tolerance, abs=1e-12)
