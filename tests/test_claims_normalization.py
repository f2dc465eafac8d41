"""The batch-norm checks on synthetic records: the measured outcome passes, and each statement turns when its
numbers do."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from layerscope.lecture.claims import CHECKS
from layerscope.probe.record import ProbeRecord
from layerscope.runs.results import RunResult

LAYERS, STEPS_PER_EPOCH, EPOCHS = 10, 11, 5
BASE = {"activation_std": np.full(LAYERS, 0.6), "backward_std": np.full(LAYERS, 1e-3),
        "backward_norm": np.full(LAYERS, 0.02), "weight_grad_norm": np.ones(LAYERS),
        "weight_norm": np.full(LAYERS, math.sqrt(2 * 128)), "dead_fraction": np.zeros(LAYERS)}


def run(tmp_path: Path, label: str, final: float, lr: float = 0.05, init: dict | None = None,
        diverged_at: int | None = None, probes: tuple[int, ...] = (0, 11, 22, 33, 44, 55), first: dict | None = None,
        last: dict | None = None) -> RunResult:
    """A run whose loss falls linearly from ln 10 to ``final`` over 55 steps; its probes carry ``BASE`` updated with
    ``first`` at step 0 and ``last`` at every later probe."""
    folder = tmp_path / label
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": {"depth": LAYERS, "width": 128}, "optimizer": {"name": "sgd", "lr": lr},
              "init": init or {"name": "he_normal"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    losses = np.linspace(math.log(10), final, STEPS_PER_EPOCH * EPOCHS)
    metrics = [{"epoch": e + 1, "step": STEPS_PER_EPOCH * (e + 1), "train_loss": float(losses[-1]),
                "step_losses": losses[STEPS_PER_EPOCH * e:STEPS_PER_EPOCH * (e + 1)].tolist()} for e in range(EPOCHS)]

    def stats(extra: dict | None) -> dict:
        return {k: np.asarray(v, dtype=float).tolist() for k, v in {**BASE, **(extra or {})}.items()}

    records = [ProbeRecord(step, stats(first if i == 0 else last)) for i, step in enumerate(probes)]
    summary = {"status": "diverged" if diverged_at is not None else "completed", "num_classes": 10,
               "final": {"train_loss": final, "test_accuracy": max(0.1, 1 - final / 2.5)},
               "diverged_at_step": diverged_at}
    return RunResult(label, folder, summary, metrics, records)


P, C, F = "PASS", "CONTRADICTS THE LECTURE", "FAIL"


def outcomes(name: str, results: dict[str, RunResult], tmp_path: Path) -> tuple[bool, list[str]]:
    """Whether the claim holds, and its statements' outcomes in order."""
    verdict = CHECKS.get(name)(results, tmp_path)
    return verdict.passed, [p.outcome for p in verdict.parts]


def dead(value: float) -> dict:
    return {"dead_fraction": np.full(LAYERS, value)}


def benefits(tmp_path: Path, **changed: RunResult) -> dict[str, RunResult]:
    """As measured: the plain net diverges at α = 0.5 after its units die, BN trains there; at α = 0.05 BN is
    slower."""
    runs = {"plain": run(tmp_path, "plain", 0.45, first=dead(0.06), last=dead(0.04)),
            "bn": run(tmp_path, "bn", 0.75),
            "plain_high": run(tmp_path, "plain_high", 2.4, lr=0.5, diverged_at=49, first=dead(0.06), last=dead(0.2)),
            "bn_high": run(tmp_path, "bn_high", 0.05, lr=0.5)}
    return {**runs, **changed}


def test_bn_benefits_as_measured_and_the_same_rate_finding(tmp_path):
    passed, parts = outcomes("bn_benefits", benefits(tmp_path), tmp_path)
    # plain at 0.5 does not train, BN does, faster than plain at 0.05; same rate: BN slower; units die, fewer with BN
    assert passed and parts == [P, P, P, C, P, P]
    assert "‖w‖² = 2.00" in CHECKS.get("bn_benefits")(benefits(tmp_path), tmp_path).lecture_differs


