"""The figures of the lecture's experiments: comparisons of runs, the ravine, the saddle, step sizes, weight magnitudes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from layerscope.lecture.ravine import A, B
from layerscope.probe.figures import LABELS, TICKS, render


def comparison_figure(results: dict, title: str, path: Path) -> Path:
    """Variants side by side: activation std and backward std by layer at step 0, and loss curves."""
    trained = any(r.metrics for r in results.values())
    fig = Figure(figsize=(15 if trained else 10, 4.2), layout="constrained")
    axes = fig.subplots(1, 3 if trained else 2)
    for index, (label, result) in enumerate(results.items()):
        if not result.probes:
            continue
        color = f"C{index % 10}"
        layers = np.arange(1, len(result.probes[0].stats["activation_std"]) + 1)
        std = result.stat("activation_std")
        if (std > 0).any():
            axes[0].semilogy(layers, np.where(std > 0, std, np.nan), "o-", color=color, label=label)
        theory = result.theory("activation_std")
        if np.isfinite(theory).all() and (theory > 0).all() and len(theory) == len(layers):
            axes[0].semilogy(layers, theory, "--", color=color, lw=1)
        backward = result.stat("backward_std")
        if (backward > 0).any():
            axes[1].semilogy(layers, np.where(backward > 0, backward, np.nan), "o-", color=color, label=label)
        if trained:
            steps, loss = result.curve("train_loss")
            others = result.seeds[1:]
            seeds = f", {len(others) + 1} seeds" if others else ""
            axes[2].plot(steps, loss, "-", color=color, label=f"{label} ({result.status}{seeds})")
            for other in others:  # the other seeds, thin: how far one seed's curve is from luck
                axes[2].plot(*other.curve("train_loss"), "-", color=color, lw=0.8, alpha=0.35)
    axes[0].set_title("activation std by layer, step 0 (dashed: theory)", fontsize=LABELS)
    axes[1].set_title("backward signal std by layer, step 0", fontsize=LABELS)
    for ax, ylabel in zip(axes, ("activation std (log)", "backward signal std dL/da (log)")):
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if trained:
        several = any(len(r.seeds) > 1 for r in results.values())
        axes[2].set_title("train loss per epoch" + (" (thin: the other seeds)" if several else ""), fontsize=LABELS)
        axes[2].set_xlabel("step")
        axes[2].set_ylabel("train loss (log)")
        axes[2].set_yscale("log")
        axes[2].legend(fontsize=TICKS)
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=TICKS)
        else:
            ax.text(0.5, 0.5, "all zero", ha="center", transform=ax.transAxes)
    for ax in axes:
        ax.tick_params(labelsize=LABELS)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    render(fig, path)
    return path


def ravine_figure(trajectories: list, function, path: Path) -> Path:
    """Optimizer paths drawn on the ravine's contours."""
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    x, y = np.meshgrid(np.linspace(-9, 3, 300), np.linspace(-2.5, 2.5, 200))
    values = function(torch.from_numpy(np.stack([x, y], -1))).numpy()
    ax.contour(x, y, values, levels=np.geomspace(0.01, values.max(), 18), colors="0.75", linewidths=0.7)
    for index, t in enumerate(trajectories):
        pts = np.clip(t.points, [-9, -2.5], [3, 2.5])
        steps = "never" if not np.isfinite(t.steps_to_min) else f"{int(t.steps_to_min)} steps"
        ax.plot(pts[:, 0], pts[:, 1], ".-", ms=2, lw=1, color=f"C{index}", label=f"{t.name} (lr {t.lr:g}): {steps}")
    ax.plot([0], [0], "k*", ms=12)
    ax.set_xlim(-9, 3)
    ax.set_ylim(-2.5, 2.5)
    ax.set_xlabel("x (flat direction)")
    ax.set_ylabel("y (steep direction)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"f(x, y) = ½({A:g} x² + {B:g} y²): paths to the minimum ★ (each optimizer at its best lr)")
    render(fig, path)
    return path


def weight_magnitude_figure(weights: dict[str, np.ndarray], near_zero: dict[str, float], title: str,
                            path: Path) -> Path:
    """Histograms of |w| on a log axis per variant, with the near-zero threshold(s) dashed."""
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    magnitudes = {label: np.abs(w[w != 0]) for label, w in weights.items()}
    low = min(float(m.min()) for m in magnitudes.values() if len(m))
    high = max(float(m.max()) for m in magnitudes.values() if len(m))
    edges = np.geomspace(max(low, high * 1e-9), high, 80)
    for index, (label, m) in enumerate(magnitudes.items()):
        color = f"C{index % 10}"
        ax.hist(m, bins=edges, histtype="step", color=color, lw=1.5, density=False, label=label)
    for threshold in sorted(set(near_zero.values())):
        ax.axvline(threshold, color="0.3", ls="--", lw=1, label=f"near zero: |w| < {threshold:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|w| (hidden-layer weights, end of training)", fontsize=10)
    ax.set_ylabel("number of weights", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.suptitle(title)
    render(fig, path)
    return path


def saddle_figure(paths: list, function, escaped: float, path: Path) -> Path:
    """Optimizer paths on the saddle's contours (left) and |y| per step on a log axis (right)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    x, y = np.meshgrid(np.linspace(-1.5, 1.5, 200), np.linspace(-0.3, 1.4, 200))
    values = function(torch.from_numpy(np.stack([x, y], -1))).numpy()
    left.contour(x, y, values, levels=20, colors="0.75", linewidths=0.7)
    for index, p in enumerate(paths):
        color, steps = f"C{index}", np.arange(len(p.points))
        left.plot(p.points[:, 0], p.points[:, 1], ".-", ms=2, lw=1, color=color, label=p.name)
        right.semilogy(steps, np.abs(p.points[:, 1]), "-", color=color,
                       label=f"{p.name}: escapes at step {p.escape_step:g}")
    left.plot([0], [0], "kx", ms=10, label="saddle")
    left.plot([0], [1], "k*", ms=12, label="minimum")
    left.set_xlabel("x", fontsize=10)
    left.set_ylabel("y (the unstable direction)", fontsize=10)
    left.legend(fontsize=9)
    right.axhline(escaped, color="0.3", ls="--", lw=1, label=f"escaped: |y| > {escaped:g}")
    right.set_xlabel("step", fontsize=10)
    right.set_ylabel("|y|", fontsize=10)
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=9)
    for ax in (left, right):
        ax.tick_params(labelsize=9)
    start = paths[0].points[0]
    fig.suptitle(f"f(x, y) = ½x² − ½y² + ¼y⁴ from ({start[0]:g}, {start[1]:g}), a hair off the saddle")
    render(fig, path)
    return path


def step_size_figure(curves: dict[str, tuple], guides: dict[str, tuple], path: Path) -> Path:
    """Each optimizer's (steps, step per weight in units of α), log-log, with the theory's guides dashed."""
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for index, (label, (steps, values)) in enumerate(curves.items()):
        ax.loglog(steps + 1, values, "o-", color=f"C{index}", lw=1.5, ms=3, label=label)
        if label in guides:
            ax.loglog(guides[label][0] + 1, guides[label][1], "--", color=f"C{index}", lw=1, label=f"{label}: theory")
    ax.set_xlabel("step t + 1", fontsize=10)
    ax.set_ylabel("|ΔW| per weight / α (median layer)", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.suptitle("AdaGrad vs RMSProp: the step per weight (AdaGrad's guide 1/√t, RMSProp's α)")
    render(fig, path)
    return path


def layer_stat_figure(results: dict, stats: dict[str, str], title: str, path: Path) -> Path:
    """One panel per statistic (name: axis label): its value by layer at the last probe for each variant, the other
    seeds thin."""
    fig = Figure(figsize=(5.5 * len(stats), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(stats)))
    for ax, (stat, label) in zip(axes, stats.items()):
        for index, (name, result) in enumerate(results.items()):
            color = f"C{index % 10}"
            for i, run in enumerate(result.seeds or [result]):
                if not run.probes:
                    continue
                values = run.stat(stat, -1)
                layers = np.arange(1, len(values) + 1)
                if i == 0:
                    ax.plot(layers, values, "o-", color=color, label=name)
                else:
                    ax.plot(layers, values, "-", color=color, lw=0.8, alpha=0.35)
        ax.set_title(f"{label} by layer, last probe (thin: the other seeds)", fontsize=LABELS)
        ax.set_xlabel("layer")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=LABELS)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=TICKS)
    fig.suptitle(title)
    render(fig, path)
    return path
