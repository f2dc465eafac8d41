"""The probe-only grid: every activation x initializer x BN placement in one process.

216 Hydra jobs cost about 0.28 s each (two config compositions per job, logging set-up, a
TensorBoard writer) for about 0.05 s of measuring, so ``experiment=probe_grid`` measures the
whole grid inside a single run: data once, then per cell a fresh model, one forward/backward
pass with the probes and the mean-field prediction. It writes grid.csv, GRID.md and grid.png.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from layerscope.config.validate import DTYPES, validate
from layerscope.data.datasets import load_data
from layerscope.errors import ConfigError
from layerscope.files import write_text
from layerscope.nets.activations import ACTIVATIONS
from layerscope.nets.losses import build_loss
from layerscope.nets.stacked import Captured, StackedMLP
from layerscope.paths import choices, preset
from layerscope.probe.figures import render
from layerscope.runs.folder import write_summary
from layerscope.runs.tables import cell, write_csv
from layerscope.theory.prediction import compare, predict_run
from layerscope.train.probed_model import initialized_model, probe_measure

GROUPS = ("activation", "init", "bn")


def choice(group: str, name: str) -> DictConfig:
    """The config of ``group=name`` as its yaml file defines it."""
    names = choices(group)
    if name not in names:
        raise ConfigError(f"grid.{group} names {name!r}, which is not a choice; choose from: {', '.join(names)}")
    return OmegaConf.create(preset(group, name))


def measure_cell(cfg: DictConfig, data, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """One forward/backward pass of a freshly initialized model, probed: per-layer stats and theory."""
    model = StackedMLP([initialized_model(cfg, data)], cfg.activation, device, DTYPES[cfg.trainer.dtype])
    captured, measure = Captured(), probe_measure(cfg)
    build_loss(cfg.loss)(model(x, captured), y.expand(1, -1)).sum().backward()
    measured = measure(captured, model.weights(), model.weight_grads(), model.initial_weights())
    record = measure.records(measured, step=0)[0][0]
    prediction = predict_run(cfg, data.input_dim, float(x.square().mean()))
    if prediction is not None:
        record.theory = compare(prediction, record.stats)
    return {"stats": record.stats, "theory": record.theory, "finite": record.finite}


def _ratio(values: list[float]) -> float:
    first, last = values[0], values[-1]
    return last / first if first and math.isfinite(first) and math.isfinite(last) and first > 0 else float("nan")


def run_grid(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Measure every cell of ``cfg.grid`` (lists of activation, init and bn choices) at initialization."""
    grid = {group: list(cfg.grid.get(group) or []) for group in GROUPS}
    for group, names in grid.items():
        if not names:
            raise ConfigError(f"grid.{group} is empty; list the {group} choices to measure")
    device = validate(cfg)
    data = load_data(cfg.data, cfg.trainer.seed)
    batch = min(cfg.trainer.batch_size, len(data.x_train))
    x, y = data.x_train[:batch].to(device), data.y_train[:batch].to(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    cells = [(a, i, b) for a in grid["activation"] for i in grid["init"] for b in grid["bn"]]
    rows = []
    plain = OmegaConf.to_container(cfg, resolve=True)
    for activation, init, bn in tqdm(cells, desc="grid", unit="cell", disable=None, leave=False):
        cell = OmegaConf.create(plain)
        cell.activation, cell.init, cell.bn = choice("activation", activation), choice("init", init), choice("bn", bn)
        measured = measure_cell(cell, data, x, y, device)
        stats, theory = measured["stats"], measured["theory"] or {}
        error = np.nanmax(theory["rel_error_activation_std"]) if theory and np.isfinite(
            theory["rel_error_activation_std"]).any() else float("nan")
        rows.append({
            "activation": activation, "init": init, "bn": bn, "finite": measured["finite"],
            "activation_std_first": stats["activation_std"][0], "activation_std_last": stats["activation_std"][-1],
            "std_ratio_last_first": _ratio(stats["activation_std"]),
            "backward_ratio_first_last": _ratio(stats["backward_std"][::-1]),
            "saturated_max": np.nanmax(stats["saturated_fraction"]) if ACTIVATIONS.get(activation).bounds else None,
            "dead_max": np.nanmax(stats["dead_fraction"]),
            "inactive_max": np.nanmax(stats["inactive_fraction"]) if ACTIVATIONS.get(activation).rectifier else None,
            "theory_rel_error_max": error,
            **{f"activation_std_layer_{i:02d}": v for i, v in enumerate(stats["activation_std"], start=1)},
            **{f"backward_std_layer_{i:02d}": v for i, v in enumerate(stats["backward_std"], start=1)},
        })
    write_table(rows, run_dir)
    grid_figure(rows, grid, cfg.model.depth, run_dir / "grid.png")
    summary = {"status": "completed", "steps": 0, "cells": len(rows), "grid": grid, "final": {}}
    write_summary(run_dir, summary)
    return summary


def write_table(rows: list[dict[str, Any]], run_dir: Path) -> None:
    """grid.csv (every column) and GRID.md (the summary columns)."""
    write_csv(run_dir / "grid.csv", rows)
    columns = ("activation", "init", "bn", "activation_std_first", "activation_std_last", "std_ratio_last_first",
               "backward_ratio_first_last", "saturated_max", "dead_max", "inactive_max", "theory_rel_error_max")
    lines = ["# Probe-only grid: activation x init x BN at initialization", "",
             "std ratio: activation std at the last layer over the first; backward ratio: backward-signal std at "
             "layer 1 over the last layer (> 1: grows toward the input). Theory error: largest relative error "
             "of the activation std against the mean-field prediction (no prediction with BN). Dead: largest share of a "
             "layer's units that pass no gradient for the whole batch (φ' = 0); inactive: whose input is ≤ 0 for the whole "
             "batch (rectifiers).", "",
             "![grid](grid.png)", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    write_text(run_dir / "GRID.md", "\n".join(lines) + "\n")


def grid_figure(rows: list[dict[str, Any]], grid: dict[str, list[str]], depth: int, path: Path) -> Path:
    """Heatmaps per BN placement: log10 of the last/first-layer activation std and of the backward ratio."""
    acts, inits, bns = grid["activation"], grid["init"], grid["bn"]
    fig = Figure(figsize=(4.2 * len(bns) + 1, 2 * 0.42 * len(acts) + 2.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(2, len(bns), squeeze=False))
    index = {(r["activation"], r["init"], r["bn"]): r for r in rows}
    for col, bn in enumerate(bns):
        for row, (key, title) in enumerate((("std_ratio_last_first", f"activation std, layer {depth} / layer 1"),
                                             ("backward_ratio_first_last", f"backward std, layer 1 / layer {depth}"))):
            values = np.array([[index[(a, i, bn)][key] for i in inits] for a in acts], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                logs = np.log10(values)
            ax = axes[row, col]
            image = ax.imshow(np.clip(logs, -6, 6), cmap="RdBu_r", vmin=-6, vmax=6, aspect="auto")
            for (r, c), v in np.ndenumerate(logs):
                ax.text(c, r, "–" if not np.isfinite(v) else str(round(v)), ha="center", va="center", fontsize=6)
            ax.set_xticks(range(len(inits)), inits, rotation=60, fontsize=7)
            ax.set_yticks(range(len(acts)), acts, fontsize=7)
            ax.set_title(f"bn={bn}: log10 {title}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="log10 ratio (0: preserved)")
    render(fig, path)
    return path
