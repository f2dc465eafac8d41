"""The sweep report: one table row per job and comparison figures, from a (partial) sweep folder.

Written by a Hydra callback when a multirun ends, and by ``layerscope-report <sweep folder>``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from layerscope.files import write_text
from layerscope.probe.figures import render
from layerscope.errors import ConfigError
from layerscope.runs.folder import FINAL, PROBES, SUMMARY
from layerscope.runs.job_names import job_number, recorded_overrides
from layerscope.runs.results import RunResult
from layerscope.runs.tables import cell, write_csv

LAYER_STATS = ("activation_std", "backward_norm")
LAYER_LABELS = {"activation_std": "activation std", "backward_norm": "backward signal ‖dL/da‖"}
MAX_LEGEND = 16
SEED = "trainer.seed"
COLUMNS = sorted(FINAL, key=lambda metric: metric.endswith("accuracy"))  # losses, then accuracies (SWEEP.md)


@dataclass
class Job:
    """One job folder of a sweep: its number, its overrides and what it recorded."""

    number: str
    overrides: list[str]  # those that differ between the sweep's jobs
    result: RunResult

    @property
    def label(self) -> str:
        """The overrides that name this job (or its number)."""
        return " ".join(self.overrides) or f"job {self.number}"

    @property
    def diverged(self) -> bool:
        """Whether its loss became NaN or inf: then its curves do not set a figure's y-range."""
        return self.result.status == "diverged"

    @property
    def note(self) -> str:
        """Why it did not complete, in one line: its error's first line, or 'diverged at step N'; '' otherwise."""
        summary = self.result.summary
        if summary.get("error"):
            return str(summary["error"]).splitlines()[0]
        step = summary.get("diverged_at_step")
        return "" if step is None else f"diverged at step {step}"


def common_overrides(sweep_dir: Path) -> list[str]:
    """The overrides every job of the sweep shares (from Hydra's multirun.yaml when present)."""
    per_job = [_overrides(d) for d in _job_folders(sweep_dir)]
    return [o for o in per_job[0] if all(o in other for other in per_job[1:])] if per_job else []


def _overrides(folder: Path) -> list[str]:
    return recorded_overrides(folder) or []


def _number(folder: Path) -> int | None:
    """A job folder's number: Hydra's ``hydra.job.num`` (folders are named by their swept overrides), or its name
    when that is a number (a folder made by hand, or ``hydra.sweep.subdir='${hydra.job.num}'``)."""
    number = job_number(folder)
    return int(folder.name) if number is None and folder.name.isdigit() else number


def _job_folders(sweep_dir: Path) -> list[Path]:
    folders = [d for d in sweep_dir.iterdir() if d.is_dir() and ((d / ".hydra").is_dir() or (d / SUMMARY).exists())]
    numbers = {d: _number(d) for d in folders}
    return sorted(folders, key=lambda d: (numbers[d] is None, numbers[d] or 0, d.name))


def collect(sweep_dir: Path) -> list[Job]:
    """Every job folder (holding ``.hydra/`` or ``summary.json``) in job-number order."""
    jobs = []
    common = set(common_overrides(sweep_dir))
    for folder in _job_folders(sweep_dir):
        overrides = [o for o in _overrides(folder) if o not in common]
        result = RunResult.load(folder, folder.name)
        number = _number(folder)
        jobs.append(Job(folder.name if number is None else str(number), overrides, result))
    return jobs


def _layers(result: RunResult, stat: str, probe: int) -> list[float]:
    return result.stat(stat, probe).tolist() if result.probes else []


def row(job: Job) -> dict[str, Any]:
    """The job's table row: overrides, status, final metrics and per-layer stats at first and last probe."""
    summary = job.result.summary
    out: dict[str, Any] = {"job": job.number, "overrides": job.label, "status": job.result.status,
                           "steps": summary.get("steps"), "diverged_at_step": summary.get("diverged_at_step"),
                           "error": summary.get("error", "")}
    out.update({k: summary.get("final", {}).get(k) for k in FINAL})
    for stat in LAYER_STATS:
        for which, probe in (("first", 0), ("last", -1)):
            for layer, value in enumerate(_layers(job.result, stat, probe), start=1):
                out[f"{stat}_{which}_layer_{layer:02d}"] = value
    return out


