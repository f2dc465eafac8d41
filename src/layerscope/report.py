"""The reproduction table (terminal) and ``REPORT.md`` with every figure embedded."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from layerscope.claims import Verdict


def _verdict(v: Verdict) -> str:
    return "PASS" if v.passed else "FAIL"


def _error(v: Verdict) -> str:
    return f"{v.theory_error:.1%}" if v.theory_error is not None else "–"


def print_table(rows: list) -> None:
    """One block per experiment: number, title, verdict, theory error, claim and measurement."""
    print(f"\n{'#':>2}  {'experiment':34s} {'verdict':7s} {'theory err':10s} measured")
    for experiment, verdict, _ in rows:
        print(f"{experiment.number:>2}  {experiment.title:34s} {_verdict(verdict):7s} {_error(verdict):10s} "
              f"{verdict.measured}")
        for line in textwrap.wrap(f"claim: {experiment.claim}", 100):
            print(f"    {line}")
    passed = sum(v.passed for _, v, _ in rows)
    print(f"\n{passed} of {len(rows)} claims pass")


def write_report(rows: list, out: Path) -> Path:
    """Write ``out/REPORT.md``: the summary table, then each experiment with its figures."""
    lines = ["# layerscope: the lecture experiments, reproduced", "",
             "Every figure below was computed by `make reproduce` from the runs in this folder; every verdict "
             "compares the runs' recorded statistics with the mean-field theory or with another run.", "",
             "| # | experiment | claim | measured | theory error | verdict |", "|---|---|---|---|---|---|"]
    for experiment, verdict, _ in rows:
        lines.append(f"| {experiment.number} | {experiment.title} | {experiment.claim} | {verdict.measured} | "
                     f"{_error(verdict)} | **{_verdict(verdict)}** |")
    for experiment, verdict, results in rows:
        lines += ["", f"## {experiment.number}. {experiment.title} — {_verdict(verdict)}", "",
                  f"**Claim.** {experiment.claim}", "", f"**Measured.** {verdict.measured}", "", verdict.explanation]
        if verdict.lecture_differs:
            lines += ["", f"**Where the measurement differs from the lecture.** {verdict.lecture_differs}"]
        runs = ", ".join(f"`{label}`: {r.status}" for label, r in results.items())
        lines += ["", f"Runs (`layerscope experiment={experiment.name}` plus the variant's overrides): {runs}. "
                      f"Theory error: the largest relative error of the measured activation std against the "
                      f"mean-field prediction at step 0: {_error(verdict)}."]
        for figure in verdict.figures:
            lines += ["", f"![{experiment.title}]({os.path.relpath(figure, out)})"]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
