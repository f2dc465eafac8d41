"""Runs and sweeps in Python: ``load_run``, ``load_sweep`` and ``run``, with what they recorded as tidy tables,
and ``load_model``, a run's trained network.

A table is a pandas DataFrame when pandas is installed (``pip install 'layerscope[pandas]'``), else a list of
rows (dicts with the same columns). Tables of a run:

- ``metrics``: one row per epoch (epoch, step, train_loss, train_accuracy, test_loss, test_accuracy, lr);
  ``step`` counts the optimizer steps done when the epoch ended.
- ``losses``: one row per optimizer step (step, train_loss): the loss of that step's batch before its
  update, from step 0 (the initial weights).
- ``probes``: one row per probe step x layer x statistic (step, layer, statistic, source, value); source is
  ``measured``, or ``theory`` for the mean-field prediction recorded at step 0. Layers count from 1.
- ``histograms``: one row per probe step x quantity (activation, backward) x layer x bin
  (step, quantity, layer, low, high, count).

A sweep's tables hold every job's rows with the job's number and its swept overrides (one column per key)
in front.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from layerscope.config.overrides import parse
from layerscope.errors import ConfigError
from layerscope.runs.folder import CHECKPOINT, CONFIG, holds_run, read_config
from layerscope.runs.hparams import dashboard_hparams
from layerscope.runs.job_names import record_overrides
from layerscope.runs.results import RunResult
from layerscope.sweep.report import LAYER_STATS, Job, collect, configurations, row, seed_row, varies_seed

if TYPE_CHECKING:
    import torch


def _pandas():
    """The pandas module, or None when it is not installed."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        return None


def table(rows: list[dict[str, Any]]):
    """``rows`` as a pandas DataFrame when pandas is installed, else as they are."""
    pandas = _pandas()
    return pandas.DataFrame(rows) if pandas is not None else rows


def _number(value: Any) -> Any:
    return float("nan") if value is None else value  # the files write NaN/inf as null


def metric_rows(result: RunResult) -> list[dict[str, Any]]:
    """One row per epoch, as metrics.jsonl records it (without each step's loss: see ``loss_rows``)."""
    return [{k: _number(v) for k, v in row.items() if k != "step_losses"} for row in result.metrics]


def loss_rows(result: RunResult) -> list[dict[str, Any]]:
    """One row per optimizer step: the loss of its batch before its update, from step 0."""
    steps, values = result.batch_losses()
    return [{"step": int(step), "train_loss": float(value)} for step, value in zip(steps, values)]


def probe_rows(result: RunResult) -> list[dict[str, Any]]:
    """One row per probe step x layer x statistic, measured and (at step 0) the mean-field theory's."""
    rows = []
    for record in result.probes:
        for source, by_name in (("measured", record.stats), ("theory", record.theory or {})):
            for statistic, values in by_name.items():
                rows += [{"step": record.step, "layer": layer, "statistic": statistic, "source": source,
                          "value": _number(value)} for layer, value in enumerate(values, start=1)]
    return rows


def histogram_rows(result: RunResult) -> list[dict[str, Any]]:
    """One row per probe step x quantity x layer x bin: the bin's edges and its count."""
    rows = []
    for record in result.probes:
        for quantity, hists in record.histograms.items():
            for layer, h in enumerate(hists, start=1):
                edges = h.edges
                rows += [{"step": record.step, "quantity": quantity, "layer": layer, "low": float(edges[i]),
                          "high": float(edges[i + 1]), "count": float(count)} for i, count in enumerate(h.counts)]
    return rows


def _read(read: Callable[[RunResult], Any], doc: str) -> cached_property:
    """A ``Run`` attribute: ``read`` of its RunResult, computed when first asked for."""
    attribute = cached_property(lambda run: read(run.result))
    attribute.__doc__ = doc
    return attribute