def _span(values: list[float]) -> str:
    return f"{values[0]:.3g} → {values[-1]:.3g}" if values else "–"


def markdown(jobs: list[Job], sweep_dir: Path, seeds: list[dict[str, Any]] | None = None) -> str:
    """SWEEP.md: counts by status, the table, the table over seeds (``seed_row``s, if any), and the figures."""
    common = " ".join(common_overrides(sweep_dir)) or "none"
    lines = [f"# Sweep {sweep_dir}", "", tally(jobs),
             "", f"Overrides shared by every job: `{common}`", "",
             "| job | overrides | status | steps | " + " | ".join(_heading(key) for key in COLUMNS)
             + " | activation std L1 → Ln, first probe | last probe | backward norm L1 → Ln, first | last | note |",
             "|---|---|---|---|" + "---|" * len(COLUMNS) + "---|---|---|---|---|"]
    for job in jobs:
        r = job.result
        lines.append(
            f"| {job.number} | `{' '.join(job.overrides)}` | {r.status} | {cell(r.summary.get('steps'))} | "
            + " | ".join(cell(r.final(key)) for key in COLUMNS) + " | "
            f"{_span(_layers(r, 'activation_std', 0))} | {_span(_layers(r, 'activation_std', -1))} | "
            f"{_span(_layers(r, 'backward_norm', 0))} | {_span(_layers(r, 'backward_norm', -1))} | "
            f"{job.note.replace('|', '/')} |")
    lines += ["", *seeds_markdown(seeds)] if seeds else []
    lines += ["", "![per-layer statistics](sweep_layers.png)", "", "![loss curves](sweep_loss.png)", ""]
    return "\n".join(lines)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def varies_seed(jobs: list[Job]) -> bool:
    """Whether the sweep's jobs differ in ``trainer.seed``."""
    return any(_key(o) == SEED for job in jobs for o in job.overrides)


@dataclass
class Configuration:
    """The jobs of a sweep that differ only in ``trainer.seed``; one job when the sweep keeps the seed."""

    overrides: list[str]
    jobs: list[Job]

    @property
    def label(self) -> str:
        """Its overrides (one job's label when it is alone)."""
        return self.jobs[0].label if len(self.jobs) == 1 else " ".join(self.overrides) or "every job"

    @property
    def completed(self) -> list[Job]:
        """The seeds that completed: the ones its mean and spread are taken over."""
        return [job for job in self.jobs if job.result.status == "completed"]

    @property
    def diverged(self) -> list[Job]:
        """Its jobs that diverged: drawn over the y-range that the others set (``_clipped``)."""
        return [job for job in self.jobs if job.diverged]

    @property
    def drawn(self) -> tuple[list[Job], list[Job]]:
        """(jobs drawn as one line, or mean and band; jobs drawn alone), the diverged in neither: a lone job is its
        own line."""
        kept = [job for job in self.jobs if not job.diverged]
        members = kept if len(self.jobs) == 1 else self.completed
        return members, [job for job in kept if job not in members]


def configurations(jobs: list[Job]) -> list[Configuration]:
    """The jobs grouped by every swept override except ``trainer.seed`` (each job alone if no seed is swept)."""
    if not varies_seed(jobs):
        return [Configuration(job.overrides, [job]) for job in jobs]
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(o for o in job.overrides if _key(o) != SEED), []).append(job)
    return [Configuration(list(overrides), members) for overrides, members in groups.items()]


def seed_row(config: Configuration) -> dict[str, Any]:
    """A configuration's final metrics over its completed seeds: mean, sample std (n - 1), min and max."""
    done = config.completed
    out: dict[str, Any] = {"overrides": config.label, "seeds": len(config.jobs), "completed": len(done)}
    for key in FINAL:
        values = np.array([job.result.final(key) for job in done], dtype=float)
        out.update({f"{key}_mean": float(values.mean()) if len(values) else None,
                    f"{key}_std": float(values.std(ddof=1)) if len(values) > 1 else None,
                    f"{key}_min": float(values.min()) if len(values) else None,
                    f"{key}_max": float(values.max()) if len(values) else None})
    return out


