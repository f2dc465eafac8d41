"""Hyper-parameter search: the entry point returns the run's final test loss, which Optuna minimizes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict, read_write

from layerscope.cli.main import main
from layerscope.paths import config_dir
from layerscope.runs.folder import objective

CLI = str(Path(sys.executable).with_name("layerscope"))
TINY = ["model.depth=2", "model.width=16", "probe.figures=false", "trainer.progress=false"]


@pytest.fixture
def hydra_job(tmp_path):
    """Compose ``overrides`` as Hydra's run does for a job writing into ``tmp_path``; the job's config."""
    def job(*overrides: str):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name="layerscope"):
            cfg = compose("train", overrides=[*TINY, *overrides], return_hydra_config=True)
        with read_write(cfg.hydra):
            cfg.hydra.runtime.output_dir = str(tmp_path)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # a job gets its config without Hydra's node
        return cfg
    yield job
    HydraConfig.instance().cfg = None


def test_main_returns_the_final_test_loss(hydra_job, tmp_path):
    loss = main(hydra_job("trainer.max_steps=3"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert isinstance(loss, float) and loss == summary["final"]["test_loss"] > 0


def test_main_returns_inf_for_a_diverged_run(hydra_job, tmp_path):
    loss = main(hydra_job("trainer.max_steps=20", "activation=relu", "init=normal", "init.std=1", "optimizer.lr=1e6"))
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"
    assert loss == math.inf


@pytest.mark.parametrize("summary", [
    {"status": "diverged", "final": {"test_loss": 0.5}},   # its last healthy epoch's loss is no result
    {"status": "completed", "final": {"test_loss": float("nan")}},
    {"status": "completed", "final": {"test_loss": float("inf")}},
    {"status": "completed", "final": {}},                  # trainer.max_steps=0, or a probe grid
    {"status": "failed", "error": "model.depth=0 must be a whole number >= 1"},
    {"status": "interrupted", "final": {"test_loss": 0.5}},
    {},
])
def test_objective_is_inf_unless_a_completed_run_has_a_finite_test_loss(summary):
    assert objective(summary) == math.inf


def test_objective_is_the_completed_runs_test_loss():
    assert objective({"status": "completed", "final": {"test_loss": 0.25, "test_accuracy": 0.9}}) == 0.25


def test_optuna_search_runs_its_trials_and_reports_the_best(tmp_path):
    """make installs the optuna extra, so this runs in make test (about 7 s)."""
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([CLI, "-m", "+hparams_search=adam_lr_init", "hydra.sweeper.n_trials=3",
                           "trainer.max_steps=5", *TINY], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    sweep = next((tmp_path / "outputs" / "sweeps").glob("*/*"))
    losses = [objective(json.loads(p.read_text())) for p in sweep.glob("*/summary.json")]
    assert len(losses) == 3
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(best.best_params) == {"optimizer.lr", "init"}
    assert best.best_value == pytest.approx(min(losses))
    assert "Best value" in proc.stderr + proc.stdout