@dataclass
class Run:
    """One run folder read back: its summary, config and status, and what it recorded as tables."""

    result: RunResult

    path = _read(lambda r: r.run_dir, "The run's folder.")
    summary = _read(lambda r: r.summary, "summary.json (status, steps, final metrics, timings), with the status as "
                                         "``status`` reads it.")
    status = _read(lambda r: r.status, "completed, diverged, failed, interrupted, running or incomplete.")
    config = _read(lambda r: r.config, "The run's resolved config as a plain dict ({} when it has none).")
    metrics = _read(lambda r: table(metric_rows(r)), "One row per epoch (see the module's docstring).")
    losses = _read(lambda r: table(loss_rows(r)), "One row per optimizer step: the batch's training loss, from step 0.")
    probes = _read(lambda r: table(probe_rows(r)), "One row per probe step x layer x statistic, measured and theory.")
    histograms = _read(lambda r: table(histogram_rows(r)), "One row per probe step x quantity x layer x histogram bin.")

    def figure(self, step: int) -> Path:
        """Draw the lecture figure of the probe at ``step`` from the run's records (figures/probe_<step>.png); its
        path. ValueError when the run has no probe at that step."""
        from layerscope.train.finish import redraw

        try:
            return redraw(self.path, [step])[0]
        except ConfigError as err:
            raise ValueError(str(err)) from None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"


def _folder(path: str | Path, example: str) -> Path:
    """``path`` as a Path, or FileNotFoundError naming what to pass instead."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass {example}")
    return folder


def load_run(path: str | Path) -> Run:
    """Read the run in folder ``path`` (a single run's, or one job's of a sweep)."""
    folder = _folder(path, "a run folder such as outputs/runs/<date>/<time>")
    if not holds_run(folder) and not (folder / CONFIG).exists():
        hint = "; for a sweep's folder use load_sweep" if collect(folder) else ""
        raise ValueError(f"{folder} holds no run (no summary.json, metrics.jsonl or probes.jsonl){hint}")
    return Run(RunResult.load(folder))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The run's trained MLP: its config.yaml's model with its checkpoint.pt's weights, in eval mode on ``device``."""
    import torch

    from layerscope.nets.mlp import build_model
    from layerscope.runs.checkpoint import load_checkpoint

    folder = _folder(path, "a run folder such as outputs/runs/<date>/<time>")
    missing = [name for name in (CONFIG, CHECKPOINT) if not (folder / name).is_file()]
    if missing:
        hint = "; for a sweep's folder pass one job's folder (load_sweep(path).runs[0].path)" if collect(folder) else ""
        raise FileNotFoundError(f"{folder} has no {' and no '.join(missing)}; pass the folder of a run that trained, "
                                f"such as outputs/runs/<date>/<time> (a run writes checkpoint.pt as it trains and when "
                                f"it ends; a probe-only run, trainer.max_steps=0, writes none){hint}")
    cfg = read_config(folder)
    state = load_checkpoint(folder / CHECKPOINT).get("model")
    if not state:
        raise ValueError(f"{folder / CHECKPOINT} holds no model; pass the folder of a run that trained")
    with torch.device("meta"):  # draws no initial weights (torch's global generator stays untouched)
        model = build_model(cfg["model"], cfg["activation"], cfg["bn"], state["blocks.0.linear.weight"].shape[1],
                            state["head.weight"].shape[0])
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError:
        raise ValueError(f"{folder / CHECKPOINT} does not fit the model {folder / CONFIG} describes; pass a run folder "
                         f"whose files were written by one run") from None
    return model.to(device).eval()


def parsed(overrides: list[str]) -> dict[str, Any]:
    """Command-line overrides as {key: value}, with Hydra's types (``optimizer.lr=1e-3`` -> 0.001)."""
    return {o.key_or_group: o.value() for o in parse(overrides)}


class Runs(dict):
    """A sweep's runs by job number (a string, ``runs["3"]``), in job order; an int is a position in that order,
    as in a list (``runs[0]``, ``runs[-1]``)."""

    def __getitem__(self, key: str | int) -> Run:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