def _heading(metric: str) -> str:
    """``train acc`` for train_accuracy: a summary metric as a column heading."""
    return metric.replace("accuracy", "acc").replace("_", " ")


def _over_seeds(row: dict[str, Any], key: str) -> str:
    mean, std, low, high = (row[f"{key}_{s}"] for s in ("mean", "std", "min", "max"))
    if mean is None:
        return "–"
    return f"{mean:.4g}" + (f" ± {std:.2g} [{low:.4g}–{high:.4g}]" if std is not None else "")


def seeds_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """SWEEP.md's table of each configuration's mean and spread over seeds."""
    lines = ["## Over seeds", "",
             "Each configuration's final metrics over the seeds that completed: mean ± sample std [min–max] "
             "(a diverged or failed seed is left out; see its row above).", "",
             "| configuration | completed / seeds | " + " | ".join(_heading(key) for key in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| `{r['overrides']}` | {r['completed']} / {r['seeds']} | "
                     + " | ".join(_over_seeds(r, key) for key in COLUMNS) + " |")
    return lines


def _positive(values: np.ndarray) -> np.ndarray:
    return np.where(values > 0, values, np.nan)  # log axes: 0 and below are not drawn


def _line(ax, curves: list[tuple[np.ndarray, np.ndarray]], color: str, label: str, style: str = ".-") -> None:
    """One curve as it is, or the mean of several with a shaded mean ± std band (std over the curves)."""
    curves = [(x, y) for x, y in curves if len(y)]
    if not curves:
        return
    n = min(len(y) for _, y in curves)
    x, stack = curves[0][0][:n], np.array([y[:n] for _, y in curves], dtype=float)
    mean = stack.mean(0)
    lone = {"marker": "o"} if n == 1 else {}  # one point (one epoch) is no line
    ax.plot(x, _positive(mean), style, lw=1, ms=4, color=color, label=label, **lone)
    if len(stack) > 1:
        std = stack.std(0, ddof=1)
        ax.fill_between(x, _positive(mean - std), _positive(mean + std), color=color, alpha=0.2, lw=0)


def _draw(ax, config: Configuration, color: str, curve, style: str, status: bool = False) -> None:
    """A configuration's line (a band over its completed seeds) and, dotted, each seed that did not complete; not
    its diverged jobs, which ``_panel`` draws once the others have set the y-range."""
    members, alone = config.drawn
    suffix = f" ({config.jobs[0].result.status})" if status and len(config.jobs) == 1 else ""
    label = config.label + (f": mean ± std over seeds (n={len(members)})" if len(config.jobs) > 1 else suffix)
    _line(ax, [curve(job.result) for job in members], color, label, style)
    for job in alone:
        _line(ax, [curve(job.result)], color, f"{job.label} ({job.result.status})", ":")


HEADROOM = 0.04
"""The share of a log y-axis above the jobs that did not diverge, where the diverged ones are drawn clipped."""


def _ceiling(ax) -> float:
    """Fix ``ax``'s y-range to what it holds so far, plus HEADROOM above; the top of what it holds (inf: nothing)."""
    if not np.isfinite(ax.dataLim.intervaly).all():
        return math.inf
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * (high / low) ** HEADROOM)
    return high


def _clipped(ax, x: np.ndarray, y: np.ndarray, ceiling: float, color: str, label: str, step: int | None) -> None:
    """A diverged job's curve, dotted, drawn at ``ceiling`` where it is above it (or NaN, inf), and a ▲ on the
    ceiling where it first leaves the plot, or at x = ``step`` (where its loss became NaN or inf) if it never does."""
    off = ~(y <= ceiling) if math.isfinite(ceiling) else np.zeros(len(y), dtype=bool)
    _line(ax, [(x, np.where(off, ceiling, y))], color, "_nolegend_", ":")
    at = x[off][0] if off.any() else step
    marked = at is not None and math.isfinite(ceiling)
    mark = {"marker": "^", "ms": 7, "clip_on": False} if marked else {}  # unclipped: a ▲ at x = 0 shows whole
    ax.plot([at] if marked else [], [ceiling] if marked else [], ":", lw=1, color=color, label=label, **mark)


