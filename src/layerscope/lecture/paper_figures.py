"""The papers' figures, drawn from the runs: the trainability heatmap with ξ_c and 6 ξ_c, the 30-layer ReLU signal
and losses, Glorot & Bengio's activations, saturation, gradients and histograms."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from layerscope.probe.figures import LABELS, render
from layerscope.runs.results import RunResult
from layerscope.runs.tables import write_csv
from layerscope.theory.meanfield import xi_c

CSV_COLUMNS = ("depth", "sigma_w2", "seed", "train_accuracy")


def write_cells(rows: list[dict], path: Path) -> Path:
    """The grid's cells as CSV: depth, sigma_w2, seed, train_accuracy."""
    write_csv(path, [{k: row[k] for k in CSV_COLUMNS} for row in rows])
    return path


def trainability_figure(rows: list[dict], xi: dict[float, float], sigma_b2: float, activation: dict,
                        halves: dict[float, float], path: Path) -> Path:
    """Training accuracy over σ_w² (x) and depth (y), seeds averaged, with ξ_c and 6 ξ_c from the theory and each
    σ_w²'s half-way depth."""
    sigmas, depths = sorted({r["sigma_w2"] for r in rows}), sorted({r["depth"] for r in rows})
    grid = np.full((len(depths), len(sigmas)), np.nan)
    for i, d in enumerate(depths):
        for j, s in enumerate(sigmas):
            values = [r["train_accuracy"] for r in rows if r["depth"] == d and r["sigma_w2"] == s]
            grid[i, j] = np.nanmean(values) if values else np.nan
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ds, dd = _step(sigmas), _step(depths)
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      extent=(sigmas[0] - ds / 2, sigmas[-1] + ds / 2, depths[0] - dd / 2, depths[-1] + dd / 2))
    fig.colorbar(image, ax=ax, label="training accuracy")
    fine = np.linspace(sigmas[0] - ds / 2, sigmas[-1] + ds / 2, 120)
    scale = _depth_scales(activation["name"], tuple(sorted(activation.items())), tuple(fine), sigma_b2)
    ax.plot(fine, scale, "w--", lw=1.5, label="ξ_c (mean-field theory)")
    ax.plot(fine, 6 * scale, "w-", lw=2, label="6 ξ_c")
    finite = [(s, d) for s, d in halves.items() if np.isfinite(d)]
    if finite:
        ax.plot(*zip(*finite), "o", color="orangered", ms=6, label="half-way to chance (measured)")
    ax.set_ylim(depths[0] - dd / 2, depths[-1] + dd / 2)
    ax.set_xlabel("σ_w² (weights N(0, σ_w²/fan_in))")
    ax.set_ylabel("depth (hidden layers)")
    ax.set_title(f"trainability: tanh, σ_b² = {sigma_b2:.2g}, {len(rows)} runs", fontsize=LABELS + 1)
    ax.legend(loc="upper right", fontsize=LABELS - 1, framealpha=0.8)
    render(fig, path)
    return path


@functools.lru_cache(maxsize=8)
def _depth_scales(name: str, params: tuple, sigmas: tuple[float, ...], sigma_b2: float) -> np.ndarray:
    """ξ_c at each of ``sigmas`` (~13 ms each, so the curve is kept for the figure's next drawing)."""
    return np.array([xi_c(name, dict(params), s, sigma_b2) for s in sigmas])


def _step(values: list[float]) -> float:
    return float(np.min(np.diff(values))) if len(values) > 1 else 1.0


def deep_relu_figure(results: dict[str, RunResult], path: Path) -> Path:
    """Per-layer activation std at step 0 with the theory dashed, and the training loss per step, of both inits."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    signal, losses = fig.subplots(1, 2)
    for index, (label, r) in enumerate(results.items()):
        color = f"C{index}"
        std, theory = r.stat("activation_std"), r.theory("activation_std")
        layers = np.arange(1, len(std) + 1)
        signal.semilogy(layers, std, "o-", color=color, ms=3, label=f"{label}: measured")
        signal.semilogy(layers, theory, "k--" if index == 0 else "k:", lw=1, label=f"{label}: theory")
        for seed in r.seeds or [r]:
            steps, values = seed.step_curve()
            losses.plot(steps, values, "-", color=color, lw=1.5 if seed is r else 0.7, alpha=1 if seed is r else 0.35,
                        label=f"{label} ({len(r.seeds or [r])} seeds)" if seed is r else None)
    signal.set_title("activation std by layer at step 0", fontsize=LABELS + 1)
    signal.set_xlabel("layer")
    signal.set_ylabel("activation std (log)")
    signal.xaxis.set_major_locator(MaxNLocator(integer=True))
    losses.set_title("training loss of each step's batch", fontsize=LABELS + 1)
    losses.set_xlabel("step")
    losses.set_ylabel("loss")
    for ax in (signal, losses):
        ax.legend(fontsize=LABELS - 1)
        ax.grid(alpha=0.3)
    render(fig, path)
    return path


def glorot_bengio_figure(results: dict[str, RunResult], path: Path) -> Path:
    """Top: sigmoid's mean activation per layer over training, tanh's saturated share per layer over training,
    the backward signal's std by layer at step 0 (standard vs normalized); bottom: each layer's activation histogram
    at the end of training, tanh with the standard and the normalized init, softsign with the standard."""
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    axes = fig.subplots(2, 3)
    _over_training(axes[0, 0], results["sigmoid_standard"], "activation_mean",
                   "sigmoid, standard init: mean activation", "mean activation")
    _over_training(axes[0, 1], results["tanh_standard"], "saturated_fraction",
                   "tanh, standard init: saturated share", "share of values near ±1")
    ax = axes[0, 2]
    for index, label in enumerate(("tanh_standard", "tanh_normalized")):
        r = results[label]
        backward, theory = r.stat("backward_std"), r.theory("backward_std")
        layers = np.arange(1, len(backward) + 1)
        ax.semilogy(layers, backward, "o-", color=f"C{index}", label=f"{label.replace('_', ', ')}")
        if np.isfinite(theory).all() and len(theory) == len(layers):
            ax.semilogy(layers, theory, "--", color=f"C{index}", lw=1)
    ax.set_title("back-propagated dL/da std at step 0 (dashed: theory)", fontsize=LABELS + 1)
    ax.set_xlabel("layer")
    ax.set_ylabel("std (log)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=LABELS - 1)
    for ax, label in zip(axes[1], ("tanh_standard", "tanh_normalized", "softsign_standard")):
        _histograms(ax, results[label], f"{label.replace('_', ', ')} init: activations at the end")
    render(fig, path)
    return path


def _over_training(ax, r: RunResult, name: str, title: str, ylabel: str) -> None:
    steps, values = r.series(name)
    for layer in range(values.shape[1]):
        ax.plot(steps, values[:, layer], "o-", ms=3, color=f"C{layer}", label=f"layer {layer + 1}")
    ax.set_title(title, fontsize=LABELS + 1)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=LABELS - 1)
    ax.grid(alpha=0.3)


def _histograms(ax, r: RunResult, title: str) -> None:
    """Each layer's activation histogram at the last probe, as a share of values per bin (the paper's Fig. 6)."""
    for layer, h in enumerate(r.probes[-1].histograms.get("activation", [])):
        if h.finite and h.num > 0 and h.max > h.min:
            ax.stairs(np.asarray(h.counts) / h.num, h.edges, color=f"C{layer}", lw=1.2, label=f"layer {layer + 1}")
    ax.set_title(title, fontsize=LABELS + 1)
    ax.set_xlabel("activation value")
    ax.set_ylabel("share of values per bin")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=LABELS - 1)
