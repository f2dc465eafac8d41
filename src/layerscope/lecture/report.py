"""REPORT.md of ``make reproduce``, built from every experiment's saved verdict (``<out>/<name>/verdict.json``), so a
run of some experiments updates their sections and keeps the others'."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from layerscope.files import write_json_atomic, write_text
from layerscope.lecture.claims import FAIL, OUTCOMES, PASS, Part, Verdict
from layerscope.lecture.claims.seeds import RULE, SEEDS, Spread, false_decision_rate
from layerscope.runs.results import RunResult

if TYPE_CHECKING:
    from layerscope.lecture.experiments import Experiment

VERDICT = "verdict.json"
NOT_RUN = "NOT RUN"
SPELLED = 12  # a section names each variant's status up to this many variants, else counts them
KEYS = ("passed", "claim", "measured", "explanation", "lecture_differs", "statements", "figures", "runs",
        "theory_error", "size", "base_seed", "finished")
"""What a saved verdict holds beside the experiment's name, number and title (one lacking any is not shown)."""


def utc_now() -> str:
    """The time now, UTC, to the second, as a saved verdict records when its experiment finished."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def outcome_word(experiment: Experiment, outcome: str) -> str:
    """A statement's outcome as its section shows it: a paper's experiment contradicts the paper, not the lecture."""
    return _word(outcome, experiment.set == "papers")


def _word(outcome: str, paper: bool) -> str:
    return outcome.replace("THE LECTURE", "THE PAPER") if paper else outcome


def outcome_counts(statements: list[tuple[Experiment, str]]) -> str:
    """How many of ``statements`` ((experiment, outcome) pairs) end in each outcome, as the sections word them:
    "2 PASS, 0 CONTRADICTS THE LECTURE, 1 CONTRADICTS THE PAPER, 0 INCONCLUSIVE, 0 FAIL" (each set's word where a
    statement of that set is counted)."""
    words = [outcome_word(e, o) for e, o in statements]
    papers = {e.set == "papers" for e, _ in statements} or {False}
    shown = dict.fromkeys(_word(o, paper) for o in OUTCOMES for paper in (False, True) if paper in papers)
    return ", ".join(f"{words.count(w)} {w}" for w in shown)


def verdict_word(passed: bool) -> str:
    """PASS or FAIL: a claim's verdict."""
    return PASS if passed else FAIL


def net_size(results: dict[str, RunResult]) -> str | None:
    """depth×width of the first run's net (None without a run or its config)."""
    model = next(iter(results.values())).config.get("model", {}) if results else {}
    return f"{model['depth']}×{model['width']}" if "depth" in model and "width" in model else None


def record(experiment: Experiment, verdict: Verdict, results: dict[str, RunResult], out: Path, base_seed: int,
           finished: str) -> dict:
    """What the experiment's section and table rows need, as plain data (figures relative to ``out``)."""
    return {"name": experiment.name, "number": experiment.number, "title": experiment.title,
            "claim": experiment.claim, "passed": verdict.passed, "measured": verdict.measured,
            "explanation": verdict.explanation, "lecture_differs": verdict.lecture_differs,
            "statements": [dataclasses.asdict(p) for p in verdict.parts],
            "figures": [os.path.relpath(f, out) for f in verdict.figures],
            "runs": {label: r.status for label, r in results.items()}, "theory_error": verdict.theory_error,
            "size": net_size(results), "base_seed": base_seed, "finished": finished}


def save(saved: dict, out: Path) -> Path:
    """Write ``out/<name>/verdict.json``, replacing it whole."""
    path = out / saved["name"] / VERDICT
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, saved)
    return path


def forget(name: str, out: Path) -> None:
    """Remove the experiment's saved verdict: its runs are being replaced, so it no longer describes them."""
    (out / name / VERDICT).unlink(missing_ok=True)