def _panel(ax, configs: list[Configuration], curve, style: str, status: bool = False, theory: str | None = None,
           steps: bool = False) -> None:
    """Every configuration on ``ax`` (``theory``: with the mean-field prediction of that statistic), in a y-range
    that the jobs that did not diverge set; then each diverged job, clipped at its top (``steps``: marked at the
    step where it diverged when its curve stays inside)."""
    colors = [f"C{index % 10}" for index in range(len(configs))]
    for config, color in zip(configs, colors):
        _draw(ax, config, color, curve, style, status)
        if theory and len(config.diverged) < len(config.jobs):
            _theory_line(ax, config, theory, color)
    if not any(config.diverged for config in configs):
        return
    ceiling = _ceiling(ax)
    for config, color in zip(configs, colors):
        if theory and len(config.diverged) == len(config.jobs):
            _theory_line(ax, config, theory, color, ceiling)
        for job in config.diverged:
            _clipped(ax, *curve(job.result), ceiling, color, f"{job.label} ({job.note or 'diverged'})",
                     job.result.summary.get("diverged_at_step") if steps else None)


THEORY = {"activation_std": "activation_std", "backward_norm": "backward_std"}
"""The mean-field prediction each per-layer statistic is drawn against."""


def _theory(result: RunResult, stat: str) -> np.ndarray:
    """The theory's ``stat`` by layer at step 0; the backward norm scaled as the theory's backward std, which is
    anchored at the last layer's measured value (the norm is √n times the std for a zero-mean signal)."""
    predicted = result.theory(THEORY[stat])
    if stat == "backward_norm":
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero signal (zero init): no line
            predicted = predicted * result.stat("backward_norm")[-1] / result.stat("backward_std")[-1]
    return predicted


def _theory_line(ax, config: Configuration, stat: str, color: str, ceiling: float = math.inf) -> None:
    """The mean-field prediction at step 0, dashed, where the theory makes one (mean over the seeds), not above
    ``ceiling``."""
    members = [job.result for job in config.jobs if job.result.probes and job.result.probes[0].step == 0]
    predicted = [_theory(r, stat) for r in members]
    depth = len(members[0].probes[0].stats[stat]) if members else 0
    if predicted and all(len(p) == depth and np.isfinite(p).all() and (p > 0).all() for p in predicted):
        mean = np.mean(predicted, 0)
        ax.plot(np.arange(1, depth + 1), np.where(mean <= ceiling, mean, np.nan), "--", lw=1, color=color)


def _by_layer(stat: str, probe: int):
    def curve(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
        values = np.array(_layers(result, stat, probe), dtype=float)
        return np.arange(1, len(values) + 1), values
    return curve


class _PlainLog(LogFormatter):
    """Log-axis tick labels as plain numbers (0.06, 0.4, 2.375) with the digits the axis's span needs; minor
    ones thinned as matplotlib thins them."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        step = (vmax - vmin) / 5  # about the spacing of ticks on a narrow axis
        digits = math.floor(math.log10(x)) - math.floor(math.log10(step)) + 1 if step > 0 else 3
        return f"{x:.{max(2, digits)}g}"


def _axes_style(ax, xlabel: str, ylabel: str) -> None:
    """Labels on both axes, 9 pt ticks, a log y-axis labelled in plain numbers, a grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLog())
    ax.yaxis.set_minor_formatter(_PlainLog(minor_thresholds=(1, 0.5)))
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3, which="both")


