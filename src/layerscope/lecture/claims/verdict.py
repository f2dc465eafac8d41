"""A claim's verdict: its statements (PASS, FAIL, CONTRADICTS THE LECTURE or, over seeds, INCONCLUSIVE), the
registry of checks, and the helpers the chapters share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from layerscope.lecture.claims.seeds import Spread, decide, effects
from layerscope.registry import Registry
from layerscope.runs.folder import probe_figure
from layerscope.runs.results import RunResult

PASS, FAIL, CONTRADICTS, INCONCLUSIVE = "PASS", "FAIL", "CONTRADICTS THE LECTURE", "INCONCLUSIVE"
OUTCOMES = (PASS, CONTRADICTS, INCONCLUSIVE, FAIL)


@dataclass(frozen=True)
class Part:
    """One statement of a claim and what the runs say of it: PASS, FAIL, CONTRADICTS THE LECTURE or INCONCLUSIVE;
    a statement decided over seeds has its effect's ``spread``."""

    statement: str
    outcome: str
    numbers: str
    spread: Spread | None = None
    cite: str = ""  # where the lecture notes say it: "<seed file>:<line>", e.g. "002:250, 003:88"


def part(statement: str, holds: bool, numbers: str, lecture: bool = False, cite: str = "") -> Part:
    """A statement that holds is PASS; one that does not is FAIL, or, for the lecture's own words that the
    experiment tests as they stand (``lecture``), a finding: CONTRADICTS THE LECTURE."""
    return Part(statement, PASS if holds else (CONTRADICTS if lecture else FAIL), numbers, cite=cite)


def over_seeds(statement: str, results: dict[str, RunResult], effect: Callable[[dict[str, RunResult]], float],
               numbers: str, lecture: bool = False, cite: str = "") -> Part:
    """A statement about an outcome of training, decided over the seeds by ``seeds.RULE``: ``effect`` of one seed's
    runs is positive where the statement holds; ``numbers`` describe the base seed's runs."""
    decided, spread = decide(effects(results, effect))
    outcome = INCONCLUSIVE if decided is None else PASS if decided else (CONTRADICTS if lecture else FAIL)
    return Part(statement, outcome, numbers, spread, cite)


def holds(parts: list[Part], *runs: RunResult) -> bool:
    """A claim holds when every run completed and none of its statements FAILs (a CONTRADICTS is a finding, an
    INCONCLUSIVE an open question)."""
    return all(r.status == "completed" for r in runs) and not any(p.outcome == FAIL for p in parts)


@dataclass
class Verdict:
    """The outcome of one claim: PASS/FAIL, the figures that decided it, and what they mean.

    ``parts`` splits the claim into its statements; a claim passes when none of them FAILs (a
    contradiction of the lecture is a finding, reported as such)."""

    passed: bool
    measured: str
    explanation: str
    figures: list[Path] = field(default_factory=list)
    lecture_differs: str | None = None
    theory_error: float | None = None  # max relative error of activation std vs theory, step 0
    parts: list[Part] = field(default_factory=list)


Check = Callable[[dict[str, RunResult], Path], Verdict]


CHECKS: Registry[Check] = Registry("check")


def check(*labels: str) -> Callable[[Check], Check]:
    """Register a check under its name, with the variant ``labels`` it reads by name (``reads``), so that an
    experiment whose variants lack one is refused when the experiments load, before anything trains."""
    def register(fn: Check) -> Check:
        fn.reads = labels
        return CHECKS.register(fn.__name__, fn)
    return register


def theory_error(result: RunResult) -> float | None:
    errors = result.theory("rel_error_activation_std")
    return float(np.nanmax(errors)) if np.isfinite(errors).any() else None


def first_figure(result: RunResult) -> list[Path]:
    first = probe_figure(result.run_dir, result.probes[0].step) if result.probes else None
    return [first] if first and first.exists() else []


def fmt(values: np.ndarray) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def ln_classes(result: RunResult) -> float:
    return math.log(result.summary.get("num_classes", 10))
