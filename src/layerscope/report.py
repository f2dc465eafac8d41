"""The sweep report: one table row per job and comparison figures, from a (partial) sweep folder.

Written by a Hydra callback when a multirun ends, and by ``layerscope-report <sweep folder>``.
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from layerscope.plots import render
from layerscope.results import RunResult

LAYER_STATS = ("activation_std", "backward_norm")
FINAL = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
MAX_LEGEND = 16


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


def common_overrides(sweep_dir: Path) -> list[str]:
    """The overrides every job of the sweep shares (from Hydra's multirun.yaml when present)."""
    per_job = [_overrides(d) for d in _job_folders(sweep_dir)]
    return [o for o in per_job[0] if all(o in other for other in per_job[1:])] if per_job else []


def _overrides(folder: Path) -> list[str]:
    path = folder / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.exists() else []


def _job_folders(sweep_dir: Path) -> list[Path]:
    folders = [d for d in sweep_dir.iterdir() if d.is_dir() and ((d / ".hydra").is_dir() or (d / "summary.json").exists())]
    return sorted(folders, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


def collect(sweep_dir: Path) -> list[Job]:
    """Every job folder (holding ``.hydra/`` or ``summary.json``) in job-number order."""
    jobs = []
    common = set(common_overrides(sweep_dir))
    for folder in _job_folders(sweep_dir):
        overrides = [o for o in _overrides(folder) if o not in common]
        result = RunResult.load(folder, folder.name)
        jobs.append(Job(folder.name, overrides, result))
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


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _span(values: list[float]) -> str:
    return f"{values[0]:.3g} → {values[-1]:.3g}" if values else "–"


def markdown(jobs: list[Job], sweep_dir: Path) -> str:
    """SWEEP.md: counts by status, the table, and the figures."""
    common = " ".join(common_overrides(sweep_dir)) or "none"
    lines = [f"# Sweep {sweep_dir}", "", tally(jobs),
             "", f"Overrides shared by every job: `{common}`", "",
             "| job | overrides | status | steps | train loss | test loss | test acc | activation std L1 → Ln, "
             "first probe | last probe | backward norm L1 → Ln, first | last | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for job in jobs:
        r, s = job.result, job.result.summary
        note = s.get("error", "") or (f"diverged at step {s['diverged_at_step']}" if s.get("diverged_at_step") is not None else "")
        lines.append(
            f"| {job.number} | `{' '.join(job.overrides)}` | {r.status} | {_fmt(s.get('steps'))} | "
            f"{_fmt(r.final('train_loss'))} | {_fmt(r.final('test_loss'))} | {_fmt(r.final('test_accuracy'))} | "
            f"{_span(_layers(r, 'activation_std', 0))} | {_span(_layers(r, 'activation_std', -1))} | "
            f"{_span(_layers(r, 'backward_norm', 0))} | {_span(_layers(r, 'backward_norm', -1))} | "
            f"{note.replace('|', '/')} |")
    lines += ["", "![per-layer statistics](sweep_layers.png)", "", "![loss curves](sweep_loss.png)", ""]
    return "\n".join(lines)


def layers_figure(jobs: list[Job], path: Path) -> Path:
    """Activation std and backward-signal norm by layer, first and last probe, one line per job."""
    fig = Figure(figsize=(13, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for index, job in enumerate(j for j in jobs if j.result.probes):
        for row_index, stat in enumerate(LAYER_STATS):
            for col, (which, probe) in enumerate((("first", 0), ("last", -1))):
                values = np.array(_layers(job.result, stat, probe))
                layers = np.arange(1, len(values) + 1)
                if (values > 0).any():
                    axes[row_index, col].semilogy(layers, np.where(values > 0, values, np.nan), ".-", lw=1,
                                                  color=f"C{index % 10}", label=job.label)
                axes[row_index, col].set_title(f"{stat.replace('_', ' ')} by layer, {which} probe", fontsize=9)
    for ax in axes.flat:
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes[0, 0], len(jobs))
    render(fig, path)
    return path


def loss_figure(jobs: list[Job], path: Path) -> Path:
    """Train and test loss per epoch, one line per job."""
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for index, job in enumerate(jobs):
        for ax, key in zip(axes, ("train_loss", "test_loss")):
            steps, values = job.result.curve(key)
            if len(steps):
                ax.plot(steps, values, "-", lw=1, color=f"C{index % 10}", label=f"{job.label} ({job.result.status})")
    for ax, key in zip(axes, ("train loss", "test loss")):
        ax.set_title(f"{key} per epoch", fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes[0], len(jobs))
    render(fig, path)
    return path


def _legend(fig: Figure, ax, count: int) -> None:
    if not ax.get_legend_handles_labels()[0]:
        ax.text(0.5, 0.5, "nothing recorded yet", ha="center", transform=ax.transAxes)
    elif count <= MAX_LEGEND:
        ax.legend(fontsize=7)
    else:
        fig.suptitle(f"{count} jobs (too many to label; see sweep.csv)", fontsize=9)


def write_sweep_report(sweep_dir: Path) -> Path:
    """Write sweep.csv, SWEEP.md, sweep_layers.png and sweep_loss.png into ``sweep_dir``."""
    jobs = collect(sweep_dir)
    rows = [row(job) for job in jobs]
    columns = list(dict.fromkeys(key for r in rows for key in r))
    with open(sweep_dir / "sweep.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    layers_figure(jobs, sweep_dir / "sweep_layers.png")
    loss_figure(jobs, sweep_dir / "sweep_loss.png")
    path = sweep_dir / "SWEEP.md"
    path.write_text(markdown(jobs, sweep_dir))
    return path


def tally(jobs: list[Job]) -> str:
    """'8 jobs: 6 completed, 1 diverged, 1 failed'."""
    counts = Counter(job.result.status for job in jobs)
    return f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items())


class SweepReport(Callback):
    """Hydra callback: write the sweep report when a multirun ends; exit 1 when a job failed, 130/143 when stopped.

    A diverged job is a result, not a failure; a failed one (an invalid config, a crash) makes the
    sweep's exit status 1, so scripts and CI can trust it.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        path = write_sweep_report(sweep_dir)
        jobs = collect(sweep_dir)
        print(f"{tally(jobs)}; see {path}", file=sys.stderr)
        stopped = next((job.result.summary.get("signal") for job in jobs if job.result.status == "interrupted"), None)
        if stopped:
            print(f"layerscope: {stopped}: the sweep stopped; continue it with the same command and "
                  f"skip_completed=true hydra.sweep.dir={sweep_dir}", file=sys.stderr)
            sys.exit(128 + signal.Signals[stopped].value)
        if any(job.result.status == "failed" for job in jobs):
            sys.exit(1)


def cli(argv: list[str] | None = None) -> None:
    """Console entry point ``layerscope-report <sweep folder>``."""
    parser = argparse.ArgumentParser(prog="layerscope-report", description="Rebuild a sweep's table and figures.")
    parser.add_argument("sweep_dir", type=Path, help="a folder under outputs/sweeps/ (finished or partial)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        sys.exit(f"layerscope-report: error: {args.sweep_dir} is not a folder; pass a sweep folder such as "
                 f"outputs/sweeps/<date>/<time>")
    if not collect(args.sweep_dir):
        sys.exit(f"layerscope-report: error: {args.sweep_dir} holds no job folders; pass the sweep's own folder")
    try:
        path = write_sweep_report(args.sweep_dir)
    except OSError as err:
        sys.exit(f"layerscope-report: error: cannot write into {args.sweep_dir}: {err.strerror}")
    print(path)