class Sweep:
    """A sweep folder read back: its jobs in order, each a ``Run``, and tables over all of them."""

    def __init__(self, path: Path, jobs: list[Job]) -> None:
        self.path = path
        self._jobs = jobs

    @cached_property
    def runs(self) -> Runs:
        """Job number -> its run, in job order; ``runs[0]`` is the first job's run (see ``Runs``)."""
        return Runs((job.number, Run(job.result)) for job in self._jobs)

    @cached_property
    def _keys(self) -> dict[str, dict[str, Any]]:
        """Job number -> its job number, swept overrides and the other hyper-parameters that differ between the
        jobs (``init.std`` for ``init=normal,normal_1``): the first columns of every table, HPARAMS' columns too."""
        keys = {}
        for job in self._jobs:
            params, varied = dashboard_hparams(job.result.config, job.result.run_dir)
            swept = parsed(job.overrides)
            keys[job.number] = {"job": job.number, **swept, **{k: params.get(k) for k in varied if k not in swept}}
        return keys

    @cached_property
    def jobs(self):
        """One row per job: its swept overrides (a column per key), status, steps, final metrics and error,
        as sweep.csv has them (its per-layer columns are in ``probes``)."""
        return table([{**self._keys[job.number], **{k: v for k, v in row(job).items() if k not in ("job", "overrides")
                                                    and not k.startswith(LAYER_STATS)}} for job in self._jobs])

    @cached_property
    def seeds(self):
        """One row per configuration (the jobs that differ only in trainer.seed): its swept overrides, then the
        final metrics' mean, std, min and max over its completed seeds; no rows when the seed is not swept."""
        configs = configurations(self._jobs) if varies_seed(self._jobs) else []
        return table([{**parsed(c.overrides), **seed_row(c)} for c in configs])

    def _joined(self, rows_of) -> Any:
        return table([{**self._keys[job.number], **r} for job in self._jobs for r in rows_of(job.result)])

    @cached_property
    def metrics(self):
        """Every job's ``Run.metrics`` rows, after its job number and swept overrides."""
        return self._joined(metric_rows)

    @cached_property
    def losses(self):
        """Every job's ``Run.losses`` rows, after its job number and swept overrides."""
        return self._joined(loss_rows)

    @cached_property
    def probes(self):
        """Every job's ``Run.probes`` rows, after its job number and swept overrides."""
        return self._joined(probe_rows)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, {len(self._jobs)} jobs)"


def load_sweep(path: str | Path) -> Sweep:
    """Read the sweep in folder ``path`` (any launcher's; a sweep still running or interrupted too)."""
    folder = _folder(path, "a sweep folder such as outputs/sweeps/<date>/<time>")
    jobs = collect(folder)
    if not jobs:
        raise ValueError(f"{folder} holds no job folders; pass the sweep's own folder (outputs/sweeps/<date>/<time>)")
    return Sweep(folder, jobs)


def run(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> Run:
    """Compose the config with ``overrides`` (as on the command line), train it into ``output_dir`` (by default
    the CLI's outputs/runs/<date>/<time>) and return the run read back, as ``load_run`` does."""
    from hydra import compose
    from omegaconf import OmegaConf, open_dict

    from layerscope.config.hydra_hooks import read_config_files_once
    from layerscope.paths import configs_context
    from layerscope.runs.ownership import check_target, owned
    from layerscope.train.group import run as train

    overrides = list(overrides)
    read_config_files_once()
    with configs_context():
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    folder = Path(output_dir if output_dir is not None else OmegaConf.select(cfg, "hydra.run.dir"))
    with open_dict(cfg):
        del cfg["hydra"]  # the CLI's run gets its config without Hydra's own node too
    if cfg.get("grid"):
        raise ConfigError("experiment=probe_grid writes a grid table, not a run; run it with "
                          "`layerscope experiment=probe_grid`")
    check_target(folder, overrides, None, bool(cfg.trainer.resume))
    created = not folder.exists()
    try:
        with owned(folder):
            record_overrides(folder, overrides)  # before training: its HPARAMS mark them as what differs
            train(cfg, folder)
    except BaseException:
        if created and folder.is_dir() and {p.name for p in folder.iterdir()} <= {".hydra"}:
            shutil.rmtree(folder)  # a config refused before anything else was written: leave no folder
        raise
    return load_run(folder)