def test_bn_benefits_fails_where_the_plain_net_trains_at_the_high_rate(tmp_path):
    trains = run(tmp_path, "plain_high", 0.3, lr=0.5, first=dead(0.06), last=dead(0.2))
    passed, parts = outcomes("bn_benefits", benefits(tmp_path, plain_high=trains), tmp_path)
    assert not passed and parts[0] == F


def test_dead_units_are_read_before_the_divergence(tmp_path):
    """The probe at the diverging step reads a blown-up net (here: no unit dead); the one before it counts."""
    blown = run(tmp_path, "plain_high", 2.4, lr=0.5, diverged_at=55, first=dead(0.06), last=dead(0.2))
    blown.probes[-1].stats["dead_fraction"] = [0.0] * LAYERS
    assert outcomes("bn_benefits", benefits(tmp_path, plain_high=blown), tmp_path)[1][4:] == [P, P]
    more = run(tmp_path, "bn_high", 0.05, lr=0.5, last=dead(0.5))
    assert outcomes("bn_benefits", benefits(tmp_path, plain_high=blown, bn_high=more), tmp_path)[1][5] == C
    early = run(tmp_path, "plain_high", 2.4, lr=0.5, diverged_at=5, first=dead(0.06), last=dead(0.2))
    assert outcomes("bn_benefits", benefits(tmp_path, plain_high=early), tmp_path)[1][4:] == ["INCONCLUSIVE"] * 2
    # diverged before its first probe after step 0: nothing measured the units at that rate, not "none died"


SMALL, LARGE, XAVIER = ({"name": "normal", "std": 0.01}, {"name": "normal", "std": 1.0},
                        {"name": "xavier_normal", "gain": 1.0})


def backward(ratio: float) -> dict:
    """A backward norm whose layer 1 / layer 10 is ``ratio``, geometric between."""
    return {"backward_norm": 0.01 * ratio ** (1 - np.arange(LAYERS) / (LAYERS - 1))}


def inits(tmp_path: Path, **changed: RunResult) -> dict[str, RunResult]:
    """As measured: without BN the signal vanishes (N(0, 0.01²)) or explodes (N(0, 1)), with BN it stays level;
    final losses 2.30, 10.5, 0.46 without BN and 1.5, 1.1, 0.15 with it."""
    runs = {"small": run(tmp_path, "small", 2.302, init=SMALL, first=backward(3e-9), last=backward(3e-9)),
            "large": run(tmp_path, "large", 10.5, init=LARGE, first=backward(3500), last=backward(800)),
            "xavier": run(tmp_path, "xavier", 0.46, init=XAVIER, first=backward(0.4), last=backward(1.4))}
    for label, loss in (("small", 1.5), ("large", 1.1), ("xavier", 0.15)):
        init = runs[label].config["init"]
        runs[f"bn_{label}"] = run(tmp_path, f"bn_{label}", loss, init=init, first=backward(2.6), last=backward(2.2))
    return {**runs, **changed}


def test_bn_inits_as_measured(tmp_path):
    passed, parts = outcomes("bn_inits", inits(tmp_path), tmp_path)
    assert passed and parts == [P] * 6


def test_bn_inits_findings_and_a_setup_that_does_not_explode(tmp_path):
    lost = run(tmp_path, "bn_large", 1.1, init=LARGE, first=backward(2.6), last=backward(1e-3))
    passed, parts = outcomes("bn_inits", inits(tmp_path, bn_large=lost), tmp_path)
    assert passed and parts == [P, P, P, C, P, P]  # kept at step 0, lost by the last probe
    spread = run(tmp_path, "bn_large", 12.0, init=LARGE, first=backward(2.6), last=backward(2.2))
    assert outcomes("bn_inits", inits(tmp_path, bn_large=spread), tmp_path)[1][4] == C  # loss range 11.85 > 10.04
    tame = run(tmp_path, "large", 10.5, init=LARGE, first=backward(50), last=backward(50))
    passed, parts = outcomes("bn_inits", inits(tmp_path, large=tame), tmp_path)
    assert not passed and parts[:2] == [P, F]  # N(0, 1) no longer explodes: the setting fails, not the lecture
