"""Every config key is checked before data or model work starts (``layerscope.config.validate``).

The table composes each case's config in-process, as the console script does, and runs every check
a run makes before it builds a model; ``test_bad_input.py`` runs the console script itself.
"""

from __future__ import annotations

import math

import pytest
from hydra import compose, initialize_config_dir

from layerscope.config.experiments import check_experiment
from layerscope.config.validate import BOUNDS, READS, RULES, check_against_data, check_data_size, validate
from layerscope.data.datasets import load_data
from layerscope.errors import ConfigError
from layerscope.paths import config_dir

SMALL = ["trainer.max_steps=1", "model.depth=2", "model.width=8"]
HUGE = "1" * 1000

CASES = [
    # whole numbers: type, lower bound, upper bound with its reason
    (["model.depth=0"], "model.depth=0 must be a whole number >= 1"),
    (["model.depth=-3"], "model.depth=-3 must be a whole number >= 1"),
    (["model.depth=abc"], "model.depth='abc' must be a whole number"),
    (["model.depth=2.5"], "model.depth=2.5 must be a whole number"),
    (["model.depth=true"], "model.depth=True must be a whole number"),
    ([f"model.depth={HUGE}"], "must be at most 1,000 (100 times the lecture's 10 layers)"),
    (["model.width=0"], "model.width=0 must be a whole number >= 1"),
    (["trainer.seed=-1"], "trainer.seed=-1 must be a whole number >= 0"),
    ([f"trainer.seed={2**64}"], "must be at most 18,446,744,073,709,551,615 (the largest seed torch accepts)"),
    (["trainer.seed=abc"], "trainer.seed='abc'"),
    (["trainer.epochs=-1"], "trainer.epochs=-1"),
    (["trainer.max_steps=-5"], "trainer.max_steps=-5 must be a whole number >= 0 or null"),
    (["trainer.max_steps=10000000000"], "must be at most 1,000,000,000 (weeks of training"),
    (["trainer.batch_size=0"], "trainer.batch_size=0"),
    (["trainer.threads=0"], "trainer.threads=0 must be a whole number >= 1 or null"),
    (["trainer.threads=100000"], "more than any machine's cores"),
    (["trainer.checkpoint_every=0"], "trainer.checkpoint_every=0"),
    (["probe.every=0"], "probe.every=0"),
    (["probe.bins=1"], "probe.bins=1 must be a whole number >= 2"),
    (["probe.bins=1000000000000"], "probe.bins=1000000000000 must be at most 10,000"),
    (["probe.histogram_sample=1"], "probe.histogram_sample=1"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0"),
    (["data=gaussian", "data.n_train=0"], "data.n_train=0"),
    (["data=gaussian", "data.classes=1"], "data.classes=1 must be a whole number >= 2"),
    (["data.max_train=0"], "data.max_train=0 must be a whole number >= 1 or null"),
    # numbers: finite and in range
    (["optimizer.lr=0"], "optimizer.lr=0 must be a finite number > 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
    (["optimizer.lr=fast"], "optimizer.lr='fast' must be a finite number > 0"),
    (["optimizer.lr=nan"], "optimizer.lr=nan must be a finite number > 0"),
    (["optimizer.lr=inf"], "optimizer.lr=inf"),
    (["optimizer=momentum", "optimizer.mu=1.0"], "optimizer.mu=1.0 must be a finite number in [0, 1)"),
    (["optimizer=adam", "optimizer.rho=1.5"], "optimizer.rho=1.5"),
    (["optimizer=adam", "optimizer.mu=-inf"], "optimizer.mu=-inf"),
    (["optimizer=adagrad", "optimizer.delta=0"], "optimizer.delta=0 must be a finite number > 0"),
    (["model.dropout=1.0"], "model.dropout=1.0 must be a finite number in [0, 1)"),
    (["model.dropout=-0.1"], "model.dropout=-0.1"),
    (["model.dropout=nan"], "model.dropout=nan"),
    (["trainer.weight_decay=-1"], "trainer.weight_decay=-1 must be a finite number >= 0"),
    (["trainer.l1=nan"], "trainer.l1=nan"),
    (["trainer.clip_grad_norm=0"], "trainer.clip_grad_norm=0 must be a finite number > 0 or null"),
    (["trainer.clip_grad_value=inf"], "trainer.clip_grad_value=inf"),
    (["probe.saturation_margin=0.5"], "probe.saturation_margin=0.5 must be a finite number in (0, 0.5)"),
    (["init=normal", "init.std=-1"], "init.std=-1 must be a finite number >= 0"),
    (["init=normal", "init.std=nan"], "init.std=nan"),
    (["init.gain=-2"], "init.gain=-2 must be a finite number > 0"),
    (["init.gain=nan"], "init.gain=nan"),
    (["init.gain=fast"], "init.gain='fast'"),
    (["+init.bias=inf"], "init.bias=inf must be a finite number"),
    (["scheduler=exponential", "scheduler.gamma=0"], "scheduler.gamma=0 must be a finite number > 0"),
    (["scheduler=inverse_time", "scheduler.decay=nan"], "scheduler.decay=nan"),
    (["data.test_fraction=1.5"], "data.test_fraction=1.5 must be a finite number in (0, 1)"),
    (["data.test_fraction=abc"], "data.test_fraction='abc'"),
    (["data=spirals", "data.noise=abc"], "data.noise='abc' must be a finite number >= 0"),
    (["data=spirals", "data.noise=-1"], "data.noise=-1"),
    (["activation=leaky_relu", "activation.negative_slope=x"], "activation.negative_slope='x' must be a finite"),
    (["activation=leaky_relu", "activation.negative_slope=nan"], "activation.negative_slope=nan"),
    (["activation=elu", "activation.alpha=abc"], "activation.alpha='abc'"),
    (["activation=prelu", "activation.init=inf"], "activation.init=inf"),
    # switches and choices
    (["probe.figures=maybe"], "probe.figures='maybe' must be true (the first and last probe's figures), every or false"),
    (["trainer.resume=maybe"], "trainer.resume='maybe' must be true or false"),
    (["trainer.progress=1"], "trainer.progress=1 must be true or false"),
    (["trainer.cuda_graph=yes"], "trainer.cuda_graph='yes' must be true or false"),
    (["loss=focal", "loss.gamma=-1"], "loss.gamma=-1 must be a finite number >= 0"),
    (["loss=focal", "loss.alpha=1.5"], "loss.alpha=1.5 must be a finite number in [0, 1]"),
    (["loss=mse", "+loss.gamma=2"], "loss.gamma is not a key of loss=mse"),
    (["activation=swish", "activation.beta=0"], "activation.beta=0 must be a finite number > 0"),
    (["optimizer=adam", "optimizer.bias_correction=maybe"], "optimizer.bias_correction='maybe' must be true or false"),
    (["optimizer=sgd", "+optimizer.bias_correction=false"], "optimizer.bias_correction is not a key of optimizer=sgd"),
    (["data.standardize=no"], "data.standardize='no' must be true or false"),
    (["skip_completed=2"], "skip_completed=2 must be true or false"),
    (["trainer.dtype=float16"], "trainer.dtype='float16' is unknown; choose one of: float32, float64"),
    (["trainer.device=tpu"], "trainer.device='tpu' is unknown"),
    (["init.mode=fan_sideways"], "init.mode='fan_sideways' is unknown; choose one of: fan_in, fan_out, fan_avg"),
    (["activation=gelu", "activation.approximate=sigmoid"], "activation.approximate='sigmoid' is unknown"),
    (["bn.placement=middle"], "bn.placement='middle' is unknown; choose one of: none, before, after"),
    (["optimizer.name=adamw"], "optimizer.name='adamw' is unknown; choose one of: adagrad, adam"),
    (["loss.name=hinge"], "loss.name='hinge' is unknown"),
    (["data.name=imagenet"], "data.name='imagenet' is unknown"),
    (["activation.name=swishh"], "activation='swishh' is unknown"),
    # keys nobody reads
    (["++unknown.key=1"], "unknown.key is not a key of the config"),
    (["++trainer.epoch=5"], "trainer.epoch is not a key of trainer; did you mean trainer.epochs?"),
    (["++model.heads=4"], "model.heads is not a key of model"),
    (["+optimizer.mu=0.5"], "optimizer.mu is not a key of optimizer=sgd; its keys: lr, name"),
    (["optimizer=adagrad", "+optimizer.rho=0.9"], "optimizer.rho is not a key of optimizer=adagrad"),
    (["+init.std=0.1"], "init.std is not a key of init=xavier_normal"),
    (["init=normal", "+init.gain=2"], "init.gain is not a key of init=normal"),
    (["+activation.negative_slope=0.1"], "activation.negative_slope is not a key of activation=tanh"),
    (["activation=prelu", "+activation.num_parameters=3"], "activation.num_parameters is not a key of activation=prelu"),
    (["+data.root=/tmp"], "data.root is not a key of data=digits"),
    (["scheduler=step", "~scheduler.gamma"], "scheduler=step needs scheduler.gamma"),
    # what needs the data's shape
    (["trainer.batch_size=100000"], "larger than the 1438 training examples"),
    (["bn=before", "trainer.batch_size=1"], "bn=before needs batches of 2 or more"),
    (["model.width=10000000"], "GB with its gradients, optimizer state and activations, but cpu has"),
    (["data=gaussian", "data.n_train=900000000", "data.dim=100000"], "GB but the host has"),
]


@pytest.fixture(scope="module")
def config():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        yield lambda overrides: compose("train", overrides=[*SMALL, *overrides])


def check(cfg) -> None:
    """Every check a run makes before it builds its model."""
    device = validate(cfg)
    check_data_size(cfg)
    check_against_data(cfg, load_data(cfg.data, cfg.trainer.seed), device)


@pytest.mark.parametrize("overrides, expected", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_a_bad_value_is_one_line_that_names_it(config, overrides, expected):
    with pytest.raises(ConfigError) as info:
        check(config(overrides))
    message = str(info.value)
    assert expected in message and "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize("group", ["activation", "init", "optimizer", "scheduler", "data", "loss", "bn"])
def test_every_shipped_choice_passes(config, group):
    folder = __import__("pathlib").Path(config_dir()) / group
    for path in sorted(folder.glob("*.yaml")):
        if path.stem in ("mnist", "fashion_mnist", "cifar10"):
            validate(config([f"{group}={path.stem}"]))  # their files are not here; the keys still pass
        else:
            check(config([f"{group}={path.stem}"]))


def test_every_experiment_passes(config):
    folder = __import__("pathlib").Path(config_dir()) / "experiment"
    for path in sorted(folder.glob("*.yaml")):
        check_experiment(path.stem)
        validate(config([f"experiment={path.stem}"]))


def test_a_typo_in_an_experiment_name_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="experiment=small_gausian_init is not an experiment; did you mean "
                                          "small_gaussian_init"):
        check_experiment("small_gausian_init")


def test_every_key_has_a_rule_and_every_choice_says_what_it_reads():
    from layerscope.data import datasets as data
    from layerscope.nets import init, losses
    from layerscope.optim import rules as optim
    from layerscope.optim import schedules
    from layerscope.registry import Registry

    registries: dict[str, Registry] = {"optimizer": optim.OPTIMIZERS, "scheduler": schedules.SCHEDULERS,
                                       "init": init.INITIALIZERS, "data": data.DATASETS, "loss": losses.LOSSES}
    for group, registry in registries.items():
        assert set(READS[group]) == set(registry.names()), group
        for reads in READS[group].values():
            assert set(reads) <= set(RULES[group]), group
    assert all(isinstance(bound, int) and why for bound, why in BOUNDS.values())
    assert math.isfinite(max(bound for bound, _ in BOUNDS.values()))


@pytest.mark.parametrize("name", ["cuda", "auto"])
def test_a_gpu_without_an_index_resolves_to_the_current_one(monkeypatch, name):
    """``torch.cuda.set_device`` refuses a bare ``cuda`` (it needs the index), so the name resolves to ``cuda:N``."""
    import torch

    from layerscope.config.validate import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device(name) == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
