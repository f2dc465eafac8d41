"""A sweep composes Hydra's config once per defaults-list selection (``compose_once``), and each job's config is
still the one Hydra's own ``load_sweep_config`` composes: values, the ``hydra`` node, flags, errors."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from layerscope.config import hydra_hooks

CLI = str(Path(sys.executable).with_name("layerscope"))
HYDRA = hydra_hooks._HYDRA_LOAD_SWEEP_CONFIG  # Hydra's own ConfigLoaderImpl.load_sweep_config
SWEEP = ["optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "trainer.seed=0,1",
         "hydra.job.config.override_dirname.exclude_keys=[trainer.seed]"]
JOBS = [
    ["optimizer=sgd", "optimizer.lr=0.1"], ["optimizer=sgd", "optimizer.lr=0.01"],
    ["optimizer=adam", "optimizer.lr=0.1"], ["optimizer.lr=0.01", "optimizer=adam", "trainer.seed=1"],
    ["+trainer.extra=3"], ["~model.dropout"], ["++model.width=7"], ["++model.extra=[1,2]"],
    ["activation=relu", "model.depth=3"], ["model.depth=3", "activation=relu", "init=he_normal"],
    ["hydra.job.name=x", "model.depth=4"], ["model.depth=5", "hydra.job.name=x", "optimizer=adam"],
    ["experiment=he_relu", "trainer.max_steps=2"], ["hydra={job:{name:y}}", "model.depth=1"],
    ["model={depth:9}"], ["model=5"], ["+model.depth.x=1"],
]


@pytest.fixture(scope="module")
def master() -> DictConfig:
    """A sweep's master config, composed as Hydra composes it for ``layerscope -m``."""
    loader = hydra_hooks.config_loader()
    return loader.load_configuration(config_name="train", overrides=SWEEP, run_mode=RunMode.MULTIRUN)


@pytest.fixture
def loader(monkeypatch) -> ConfigLoaderImpl:
    """A fresh loader over configs/, with ``compose_once`` in place for this test only."""
    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", ConfigLoaderImpl.load_sweep_config)
    hydra_hooks.compose_once()
    return hydra_hooks.config_loader()


def same(a: DictConfig, b: DictConfig) -> None:
    assert OmegaConf.to_container(a, resolve=False) == OmegaConf.to_container(b, resolve=False)
    for key in ["", "model", "trainer", "optimizer", "hydra", "hydra.job", "hydra.overrides"]:
        x, y = (OmegaConf.select(c, key) if key else c for c in (a, b))
        if OmegaConf.is_config(x) and OmegaConf.is_config(y):
            assert (OmegaConf.is_struct(x), OmegaConf.is_readonly(x)) == (OmegaConf.is_struct(y),
                                                                         OmegaConf.is_readonly(y))


def test_each_job_is_the_config_hydra_composes(loader, master):
    hydra = [HYDRA(loader, master, job) for job in JOBS]
    for _ in range(2):  # the sweeper's check of the batch, then the launcher: composed, then from the cache
        for job, expected in zip(JOBS, hydra):
            ours = loader.load_sweep_config(master, job)
            same(ours, expected)
            assert list(ours.hydra.overrides.task) == [o for o in job if not o.startswith("hydra.")]
    assert loader.load_sweep_config(master, JOBS[3]).hydra.job.override_dirname == "optimizer.lr=0.01,optimizer=adam"


def test_a_job_gets_its_own_copy_and_the_master_resolver_cache(loader, master):
    first = loader.load_sweep_config(master, ["optimizer.lr=0.1"])
    first.model.depth = 99
    resolved = copy.deepcopy(master)  # the sweep's master after it resolved ${now:...}
    OmegaConf.set_cache(resolved, {"now": {"('%H-%M',)": "12-00"}})
    again = loader.load_sweep_config(resolved, ["optimizer.lr=0.1"])
    assert again.model.depth == 10 and first.model.depth == 99
    assert OmegaConf.get_cache(again) == OmegaConf.get_cache(resolved) != OmegaConf.get_cache(first)


def test_a_sweep_composes_once_per_selection(loader, master):
    jobs = [[f"optimizer={o}", f"optimizer.lr={lr}", f"trainer.seed={s}"]
            for o in ("sgd", "adam") for lr in (0.1, 0.01) for s in (0, 1)]
    with mock.patch.object(hydra_hooks, "_HYDRA_LOAD_SWEEP_CONFIG", wraps=HYDRA) as compose:
        for _ in range(2):  # sweeper and launcher
            configs = [loader.load_sweep_config(master, job) for job in jobs]
    assert [call.args[2] for call in compose.call_args_list] == [["optimizer=sgd"], ["optimizer=adam"]]
    assert [(c.optimizer.name, c.optimizer.lr, c.trainer.seed) for c in configs] == [
        (o, lr, s) for o in ("sgd", "adam") for lr in (0.1, 0.01) for s in (0, 1)]


