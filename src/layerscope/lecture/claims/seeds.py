"""Statements about outcomes of training, decided over seeds: a loss, an accuracy, a gap or the steps to a level
vary from seed to seed, so one seed's comparison can be luck. The decision rule lives here, once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

SEEDS = 5
"""The seeds each training experiment runs (the base seed and the next four): every statement about an outcome of
training is decided over all of them."""
AGREEMENT = 0.8
"""The share of seeds whose effect must have the mean's sign."""
STUDENT_T = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}
"""How far from 0 the mean effect of n seeds must lie, in standard errors: Student's t two-sided 5% critical value
with n − 1 degrees of freedom (a paired t-test at the 5% level); 2.0 beyond 10 seeds."""


def standard_errors(n: int) -> float:
    """The critical distance of the mean effect of ``n`` seeds, in standard errors (``STUDENT_T``)."""
    return STUDENT_T.get(n, 2.0 if n > 10 else 0.0)


RULE = (f"A statement about an outcome of training is decided over {SEEDS} seeds on its effect, the paired "
        f"difference of the two variants with the same seed (two losses: the log of their ratio) or the distance "
        f"from a stated level, positive where the statement holds. It is decided (PASS where the effect is positive; FAIL, or CONTRADICTS THE LECTURE for "
        f"the lecture's own words, where negative) only when the effect has one sign on at least {AGREEMENT:.0%} of "
        f"the seeds and its mean lies beyond {standard_errors(SEEDS):g} standard errors of 0 (a paired t-test at the "
        f"5% level); otherwise it is INCONCLUSIVE. An infinite effect (a level never reached) counts as twice the "
        f"largest finite one (±1 when none is finite); a seed whose effect is undefined (NaN) agrees with neither sign; an effect of exactly 0 "
        f"on every seed (a tie) does not hold.")


@dataclass(frozen=True)
class Spread:
    """A statement's effect over seeds: mean, sample standard deviation, seeds, and seeds of the mean's sign."""

    mean: float
    std: float
    n: int
    agree: int

    def text(self) -> str:
        """``+0.12 ± 0.03 over 5 seeds, 5 of 5 agree``."""
        return f"{self.mean:+.3g} ± {self.std:.2g} over {self.n} seeds, {self.agree} of {self.n} agree"


def _bounded(values: np.ndarray) -> np.ndarray:
    """``values`` with ±inf as ±twice the largest finite magnitude (1 when none is finite); NaN kept."""
    finite = values[np.isfinite(values)]
    bound = 2 * float(np.abs(finite).max()) if len(finite) and np.abs(finite).max() > 0 else 1.0
    return np.where(np.isinf(values), np.sign(values) * bound, values)


def _rule(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rule on rows of per-seed effects (NaN: undefined): each row's mean, std, seeds agreeing, decided."""
    known = (~np.isnan(values)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(known[:, None] > 0, values, 0.0), 1)
        squares = np.nansum((values - mean[:, None]) ** 2, 1)
        std = np.sqrt(squares / np.maximum(known - 1, 1)) * (known > 1)
        sign = np.sign(mean)
        agree = np.where(sign != 0, (np.sign(values) == sign[:, None]).sum(1), 0)
        critical = np.array([standard_errors(int(k)) for k in known])
        clear = (sign != 0) & (agree >= AGREEMENT * values.shape[1]) & (
            np.abs(mean) > critical * std / np.sqrt(np.maximum(known, 1)))
        clear |= (known == values.shape[1]) & (mean == 0) & (std == 0)  # a tie on every seed: not a strict effect
    return mean, std, agree, clear


def decide(effects: list[float]) -> tuple[bool | None, Spread]:
    """The rule (``RULE``) on per-seed effects: True (holds), False (the opposite holds) or None (inconclusive),
    with the spread."""
    values = _bounded(np.asarray(effects, dtype=float))
    mean, std, agree, clear = (x[0] for x in _rule(values[None]))
    return (bool(mean > 0) if clear else None), Spread(float(mean), float(std), len(values), int(agree))


def false_decision_rate(n: int = SEEDS, draws: int = 20000) -> float:
    """How often the rule decides (PASS or its opposite) on pure noise: n seeds of a zero-mean normal effect."""
    return float(_rule(np.random.default_rng(0).standard_normal((draws, n)))[3].mean())


def each_seed(results: dict) -> list[dict]:
    """The runs of each seed, {variant: its run with that seed}, the base seed first (a run without ``seeds``: one)."""
    seeds = {label: getattr(r, "seeds", None) or [r] for label, r in results.items()}
    n = min(len(runs) for runs in seeds.values())
    return [{label: runs[i] for label, runs in seeds.items()} for i in range(n)]


def lower(value: float, than: float) -> float:
    """The effect "``value`` is lower than ``than``" for two losses (or other positive sizes): log(than / value).
    Losses span orders of magnitude and their seed-to-seed noise scales with them, so two are compared by ratio."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log(np.float64(than) / np.float64(value)))


def effects(results: dict, effect: Callable[[dict], float]) -> list[float]:
    """``effect`` of each seed's runs."""
    return [float(effect(runs)) for runs in each_seed(results)]