def load(name: str, out: Path) -> dict | None:
    """The experiment's saved verdict; None when it has none (or an unreadable or incomplete one)."""
    try:
        saved = json.loads((out / name / VERDICT).read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and all(k in saved for k in KEYS) else None


def sections(experiments: list[Experiment], out: Path) -> list[tuple[Experiment, dict | None]]:
    """Every experiment with its saved verdict (None: never run), in lecture order."""
    return [(e, load(e.name, out)) for e in sorted(experiments, key=lambda e: e.number)]


def _spread(saved: dict | None) -> Spread | None:
    return None if saved is None else Spread(**{k: math.nan if v is None else v for k, v in saved.items()})


def parts(saved: dict) -> list[Part]:
    """The saved statements as ``Part``s (a claim not split: the claim itself, with the claim's verdict)."""
    return ([Part(**{**p, "spread": _spread(p.get("spread"))}) for p in saved["statements"]]
            or [Part(saved["claim"], verdict_word(saved["passed"]), saved["measured"])])


def _notes(p: Part) -> str:
    return p.cite or "–"


def _over_seeds(p: Part) -> str:
    """The over-seeds cell: mean ± std, n and agreement of the effect; – for a statement decided once."""
    return "–" if p.spread is None else p.spread.text()


def _error(saved: dict) -> str:
    return "–" if saved["theory_error"] is None else f"{saved['theory_error']:.1%}"


def _when(saved: dict) -> str:
    """``2025-01-31 12:00:00 UTC`` from the saved ISO time."""
    return saved["finished"].replace("T", " ").replace("Z", " UTC")


def header() -> list[str]:
    """The report's opening paragraphs, down to the summary table's head."""
    return ["# layerscope: the lecture experiments and the papers behind them, reproduced", "",
            "Every figure below was computed by `make reproduce` from the runs in this folder; every verdict "
            "compares the runs' recorded statistics with the mean-field theory or with another run. "
            "`make reproduce ONLY=<name>` reruns one experiment and rewrites its section; the others keep theirs.",
            "",
            "Each claim is split into its statements, each checked on its own: PASS, FAIL, or CONTRADICTS THE "
            "LECTURE where the lecture's words are tested as they stand and the measurement says otherwise (a "
            "finding, explained in the experiment's section; a claim fails only on a FAIL). A statement's notes "
            "give the lines of the lecture notes it checks (`002:250`: file 002, line 250).", "",
            "Trained experiments use the net size in their yaml (10×128 for most) so that `make reproduce` fits a "
            "few minutes on 2 CPU cores, while the probe-only initialization experiments use the lecture's 10×500; "
            "each section's runs line gives its net size.", "",
            "The last sections reproduce the papers behind the lecture (`make reproduce ONLY=papers`; "
            "`ONLY=lecture` runs the lecture's set alone): each names its setup and where it departs from the paper, "
            "and a statement the runs do not bear out is marked CONTRADICTS THE PAPER (counted with the lecture's "
            "contradictions below).", "",
            f"**Over seeds.** {RULE} On pure noise (an effect whose seeds are a coin flip) this rule decides "
            f"{false_decision_rate():.0%} of the time with {SEEDS} seeds, so a verdict on a small effect is worth "
            f"checking with another base seed (`make reproduce SEED=N` moves every experiment's seeds by N; each "
            f"section says which base seed it ran with). A statement about the network at initialization, "
            f"toleranced by the mean-field theory or its finite-width spread, and a deterministic simulation are "
            f"decided once, on the base seed (–).", "",
            "| # | experiment | statement | notes | measured (base seed) | over seeds: effect | verdict |",
            "|---|---|---|---|---|---|---|"]


def table(shown: list[tuple[Experiment, dict | None]]) -> list[str]:
    """The summary table's rows: one per statement, one for an experiment never run."""
    rows = []
    for experiment, saved in shown:
        if saved is None:
            rows.append(f"| {experiment.number} | {experiment.title} | not run yet | – | – | – | **{NOT_RUN}** |")
        for p in parts(saved) if saved else []:
            rows.append(f"| {experiment.number} | {experiment.title} | {p.statement} | {_notes(p)} | {p.numbers} | "
                        f"{_over_seeds(p)} | **{outcome_word(experiment, p.outcome)}** |")
    return rows


def counts(shown: list[tuple[Experiment, dict | None]]) -> str:
    """The counts line: every section's claim (passing, failing, not run) and the statements of those run."""
    ran = [saved for _, saved in shown if saved]
    passed = sum(saved["passed"] for saved in ran)
    outcomes = [(experiment, p.outcome) for experiment, saved in shown if saved for p in parts(saved)]
    return (f"{len(shown)} claims: {passed} pass, {len(ran) - passed} fail, {len(shown) - len(ran)} not run; "
            f"their {len(outcomes)} statements: {outcome_counts(outcomes)}.")


def not_run(experiment: Experiment, rerun: str) -> list[str]:
    """The section of an experiment with no saved verdict: one line saying how to run it."""
    return ["", f"## {experiment.number}. {experiment.title} — {NOT_RUN}", "",
            f"Not run yet: `{rerun.replace('{name}', experiment.name)}` runs it and fills this section."]


def section(experiment: Experiment, saved: dict) -> list[str]:
    """An experiment's section from its saved verdict: claim, statements with notes, explanation, runs, figures."""
    paper = experiment.set == "papers"
    lines = ["", f"## {experiment.number}. {experiment.title} — {verdict_word(saved['passed'])}", "",
             f"Last run {_when(saved)}, base seed {saved['base_seed']}.", "",
             f"**{'The paper says' if paper else 'Claim'}.** {saved['claim']}", ""]
    if experiment.setup:
        lines += [f"**Setup.** {experiment.setup}", "", f"**Deviations from the paper.** {experiment.deviations}", ""]
    lines += [f"**Measured.** {saved['measured']}", ""]
    shown = parts(saved) if saved["statements"] else []
    lines += [f"- **{outcome_word(experiment, p.outcome)}**: {p.statement} ({p.numbers}" + (f"; effect over seeds {p.spread.text()}"
              if p.spread else "") + f"); notes: {_notes(p)}" for p in shown] + [""] * bool(shown)
    lines += [saved["explanation"]]
    if saved["lecture_differs"]:
        lines += ["", f"**Where the measurement differs from the {'paper' if paper else 'lecture'}.** "
                      f"{saved['lecture_differs']}"]
    return lines + ["", _runs(experiment, saved)] + [line for figure in saved["figures"]
                                                 for line in ("", f"![{experiment.title}]({figure})")]


def _runs(experiment: Experiment, saved: dict) -> str:
    """The runs line: the command, the net's size, each variant's status, the theory error."""
    statuses = list(saved["runs"].values())
    runs = (", ".join(f"`{label}`: {status}" for label, status in saved["runs"].items()) if len(statuses) <= SPELLED
            else f"{len(statuses)} variants, " + ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses)))
    net = f" on a {saved['size']} net (depth × width)" if saved["size"] else ""
    where = (f"Runs (`layerscope experiment={experiment.name}` plus the variant's overrides){net}: {runs}."
             if runs else "No MLP runs: a small simulation or the losses' own formulas decide it.")
    return (where + " Theory error: the largest relative error of the measured activation std against the "
            f"mean-field prediction at step 0: {_error(saved)}.")


def write_report(shown: list[tuple[Experiment, dict | None]], out: Path, rerun: str) -> Path:
    """Write ``out/REPORT.md`` from ``shown`` (``sections``); ``rerun`` is the command that runs an experiment
    (``{name}`` in it)."""
    lines = header() + table(shown) + ["", counts(shown)]
    for experiment, saved in shown:
        lines += section(experiment, saved) if saved else not_run(experiment, rerun)
    path = out / "REPORT.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