def layers_figure(jobs: list[Job], path: Path) -> Figure:
    """Activation std and backward-signal norm by layer, first and last probe: a line per job (a band per
    configuration over seeds), the mean-field prediction dashed at the first probe; saved as PNG at ``path``."""
    fig = Figure(figsize=(13, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    configs = configurations(jobs)
    for (row_index, col), ax in np.ndenumerate(axes):
        stat = LAYER_STATS[row_index]
        when = "first probe (step 0; dashed: mean-field theory)" if col == 0 else "last probe"
        ax.set_title(f"{stat.replace('_', ' ')} by layer, {when}", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _axes_style(ax, "layer", LAYER_LABELS[stat])
        _panel(ax, configs, _by_layer(stat, (0, -1)[col]), ".-", theory=stat if col == 0 else None)
    _legend(fig, axes[0, 0])
    render(fig, path)
    return fig


def loss_figure(jobs: list[Job], path: Path) -> Figure:
    """Train loss of every step's batch from step 0 and test loss per epoch: a line per job (a band per
    configuration over seeds); saved as PNG at ``path``."""
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    configs = configurations(jobs)
    axes[0].set_title("train loss of each step's batch (step 0: the initial weights)", fontsize=10)
    axes[1].set_title("test loss at step 0 and at the end of each epoch", fontsize=10)
    curves = (RunResult.batch_losses, lambda r: r.test_curve("test_loss"))
    for ax, split, curve in zip(axes, ("train", "test"), curves):
        _axes_style(ax, "step", f"{split} loss")
        _panel(ax, configs, curve, "-", status=True, steps=True)
        ax.set_xlim(left=0)
    _legend(fig, axes[0])
    render(fig, path)
    return fig


def _legend(fig: Figure, ax) -> None:
    count = len(ax.get_legend_handles_labels()[0])
    if not count:
        ax.text(0.5, 0.5, "nothing recorded yet", ha="center", transform=ax.transAxes)
    elif count <= MAX_LEGEND:
        ax.legend(fontsize=8)
    else:
        fig.suptitle(f"{count} lines (too many to label; see sweep.csv)", fontsize=10)


def write_sweep_report(sweep_dir: Path) -> Path:
    """Write sweep.csv, SWEEP.md, sweep_layers.png and sweep_loss.png into ``sweep_dir``, and sweep_seeds.csv
    (each configuration's mean and spread over seeds) when the sweep varies ``trainer.seed``."""
    jobs = collect(sweep_dir)
    write_csv(sweep_dir / "sweep.csv", [row(job) for job in jobs])
    seeds = [seed_row(config) for config in configurations(jobs)] if varies_seed(jobs) else []
    if seeds:
        write_csv(sweep_dir / "sweep_seeds.csv", seeds)
    layers_figure(jobs, sweep_dir / "sweep_layers.png")
    loss_figure(jobs, sweep_dir / "sweep_loss.png")
    path = sweep_dir / "SWEEP.md"
    write_text(path, markdown(jobs, sweep_dir, seeds))
    return path


def tally(jobs: list[Job]) -> str:
    """'8 jobs: 6 completed, 1 diverged, 1 failed'."""
    counts = Counter(job.result.status for job in jobs)
    return f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items())


def failures(jobs: list[Job]) -> list[str]:
    """A line per failed job: 'job 2 (<its overrides>) failed: <its error's first line>'."""
    return [f"job {job.number}" + (f" ({job.label})" if job.overrides else "")
            + f" failed: {job.note or 'no error recorded'}" for job in jobs if job.result.status == "failed"]


def cli(argv: list[str] | None = None) -> None:
    """Console entry point ``layerscope-report <sweep folder>`` (the sweep's table and figures) or
    ``layerscope-report <run folder> [--step N ...]`` (a run's lecture figures, drawn from its probes)."""
    parser = argparse.ArgumentParser(prog="layerscope-report",
                                     description="Rebuild a sweep's table and figures, or draw a run's lecture figures.")
    parser.add_argument("folder", type=Path, help="a sweep folder (outputs/sweeps/...) or a run folder (outputs/runs/...)")
    parser.add_argument("--step", type=int, action="append", metavar="N",
                        help="a run folder: draw the lecture figure of the probe at step N (repeatable; default: the "
                             "first and last probe)")
    args = parser.parse_args(argv)
    folder = args.folder
    if not folder.is_dir():
        _exit(f"{folder} is not a folder; pass a sweep folder such as outputs/sweeps/<date>/<time> or a run folder")
    try:
        if (folder / PROBES).exists():
            from layerscope.train.finish import redraw

            print("\n".join(str(path) for path in redraw(folder, args.step)))
            return
        if args.step:
            _exit(f"{folder} holds no probes.jsonl: --step draws a run's figures; pass a run folder")
        if not collect(folder):
            _exit(f"{folder} holds no job folders; pass the sweep's own folder")
        print(write_sweep_report(folder))
    except ConfigError as err:
        _exit(str(err))
    except OSError as err:
        _exit(f"cannot write into {folder}: {err.strerror}")


def _exit(message: str) -> None:
    print(f"layerscope-report: error: {message}", file=sys.stderr)
    sys.exit(2)
