"""The regularization checks on synthetic records: over-training, dropout's noise, BN, and L2's λ (a right and a
deliberately wrong outcome each), and the experiments' variants as the stacked groups they train in."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from layerscope.lecture.claims import CHECKS, CONTRADICTS, FAIL, PASS
from layerscope.lecture.claims.regularization import _late_change, _pass_losses, _rising
from layerscope.lecture.experiments import load_experiments
from layerscope.paths import config_dir
from layerscope.probe.record import ProbeRecord
from layerscope.runs.results import RunResult
from layerscope.train.group import group_key

EPOCHS = 20
STEPS = 4  # batches per epoch
FALLING = 2.0 * 0.8 ** np.arange(EPOCHS)


def configs(experiment: str, variants: dict[str, list[str]]) -> dict[str, dict]:
    """Each variant's composed config, as its run folder holds it."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return {label: OmegaConf.to_container(compose("train", overrides=[f"experiment={experiment}", *overrides]),
                                              resolve=True) for label, overrides in variants.items()}


def fake(folder: Path, cfg: dict, train=FALLING, test=None, accuracy=None, stats: dict | None = None,
         weights: list[np.ndarray] | None = None) -> RunResult:
    """A completed run with per-epoch ``train``/``test`` losses and test ``accuracy`` (the steps of an epoch at its
    train loss), its config, last-probe ``stats`` and final hidden ``weights``."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    test = np.asarray(test if test is not None else 0.3 + 0 * FALLING, dtype=float)
    accuracy = np.asarray(accuracy if accuracy is not None else 0.9 + 0 * FALLING, dtype=float)
    metrics = [{"epoch": i + 1, "step": STEPS * (i + 1), "train_loss": float(train[i]), "test_loss": float(test[i]),
                "test_accuracy": float(accuracy[i]), "step_losses": [float(train[i])] * STEPS}
               for i in range(len(train))]
    final = {"train_loss": float(train[-1]), "test_loss": float(test[-1]), "test_accuracy": float(accuracy[-1])}
    summary = {"status": "completed", "num_classes": 10, "steps": STEPS * len(train), "final": final,
               "initial": {"test_loss": math.log(10), "test_accuracy": 0.1}}
    lists = {k: list(map(float, v)) for k, v in (stats or {"activation_std": [1.0], "backward_std": [1.0]}).items()}
    probes = [ProbeRecord(0, lists), ProbeRecord(STEPS * EPOCHS, lists)]
    if weights is not None:
        torch.save({"model": {f"blocks.{i}.linear.weight": torch.tensor(w) for i, w in enumerate(weights)}},
                   folder / "checkpoint.pt")
    return RunResult(folder.name, folder, summary, metrics, probes)


@pytest.fixture(scope="module")
def dropout_configs() -> dict[str, dict]:
    return configs("dropout", {"plain": ["model.dropout=0.0"], "dropout": ["model.dropout=0.3"],
                               "long": ["optimizer.lr=0.5"], "bn": ["bn=before"],
                               "bn_dropout": ["bn=before", "model.dropout=0.3"]})


def dropout_runs(tmp_path: Path, cfgs: dict[str, dict], **changes) -> dict[str, RunResult]:
    """The dropout experiment's variants as the lecture tells them: ``changes`` replace a variant's fake arguments."""
    noisy = FALLING * (1 + 0.3 * (np.arange(EPOCHS) % 2))  # every other pass rises
    overtrained = 0.3 + 0.002 * (np.arange(EPOCHS) - 5) ** 2  # lowest at epoch 6, then rising
    textbook = {"plain": dict(train=FALLING * 0.01, test=0.35 + 0 * FALLING),
                "dropout": dict(train=noisy * 0.05, test=0.30 + 0 * FALLING, accuracy=0.92 + 0 * FALLING),
                "long": dict(train=FALLING * 0.001, test=overtrained, accuracy=0.9 - 0.001 * np.arange(EPOCHS)),
                "bn": dict(train=FALLING * 0.01, test=0.32 + 0 * FALLING, accuracy=0.91 + 0 * FALLING),
                "bn_dropout": dict(train=noisy * 0.05, test=0.30 + 0 * FALLING, accuracy=0.90 + 0 * FALLING)}
    return {label: fake(tmp_path / label, cfgs[label], **{**kwargs, **changes.get(label, {})})
            for label, kwargs in textbook.items()}


def outcomes(check: str, results: dict[str, RunResult], out: Path):
    verdict = CHECKS.get(check)(results, out)
    return verdict, {p.statement.split(":")[0]: p.outcome for p in verdict.parts}


def test_dropout_check_passes_the_lectures_story_and_every_statement_cites_the_notes(tmp_path, dropout_configs):
    verdict, found = outcomes("dropout_regularizes", dropout_runs(tmp_path, dropout_configs), tmp_path)
    assert verdict.passed and set(found.values()) == {PASS} and len(found) == 11
    assert all(p.cite for p in verdict.parts) and not verdict.lecture_differs


def test_dropout_that_hurts_is_a_finding_and_a_net_that_does_not_overfit_fails_the_setup(tmp_path, dropout_configs):
    worse = dropout_runs(tmp_path / "a", dropout_configs, dropout=dict(test=0.45 + 0 * FALLING,
                                                                      accuracy=0.89 + 0 * FALLING))
    verdict, found = outcomes("dropout_regularizes", worse, tmp_path / "a")
    assert verdict.passed and "the seeds' paired differences" in verdict.lecture_differs
    assert [found[f"dropout p = 0.3 {s}"] for s in ("narrows the gap between training and test loss",
                                                    "improves the test accuracy")] == [CONTRADICTS, CONTRADICTS]
    fitted = dropout_runs(tmp_path / "b", dropout_configs, plain=dict(train=0.2 + FALLING * 0.01))
    verdict, found = outcomes("dropout_regularizes", fitted, tmp_path / "b")
    assert found["without dropout the net overfits the small training set"] == FAIL and not verdict.passed


def test_a_test_loss_still_falling_at_the_end_contradicts_overtraining(tmp_path, dropout_configs):
    runs = dropout_runs(tmp_path, dropout_configs, long=dict(test=0.3 + FALLING * 0.01))
    verdict, found = outcomes("dropout_regularizes", runs, tmp_path)
    rises = next(k for k in found if k.startswith("trained too long"))
    assert found[rises] == CONTRADICTS and verdict.passed and "did not rise" in verdict.lecture_differs


def test_an_error_rate_that_keeps_falling_is_a_finding_about_early_stopping(tmp_path, dropout_configs):
    runs = dropout_runs(tmp_path, dropout_configs, long=dict(accuracy=0.88 + 0.001 * np.arange(EPOCHS)))
    verdict, found = outcomes("dropout_regularizes", runs, tmp_path)
    error = "and its test error rate rises with it (what early stopping on a validation set watches)"
    assert found[error] == CONTRADICTS
    assert "stopping on the error rate (003:310) would train on" in verdict.lecture_differs


def test_dropout_noise_is_read_pass_by_pass(tmp_path, dropout_configs):
    steady = dropout_runs(tmp_path / "a", dropout_configs, dropout=dict(train=FALLING * 0.05))
    _, found = outcomes("dropout_regularizes", steady, tmp_path / "a")
    assert found["with dropout it does not"] == CONTRADICTS
    one_rise = FALLING * (1 + 0.3 * (np.arange(EPOCHS) == 9))
    bumpy = dropout_runs(tmp_path / "b", dropout_configs, plain=dict(train=one_rise))
    verdict, found = outcomes("dropout_regularizes", bumpy, tmp_path / "b")
    assert found["without dropout the training loss falls monotonically, pass by pass over the training set"] == FAIL
    assert not verdict.passed  # the lecture's advice needs a monotone loss without dropout: our setup failed


def test_dropout_that_still_helps_with_bn_contradicts_the_notes(tmp_path, dropout_configs):
    runs = dropout_runs(tmp_path, dropout_configs, bn_dropout=dict(accuracy=0.93 + 0 * FALLING))
    verdict, found = outcomes("dropout_regularizes", runs, tmp_path)
    assert found["with BN, dropout (p = 0.3) can be removed"] == CONTRADICTS
    assert "still raised the test accuracy by +2.0 points (without BN, p = 0.3 gained +2.0" in verdict.lecture_differs


def test_pass_losses_are_the_means_of_each_epochs_steps(tmp_path):
    run = fake(tmp_path / "r", {}, train=[1.0, 2.0, 0.5])
    run.metrics[1]["step_losses"] = [1.0, 4.0, 2.0, 1.0]
    assert np.allclose(_pass_losses(run), [1.0, 2.0, 0.5]) and _rising(_pass_losses(run)) == 0.5
    assert _late_change(np.arange(11) * 0.5) == pytest.approx(2.5)  # epochs 5..10 of a line of slope 0.5


@pytest.fixture(scope="module")
def decay_configs() -> dict[str, dict]:
    return configs("weight_decay", {"none": [], "l2_small": ["trainer.weight_decay=0.003"],
                                    "l2_large": ["trainer.weight_decay=0.3"], "l1": ["trainer.l1=3e-4"]})


def decay_run(folder: Path, cfg: dict, scale: float, train: float, test: float, accuracy: float = 0.9) -> RunResult:
    """A tanh run whose weights and pre-activations have size ``scale`` (activations tanh of them) and final losses."""
    z = np.full(3, scale)
    stats = {"preactivation_mean": 0 * z, "preactivation_std": z, "activation_mean": 0 * z,
             "activation_std": np.tanh(z), "saturated_fraction": 0 * z, "backward_std": z}
    weights = [np.random.default_rng(0).normal(0, 0.1 * scale, (16, 16)) for _ in range(3)]
    return fake(folder, cfg, train=np.linspace(2.0, train, EPOCHS), test=np.linspace(2.0, test, EPOCHS),
                accuracy=np.full(EPOCHS, accuracy), stats=stats, weights=weights)


def test_weight_decay_check_and_a_ladder_that_does_not_shrink(tmp_path, decay_configs):
    def runs(folder, small_scale=0.8):
        return {"none": decay_run(folder / "none", decay_configs["none"], 1.0, 0.02, 0.30, 0.93),
                "l2_small": decay_run(folder / "small", decay_configs["l2_small"], small_scale, 0.04, 0.29, 0.93),
                "l2_large": decay_run(folder / "large", decay_configs["l2_large"], 0.01, 2.2, 2.25, 0.1),
                "l1": decay_run(folder / "l1", decay_configs["l1"], 0.9, 0.03, 0.30, 0.93)}
    verdict, found = outcomes("weight_decay_tradeoff", runs(tmp_path / "a"), tmp_path / "a")
    assert verdict.passed and set(found.values()) == {PASS} and len(found) == 8 and all(p.cite for p in verdict.parts)
    verdict, found = outcomes("weight_decay_tradeoff", runs(tmp_path / "b", small_scale=1.1), tmp_path / "b")
    shrink = ("each larger λ sets the weights nearer 0", "each larger λ makes the pre-activations Z smaller",
              "each larger λ keeps tanh nearer its linear part")
    assert [found[s] for s in shrink] == [CONTRADICTS] * 3 and verdict.passed
    assert "A larger λ did not always set the weights nearer 0" in verdict.lecture_differs


def test_regularization_experiments_load_and_train_in_the_groups_the_budget_counts():
    experiments = {e.name: e for e in load_experiments(["dropout", "weight_decay", "l1_vs_l2"])}
    assert experiments["weight_decay"].number == 25

    def groups(name: str) -> int:
        variants = experiments[name].variants
        return len({group_key(OmegaConf.create(cfg)) for cfg in configs(name, variants).values()})
    assert groups("weight_decay") == 1  # the penalties are members' hyper-parameters: one stacked group
    assert groups("dropout") == 5  # plain and long share one; each dropout rate and each BN variant is a shape