@pytest.mark.parametrize("job", [
    ["model.nonexistent=1"], ["+model.depth=3"], ["~model.nope"], ["~model.dropout=0.5"], ["optimizer.lr.x=1"],
    ["model.nope=1", "hydra.job.nope=2"], ["optimizer=nope", "model.nope=1"], ["model.depth=1,2"], ["nope@x=1"],
    ["model.depth=[1"],
])
def test_a_bad_override_fails_as_in_hydra(loader, master, job):
    with pytest.raises(Exception) as hydra_error:
        HYDRA(loader, master, job)
    with pytest.raises(type(hydra_error.value)) as ours:
        loader.load_sweep_config(master, job)
    assert str(ours.value) == str(hydra_error.value)
    assert type(ours.value.__cause__) is type(hydra_error.value.__cause__)


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=stacked"]], ids=["basic", "stacked"])
def test_a_sweep_writes_each_job_config_as_hydra_composes_it(tmp_path, launcher):
    sweep = ["optimizer=sgd,adam", "optimizer.lr=0.1,0.01"]
    # spelled as Hydra's sweeper writes a job's fixed overrides (False, not false)
    fixed = ["model.depth=2", "model.width=16", "trainer.max_steps=1", "probe.figures=False", "trainer.progress=False"]
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([CLI, "-m", *launcher, *sweep, *fixed], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [sweep_dir] = (tmp_path / "outputs" / "sweeps").glob("*/*")
    loader = hydra_hooks.config_loader()
    master = loader.load_configuration(config_name="train", overrides=[*launcher, *sweep, *fixed],
                                       run_mode=RunMode.MULTIRUN)
    for optimizer in ("sgd", "adam"):
        for lr in ("0.1", "0.01"):
            job = [f"optimizer={optimizer}", f"optimizer.lr={lr}", *fixed]
            records = sweep_dir / f"optimizer.lr={lr},optimizer={optimizer}" / ".hydra"
            assert yaml.safe_load((records / "overrides.yaml").read_text()) == job
            composed = HYDRA(loader, master, job)
            expected = OmegaConf.to_container(composed, resolve=False)
            hydra = expected.pop("hydra")
            assert yaml.safe_load((records / "config.yaml").read_text()) == expected
            task = OmegaConf.masked_copy(composed, [key for key in composed if key != "hydra"])
            assert (records / "config.yaml").read_text() == OmegaConf.to_yaml(task)  # the text Hydra writes
            assert (records / "overrides.yaml").read_text() == OmegaConf.to_yaml(composed.hydra.overrides.task)
            written = yaml.safe_load((records / "hydra.yaml").read_text())["hydra"]
            assert written["overrides"]["task"] == job and written["runtime"]["choices"] == hydra["runtime"]["choices"]
            assert written["job"]["override_dirname"] == f"optimizer.lr={lr},optimizer={optimizer}"


VARIANTS = [job for job in JOBS if not any(line.startswith("hydra") for line in job)] + [
    ["experiment=layernorm_vs_batchnorm", "bn=ln_before", "trainer.batch_size=2", "optimizer.lr=0.005"],
    ["experiment=l1_vs_l2", "trainer.l1=3e-4"], ["experiment=dropout", "~model.dropout"]]


@pytest.mark.parametrize("overrides", VARIANTS, ids=" ".join)
def test_compose_is_hydra_compose(overrides):
    """``hydra_hooks.compose`` (the lecture experiments' variants) gives what ``hydra.compose`` gives, an error
    included, and composes each defaults-list selection once."""
    from hydra import compose as hydra_compose

    from layerscope.paths import configs_context

    with configs_context():
        try:
            expected = hydra_compose("train", overrides=overrides)
        except Exception as err:  # noqa: BLE001 - the same error, then
            with pytest.raises(type(err)):
                hydra_hooks.compose("train", overrides)
            return
        with mock.patch("hydra.compose", wraps=hydra_compose) as composed:
            first = hydra_hooks.compose("train", overrides)
            again = hydra_hooks.compose("train", [*overrides, "trainer.seed=5"])
        same(first, expected)
        assert again.trainer.seed == 5 and first.trainer.seed != 5
        assert composed.call_count <= 1


def test_hydra_reads_each_config_file_once_while_it_is_unchanged(tmp_path, monkeypatch):
    """With ``read_config_files_once`` Hydra composes the same configs (each variant above, twice: Hydra changes what
    it reads), parses no file again, and reads a file changed between two compositions anew."""
    import shutil

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra._internal.sources_registry import SourcesRegistry

    from layerscope.paths import HYDRA_VERSION_BASE, config_dir

    configs = shutil.copytree(config_dir(), tmp_path / "configs")
    with initialize_config_dir(config_dir=str(configs), version_base=HYDRA_VERSION_BASE):
        expected = [OmegaConf.to_container(hydra_compose("train", overrides=v)) for v in VARIANTS[:8]]
        for scheme in ("file", "pkg"):  # Hydra's own reads again after this test
            source = SourcesRegistry.instance().resolve(scheme)
            monkeypatch.setattr(source, "load_config", source.load_config)
        hydra_hooks.read_config_files_once()
        with mock.patch.object(OmegaConf, "load", wraps=OmegaConf.load) as parsed:
            for _ in range(2):
                assert [OmegaConf.to_container(hydra_compose("train", overrides=v)) for v in VARIANTS[:8]] == expected
                parses, parsed.call_count = parsed.call_count, 0
            assert parses == 0
            train = configs / "train.yaml"
            train.write_text(train.read_text().replace("width: 500", "width: 12345"))
            assert hydra_compose("train", overrides=[]).model.width == 12345 and parsed.call_count == 1
