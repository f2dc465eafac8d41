"""The initialization chapter: the sigmoid's signal under N(0, 0.01²), the backward signal at step 0 against χ, and
the lecture's bad random inits trained; on tiny real probe-only runs and on synthetic records."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from layerscope.config.hydra_hooks import compose
from layerscope.lecture.claims import CHECKS
from layerscope.lecture.claims.finite_width import finite_width_backward, own_signal
from layerscope.lecture.experiments import Experiment, experiments_dir
from layerscope.lecture.reproduce import run_experiment
from layerscope.paths import configs_context
from layerscope.probe.record import ProbeRecord
from layerscope.runs.results import RunResult

CITE = re.compile(r"\d{3}:\d+(, \d{3}:\d+)*")


def experiment(name: str, *extra: str) -> Experiment:
    """The experiment as its yaml states it, each variant with ``extra`` overrides (without loading the others)."""
    spec = OmegaConf.to_container(OmegaConf.load(experiments_dir() / f"{name}.yaml"))["reproduce"]
    variants = {str(k): [*v, *extra] for k, v in spec.get("variants", {"run": []}).items()}
    return Experiment(name, spec["number"], spec["title"], spec["claim"], spec["check"], variants,
                      seeds=spec.get("seeds", 5))


def outcomes(verdict) -> dict[str, str]:
    return {p.statement: p.outcome for p in verdict.parts}


def edited(result: RunResult, stats: dict | None = None, theory: dict | None = None) -> RunResult:
    """``result`` with its step-0 probe's ``stats`` and ``theory`` entries replaced."""
    first = result.probes[0]
    probe = ProbeRecord(first.step, {**first.stats, **(stats or {})}, first.histograms,
                        {**(first.theory or {}), **(theory or {})})
    return replace(result, probes=[probe, *result.probes[1:]], seeds=[])


@pytest.fixture(scope="module")
def small_init(tmp_path_factory) -> tuple[dict[str, RunResult], Path]:
    """small_gaussian_init, tanh and sigmoid, at width 256 on 64 samples (the signal of 10 sigmoid layers stays
    above float64's rounding of numbers near 1/2 from width ~100 on)."""
    out = tmp_path_factory.mktemp("small")
    with configs_context():
        spec = experiment("small_gaussian_init", "model.width=256", "trainer.batch_size=64", "probe.figures=false")
        return run_experiment(spec, out), out


@pytest.fixture(scope="module")
def at_init(tmp_path_factory) -> tuple[dict[str, RunResult], Path]:
    """init_gradient's four variants at width 128 on 32 samples."""
    out = tmp_path_factory.mktemp("gradient")
    with configs_context():
        return run_experiment(experiment("init_gradient", "model.width=128", "trainer.batch_size=32"), out), out


def test_sigmoid_signal_collapses_as_the_theory_says_on_the_run_s_own_network(small_init):
    results, out = small_init
    verdict = CHECKS.get("std_collapses")(results, out)
    assert verdict.passed and set(outcomes(verdict).values()) == {"PASS"} and len(verdict.parts) == 7
    sigmoid = results["sigmoid"]
    own = own_signal(sigmoid.config)
    assert np.allclose(own["activation_std"], sigmoid.stat("activation_std"), rtol=1e-6)  # the run's network
    assert own["sample_spread"][-1] / own["sample_spread"][0] < 1e-8 < sigmoid.stat("activation_std")[-1]
    assert all(CITE.fullmatch(p.cite) for p in verdict.parts)
    assert [p.cite for p in verdict.parts[3:]] == ["000:129"] * 4


@pytest.mark.parametrize("kind, key, change, failing", [
    ("stats", "activation_std", lambda v: 1.01 * v,  # not the recorded std of this network
     "it collapses by √χ a layer, as the mean-field theory predicts"),
    ("stats", "activation_std", lambda v: v[0] * 0.5 ** np.arange(10),
     "with sigmoid the std over samples and units follows the theory to a fixed point, not to zero"),
    ("stats", "activation_mean", lambda v: v + 0.05,
     "with sigmoid the activations' mean sits at σ(0) = 1/2 in every layer"),
])
def test_sigmoid_statements_fail_on_records_the_network_does_not_give(small_init, kind, key, change, failing):
    results, out = small_init
    sigmoid = results["sigmoid"]
    recorded = np.asarray(getattr(sigmoid.probes[0], kind)[key], dtype=float)
    tampered = {**results, "sigmoid": edited(sigmoid, **{kind: {key: change(recorded).tolist()}})}
    verdict = CHECKS.get("std_collapses")(tampered, out)
    assert outcomes(verdict)[failing] == "FAIL" and not verdict.passed


def test_without_the_sigmoid_variant_only_the_tanh_statements(small_init):
    results, out = small_init
    verdict = CHECKS.get("std_collapses")({"run": results["run"]}, out)
    assert verdict.passed and [p.cite for p in verdict.parts] == ["001:79"] * 3


