"""The experiment files of experiments/ as ``make reproduce`` reads them: each one's ``reproduce`` section (its claim,
check, variants or grid, set) as an ``Experiment``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerscope.errors import ConfigError
from layerscope.files import load_yaml
from layerscope.lecture import ravine, saddle
from layerscope.lecture.claims import CHECKS
from layerscope.lecture.claims.seeds import SEEDS
from layerscope.paths import config_dir


@dataclass(frozen=True)
class Experiment:
    """One lecture experiment: its file name, number, title, claim, check and variants."""

    name: str
    number: int
    title: str
    claim: str
    check: str
    variants: dict[str, list[str]]
    simulate: str | None = None  # a 2-D simulation recorded before the check (``SIMULATIONS``)
    seeds: int = SEEDS  # seeds of a variant that trains (``reproduce.seeds``: 1 where no statement is about chance)
    set: str = "lecture"  # lecture: the lecture's claims; papers: a figure of a paper behind it (``SETS``)
    setup: str = ""  # a paper's experiment: what runs, and where it departs from the paper
    deviations: str = ""


SETS = ("lecture", "papers")
"""``make reproduce ONLY=lecture`` or ``ONLY=papers`` runs one set (``reproduce.set``, lecture by default)."""


SIMULATIONS = {"ravine": ravine.simulate, "saddle": saddle.simulate}
"""The 2-D problems an experiment can record beside (or instead of) its MLP runs."""


def experiments_dir() -> Path:
    """The ``experiment`` config group (``experiments/`` in a checkout)."""
    return Path(config_dir()) / "experiment"


def load_experiments(only: list[str] | None = None, size: str = "cpu") -> list[Experiment]:
    """Every experiment file with a ``reproduce`` section, in lecture order (or just ``only``: names or sets); at
    ``size`` paper, an experiment with a ``reproduce.paper`` section runs its grid and overrides."""
    found = []
    for path in sorted(experiments_dir().glob("*.yaml")):
        spec = load_yaml(path).get("reproduce")
        if spec:
            if size == "paper" and "paper" in spec:
                spec = {**spec, "grid": spec["paper"]["grid"], "overrides": spec["paper"].get("overrides", [])}
            variants = grid_variants(spec["grid"], spec.get("overrides", [])) if "grid" in spec else spec.get(
                "variants", {"run": []})  # {}: nothing to train (a 2-D simulation)
            if spec.get("set", SETS[0]) not in SETS:
                raise ConfigError(f"{path}: reproduce.set={spec['set']} is not a set; choose one of: {', '.join(SETS)}")
            missing = [label for label in CHECKS.get(spec["check"]).reads if label not in variants]
            if missing:
                raise ConfigError(f"{path}: check {spec['check']} reads the variant(s) {', '.join(missing)}, which "
                                  f"reproduce.variants does not define; add them or fix the labels")
            if spec.get("simulate") not in (None, *SIMULATIONS):
                raise ConfigError(f"{path}: reproduce.simulate={spec['simulate']} is not a simulation; choose one "
                                  f"of: {', '.join(SIMULATIONS)}")
            if not isinstance(spec.get("seeds", SEEDS), int) or spec.get("seeds", SEEDS) < 1:
                raise ConfigError(f"{path}: reproduce.seeds={spec['seeds']} is not a number of seeds; give an "
                                  f"integer >= 1 (default {SEEDS})")
            found.append(Experiment(path.stem, spec["number"], spec["title"], spec["claim"], spec["check"],
                                    {str(k): list(v) for k, v in variants.items()}, spec.get("simulate"),
                                    spec.get("seeds", SEEDS), spec.get("set", SETS[0]), spec.get("setup", ""),
                                    spec.get("deviations", "")))
    names = [e.name for e in found]
    for name in only or []:
        if name not in names and name not in SETS:
            raise ConfigError(f"ONLY={name} is not an experiment or a set; choose from: {', '.join(SETS)}, "
                              f"{', '.join(names)}")
    return sorted((e for e in found if not only or e.name in only or e.set in only), key=lambda e: e.number)


def grid_variants(grid: dict[str, list], overrides: list[str] = ()) -> dict[str, list[str]]:
    """``reproduce.grid`` (override key -> values) as variants, one per combination, labelled by its overrides:
    ``{model.depth: [10, 20], init.gain: [1, 2]}`` -> ``model.depth=10,init.gain=1``: [model.depth=10, init.gain=1],
    ...; ``overrides`` go before each."""
    combinations = [[]]
    for key, values in grid.items():
        combinations = [done + [f"{key}={value}"] for done in combinations for value in values]
    return {",".join(cell): [*overrides, *cell] for cell in combinations}
