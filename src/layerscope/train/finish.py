"""The end of a run, and the words that describe it: its figures, its hyper-parameters for TensorBoard's
HPARAMS dashboard, summary.json and its closing log line."""

from __future__ import annotations

import functools
import logging
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from layerscope.errors import ConfigError
from layerscope.files import read_jsonl
from layerscope.probe.record import ProbeRecord
from layerscope.runs.folder import FINAL, PROBES, probe_figure, read_config, write_summary
from layerscope.runs.hparams import dashboard_hparams, hyperparameters
from layerscope.runs.job_names import swept_overrides
from layerscope.runs.writer import RunWriter

log = logging.getLogger("layerscope")


def describe(cfg: DictConfig) -> str:
    """A one-line description of the setting, for titles and logs."""
    init = cfg.init.name + (f"(std={cfg.init.std})" if cfg.init.name == "normal" else "")
    return (f"{cfg.model.depth}x{cfg.model.width} {cfg.activation.name}, init {init}, bn {cfg.bn.placement}, "
            f"{cfg.optimizer.name} lr={cfg.optimizer.lr}")


def differences(cfgs: list[DictConfig], run_dirs: list[Path]) -> list[str]:
    """Per member, what sets it apart from the others: the sweep overrides that differ (``optimizer=adam``), or
    for folders made outside a sweep the hyper-parameters that differ, a choice's own keys left out."""
    flat = [swept_overrides(d) for d in run_dirs]
    if not all(flat):
        flat = [{k: v for k, v in hyperparameters(c).items() if v is not None} for c in cfgs]
    keys = [k for k in dict.fromkeys(k for f in flat for k in f) if len({repr(f.get(k)) for f in flat}) > 1]
    keys = [k for k in keys if "." not in k or k.rsplit(".", 1)[0] not in keys]
    return [",".join(f"{k}={f[k]}" for k in keys if k in f) for f in flat]


def finish_run(cfg: DictConfig, summary: dict[str, Any], writer: RunWriter, steps: int,
               logger: logging.Logger = log, figures: list[Future] = ()) -> None:
    """The end of every run: its figures' TensorBoard images (``run_figures``), hparams and summary.json, and a
    closing log line."""
    drawn = []
    for future in figures:
        step, data, shape = future.result()
        writer.image("lecture/probe", data, shape, step)
        drawn.append(probe_figure(writer.run_dir, step).relative_to(writer.run_dir).as_posix())
    params, varied = dashboard_hparams(cfg, writer.run_dir)
    final = {key: summary["final"].get(key) for key in FINAL}  # every one a column, also where this run has none
    writer.hparams(params, {**final, "steps": steps, "diverged": float(summary["status"] == "diverged")}, steps, varied)
    writer.close()
    write_summary(writer.run_dir, summary)
    for line in closing_lines(summary, steps, writer.run_dir, drawn):
        logger.info("%s", line)


def closing_lines(summary: dict[str, Any], steps: int, run_dir: Path, drawn: list[str]) -> list[str]:
    """The two lines that end a run's log: how it ended and its figures; where its files are and how to view them."""
    state = "stopped" if summary["status"] == "diverged" else summary["status"]  # the loop logged the divergence
    result = ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items()) or "no epoch finished"
    figures = f"; figures: {', '.join(drawn[:2])}" + (f" and {len(drawn) - 2} more" if len(drawn) > 2 else "")
    return [f"{state} after {steps} steps: {result}" + (figures if drawn else ""),
            f"files in {run_dir}; view them with: tensorboard --logdir {run_dir}"]


def figure_records(records: list[ProbeRecord], figures: bool | str) -> list[ProbeRecord]:
    """The probes whose figures ``probe.figures`` asks for: the first and the last (true), every one ("every"),
    none (false)."""
    if figures == "every":
        return records
    return records[:1] + records[1:][-1:] if figures else []


def run_figures(title: str, run_dir: Path, many: bool = False):
    """A run's lecture figures (``figure_workers.RunFigures``): each of its probes' figures/probe_<step>.png in
    ``run_dir``, and its compact form, TensorBoard's image (legible at the size TensorBoard shows it); ``many``: one
    of several runs drawn together."""
    from layerscope.probe.figure_workers import RunFigures  # worker processes: only for a run that draws

    return RunFigures(title, functools.partial(probe_figure, run_dir), many)


def redraw(run_dir: Path, steps: list[int] | None = None) -> list[Path]:
    """Draw a run's lecture figures again from its probes.jsonl: of the probes at ``steps`` (the first and the last
    when None), as figures/probe_<step>.png; their paths. A step the run did not probe is a ConfigError."""
    records = [ProbeRecord.from_json(row) for row in read_jsonl(run_dir / PROBES)]
    cfg = OmegaConf.create(read_config(run_dir))
    if not records or not cfg:
        raise ConfigError(f"{run_dir} holds no probes to draw (no probes.jsonl or config.yaml); pass a run's folder")
    by_step = {r.step: r for r in records}
    missing = [s for s in steps or () if s not in by_step]
    if missing:
        listed = ", ".join(map(str, by_step)) if len(by_step) <= 12 else f"{', '.join(map(str, list(by_step)[:12]))}, ..."
        raise ConfigError(f"{run_dir} has no probe at step {missing[0]}; its probes are at steps {listed}")
    chosen = figure_records(records, True) if steps is None else [by_step[s] for s in dict.fromkeys(steps)]
    figures = run_figures(describe(cfg), run_dir, many=len(chosen) > 2)
    for record in chosen:
        figures.begin(record)
    for future in figures.futures():
        future.result()
    return [probe_figure(run_dir, r.step) for r in chosen]