def test_gradient_kept_follows_chi_and_xavier_does_not_keep_sigmoid_s_gradient(at_init):
    results, out = at_init
    verdict = CHECKS.get("gradient_kept")(results, out)
    got = outcomes(verdict)
    assert verdict.passed and list(got.values()).count("PASS") == 8, got
    assert [s for s, o in got.items() if o == "CONTRADICTS THE LECTURE"] == [
        "Xavier + sigmoid: the input's signal (each unit's spread over the samples) keeps over ×0.1 at layer 10",
        "Xavier + sigmoid keeps the gradient: layer 1's backward std over ×0.1 of layer 10's"]
    assert "sigmoid" in verdict.lecture_differs and all(CITE.fullmatch(p.cite) for p in verdict.parts)
    draws = finite_width_backward(results["he_relu"].config)
    assert draws.shape == (16, 10) and abs(np.log(draws[:, 0] / draws[:, -1]).mean()) < 0.3  # χ = 1: level


def test_gradient_kept_fails_where_the_backward_signal_is_not_the_theory_s(at_init):
    results, out = at_init
    shrinking = results["xavier_relu"].stat("backward_std")
    tampered = {**results, "he_relu": edited(results["he_relu"], stats={"backward_std": shrinking.tolist()})}
    verdict = CHECKS.get("gradient_kept")(tampered, out)
    got = outcomes(verdict)
    assert got["He + ReLU: the backward signal follows χ = 1 at every layer"] == "FAIL" and not verdict.passed
    assert got["He + ReLU keeps the gradient: layer 1's backward std over ×0.1 of layer 10's"] == \
        "CONTRADICTS THE LECTURE"


def bad_init_runs(tmp_path: Path, losses: dict[str, float], spread: float = 0.02) -> dict[str, RunResult]:
    """bad_init_training's three variants over 5 seeds: final train losses ``losses`` (× 1 ± ``spread`` by seed)."""
    with configs_context():
        spec = experiment("bad_init_training")
        configs = {label: compose("train", [f"experiment={spec.name}", *o]) for label, o in spec.variants.items()}
    results = {}
    for label, loss in losses.items():
        folder = tmp_path / label
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(configs[label], resolve=True))
        stats = {"activation_std": [0.5] * 10, "backward_std": [1e-4] * 10, "saturated_fraction": [0.0] * 10}
        seeds = []
        for seed in range(5):
            final = loss * (1 + spread * (seed - 2))
            metrics = [{"epoch": 1, "step": 11, "train_loss": final, "step_losses": [2 * final] + [final] * 10}]
            summary = {"status": "completed", "num_classes": 10, "steps": 11,
                       "final": {"train_loss": final, "train_accuracy": 0.5}}
            seeds.append(RunResult(label, folder, summary, metrics, [ProbeRecord(0, copy.deepcopy(stats))]))
        results[label] = replace(seeds[0], seeds=seeds)
    return results


def test_bad_inits_stall_and_xavier_trains(tmp_path):
    verdict = CHECKS.get("bad_init_trains")(bad_init_runs(tmp_path, {"xavier": 0.4, "small": 2.30, "large": 9.0}),
                                            tmp_path)
    assert verdict.passed and set(outcomes(verdict).values()) == {"PASS"} and len(verdict.parts) == 5
    assert all(CITE.fullmatch(p.cite) for p in verdict.parts)
    assert [p.cite for p in verdict.parts[1:]] == ["000:137, 001:82"] * 4


def test_a_bad_init_that_trains_contradicts_the_lecture_and_a_xavier_that_does_not_fails(tmp_path):
    trains = CHECKS.get("bad_init_trains")(bad_init_runs(tmp_path / "a", {"xavier": 0.4, "small": 0.3, "large": 9.0}),
                                           tmp_path)
    got = outcomes(trains)
    assert trains.passed  # a finding, not a failure of the setup
    assert got["with W ~ N(0, 0.01²) the net does not train: its loss stays over 95% of ln C"] == \
        "CONTRADICTS THE LECTURE"
    assert got["with W ~ N(0, 0.01²) it ends with a higher loss than Xavier"] == "CONTRADICTS THE LECTURE"
    stalled = CHECKS.get("bad_init_trains")(bad_init_runs(tmp_path / "b", {"xavier": 2.3, "small": 2.3, "large": 9.0}),
                                            tmp_path)
    assert outcomes(stalled)["Xavier's N(0, 1/fan_in), the reference, trains"] == "FAIL" and not stalled.passed
    assert math.isclose(stalled.parts[0].spread.mean, 0.5 * math.log(10) - 2.3, rel_tol=1e-6)


@pytest.mark.parametrize("name, number", [("bad_init_training", 29), ("init_gradient", 30)])
def test_new_experiments_compose_and_name_the_variants_their_check_reads(name, number):
    spec = experiment(name)
    assert spec.number == number and set(CHECKS.get(spec.check).reads) == set(spec.variants)
    with configs_context():
        cfgs = [compose("train", [f"experiment={name}", *o]) for o in spec.variants.values()]
    assert len({(c.activation.name, c.init.name, c.init.get("std")) for c in cfgs}) == len(cfgs)
    assert all(c.trainer.max_steps == (0 if name == "init_gradient" else None) for c in cfgs)
