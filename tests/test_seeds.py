"""Statements about outcomes of training decided over seeds: the rule, its near misses, a coin flip and a clear
effect trained for real, and the base seed that moves every experiment's seeds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from layerscope.lecture.claims.seeds import AGREEMENT, SEEDS, decide, false_decision_rate, standard_errors
from layerscope.lecture.claims.verdict import CONTRADICTS, FAIL, INCONCLUSIVE, PASS, over_seeds
from layerscope.lecture.experiments import load_experiments
from layerscope.lecture.reproduce import run_experiment
from layerscope.paths import config_dir
from layerscope.runs.results import RunResult
from layerscope.train.group import train_group

TINY = ["data=spirals", "model.depth=3", "model.width=16", "trainer.max_steps=40", "probe.every=40",
        "probe.figures=false", "trainer.progress=false"]


def test_a_clear_effect_is_decided_either_way_and_noise_mostly_is_not():
    assert decide([0.9, 1.1, 1.0, 1.2, 0.8])[0] is True
    assert decide([-0.9, -1.1, -1.0, -1.2, -0.8])[0] is False
    assert decide([0.0] * SEEDS)[0] is False  # a tie on every seed: "A beats B" does not hold
    assert false_decision_rate() <= 0.05  # a coin flip over 5 seeds: at most the t-test's 5%
    assert all(false_decision_rate(n) <= 0.055 for n in (3, 8, 10, 20))


def test_near_misses_of_the_decision_rule():
    z = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # mean 0, sample std 0.79: 2.776 standard errors = 0.981
    boundary = standard_errors(5) * z.std(ddof=1) / np.sqrt(len(z))
    beyond, within = decide(list(boundary + 0.005 + z)), decide(list(boundary - 0.005 + z))
    assert beyond[0] is True and within[0] is None and beyond[1].agree == within[1].agree == 4
    assert standard_errors(5) == 2.776 and standard_errors(1) == 0.0  # one seed: its sign alone
    assert AGREEMENT * 10 == 8  # 8 of 10 seeds of one sign is enough, 7 of 10 is not, however far the mean lies:
    assert decide([1.0] * 8 + [-0.01] * 2)[0] is True and decide([1.0] * 7 + [-0.01] * 3)[0] is None
    assert decide([1.0, 1.1, 0.9, 1.2, -0.1])[0] is True  # 4 of 5
    assert decide([1.0, 1.0, 1.0, 1.0, np.nan])[0] is True  # an undefined seed agrees with neither sign
    assert decide([1.0, 1.0, 1.0, np.nan, np.nan])[0] is None
    assert decide([0.1, 0.1, 0.1, 0.1, 10.0])[0] is None  # every sign agrees, the spread swamps the mean
    spread = decide([np.inf, 1.0, 1.2, 0.9, 1.1])[1]  # a level never reached: twice the largest finite effect
    assert spread.mean == pytest.approx((2.4 + 4.2) / 5) and spread.agree == 5


def _runs(values: list[float]) -> dict[str, RunResult]:
    """One variant whose seeds recorded the final train losses ``values``."""
    runs = [RunResult("a", None, {"status": "completed", "final": {"train_loss": v}}) for v in values]
    runs[0].seeds.extend(runs)
    return {"a": runs[0]}


@pytest.mark.parametrize("losses, lecture, outcome", [
    ([0.1, 0.2, 0.1, 0.15, 0.12], False, PASS),
    ([0.9, 0.8, 1.0, 0.95, 0.85], False, FAIL),
    ([0.9, 0.8, 1.0, 0.95, 0.85], True, CONTRADICTS),
    ([0.3, 0.7, 0.6, 0.4, 0.55], True, INCONCLUSIVE),
])
def test_a_statement_over_seeds_has_its_outcome_and_spread(losses, lecture, outcome):
    part = over_seeds("it learns", _runs(losses), lambda r: 0.5 - r["a"].final("train_loss"), "base numbers",
                      lecture=lecture)
    assert part.outcome == outcome and part.numbers == "base numbers"
    assert part.spread.n == 5 and part.spread.mean == pytest.approx(0.5 - np.mean(losses))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three variants of 5 seeds, one stacked group: ``a`` and its twin ``b`` (seeds 100-104), and ``still``
    (lr 1e-9: it barely moves)."""
    folder = tmp_path_factory.mktemp("seeds")
    plan = [("a", s, []) for s in range(5)] + [("b", 100 + s, []) for s in range(5)]
    plan += [("still", s, ["optimizer.lr=1e-9"]) for s in range(5)]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfgs = [compose("train", overrides=[*TINY, f"trainer.seed={seed}", *extra]) for _, seed, extra in plan]
    dirs = [folder / f"{label}-{seed}" for label, seed, _ in plan]
    train_group(cfgs, dirs)
    results: dict[str, RunResult] = {}
    for (label, _, _), run_dir in zip(plan, dirs):
        result = RunResult.load(run_dir, label)
        results.setdefault(label, result).seeds.append(result)
    return results


def test_two_identical_configs_with_other_seeds_are_a_coin_flip_never_decided(trained):
    part = over_seeds("a trains better than its twin", trained,
                      lambda r: r["b"].final("train_loss") - r["a"].final("train_loss"), "", lecture=True)
    assert part.outcome == INCONCLUSIVE, part.spread


def test_a_clear_effect_passes_with_five_seeds(trained):
    part = over_seeds("a trains better than a net that never moves", trained,
                      lambda r: r["still"].final("train_loss") - r["a"].final("train_loss"), "")
    assert part.outcome == PASS and part.spread.n == 5 and part.spread.agree == 5


def test_a_base_seed_moves_every_seed_of_an_experiment(tmp_path):
    spec = load_experiments(["exploding_gradient"])[0]
    experiment = replace(spec, variants={label: [*o, *TINY] for label, o in spec.variants.items()}, seeds=3)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        results = run_experiment(experiment, tmp_path, base_seed=100)
    for label, result in results.items():
        assert [r.config["trainer"]["seed"] for r in result.seeds] == [100, 101, 102]
        assert [r.run_dir.relative_to(tmp_path).as_posix() for r in result.seeds] == [
            f"exploding_gradient/{label}", f"exploding_gradient/seeds/{label}-seed101",
            f"exploding_gradient/seeds/{label}-seed102"]
