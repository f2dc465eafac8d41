"""The lecture figure: per-layer histograms of activations and backward signal, stats by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from layerscope.probes import ProbeRecord
from layerscope.ravine import A, B

# activations share one x-range, as in the lecture; the backward signal can span orders of
# magnitude across layers, so each of its panels has its own range (σ in the title).
_ROWS = (("activation", "activation", "tab:blue", True), ("backward", "backward signal dL/da", "tab:red", False))


def _histogram_row(fig: Figure, grid, row: int, record: ProbeRecord, quantity: str, label: str, color: str,
                   shared: bool) -> None:
    hists = record.histograms[quantity]
    finite = [h for h in hists if h.finite]
    low = min((h.min for h in finite), default=-1.0)
    high = max((h.max for h in finite), default=1.0)
    first = None
    for layer, h in enumerate(hists):
        ax = fig.add_subplot(grid[row, layer], sharex=first if shared else None)
        first = first or ax
        if h.finite and h.num > 0:
            ax.stairs(np.asarray(h.counts) / h.num, h.edges, fill=True, color=color, alpha=0.8)
            std = np.sqrt(max(h.sum_squares / h.num - (h.sum / h.num) ** 2, 0.0))
            ax.set_title(f"layer {layer + 1}\nσ={std:.2g}", fontsize=8)
        else:
            ax.set_title(f"layer {layer + 1}\nnon-finite", fontsize=8, color="crimson")
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=6)
        if shared and high > low:
            ax.set_xlim(low, high)
        if layer == 0:
            ax.set_ylabel(label, fontsize=8)


def lecture_figure(record: ProbeRecord, title: str) -> Figure:
    """Histograms per layer (activations, backward signal) above the mean/std-by-layer curves."""
    depth = len(record.histograms["activation"])
    fig = Figure(figsize=(max(10.0, 1.5 * depth), 7.5), layout="constrained")
    grid = fig.add_gridspec(3, depth, height_ratios=(1, 1, 1.4))
    for row, (quantity, label, color, shared) in enumerate(_ROWS):
        _histogram_row(fig, grid, row, record, quantity, label, color, shared)
    layers = np.arange(1, depth + 1)
    stats = {k: np.array([np.nan if v is None else v for v in vs], dtype=float) for k, vs in record.stats.items()}
    half = depth // 2
    ax = fig.add_subplot(grid[2, :half])
    ax.plot(layers, stats["activation_mean"], "o-", label="activation mean")
    ax.plot(layers, stats["activation_std"], "s-", label="activation std")
    theory = record.theory or {}
    if theory:
        ax.plot(layers, theory["activation_std"], "k--", lw=1, label="activation std, mean-field theory")
    if np.isfinite(stats["saturated_fraction"]).any():
        ax.plot(layers, stats["saturated_fraction"], "^--", label="saturated fraction")
    if np.isfinite(stats["dead_fraction"]).any():
        ax.plot(layers, stats["dead_fraction"], "v--", label="dead fraction")
    ax.set_xlabel("layer")
    ax.set_xticks(layers)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[2, half:])
    for key, marker in (("backward_std", "o-"), ("weight_grad_norm", "s-")):
        values = stats[key]
        if (values > 0).any():
            ax.semilogy(layers, np.where(values > 0, values, np.nan), marker, label=key.replace("_", " "))
    if theory and all(v is not None and v > 0 for v in theory["backward_std"]):
        ax.semilogy(layers, theory["backward_std"], "k--", lw=1, label="backward std, mean-field theory")
    ax.set_xlabel("layer")
    ax.set_xticks(layers)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "backward signal and weight gradients are exactly 0", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"{title} — step {record.step}")
    return fig


def render(fig: Figure, path: Path) -> np.ndarray:
    """Draw ``fig`` once, save it as PNG at ``path`` and return its (H, W, 3) pixels."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


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
            axes[2].plot(steps, loss, "-", color=color, label=f"{label} ({result.status})")
    axes[0].set_title("activation std by layer, step 0 (dashed: theory)", fontsize=9)
    axes[1].set_title("backward signal std by layer, step 0", fontsize=9)
    for ax in axes[:2]:
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3, which="both")
    if trained:
        axes[2].set_title("train loss per epoch", fontsize=9)
        axes[2].set_xlabel("step")
        axes[2].set_yscale("log")
        axes[2].grid(alpha=0.3, which="both")
        axes[2].legend(fontsize=7)
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "all zero", ha="center", transform=ax.transAxes)
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
    fig.suptitle("f(x, y) = ½x² − ½y² + ¼y⁴ from (1, 10⁻⁴), a hair off the saddle")
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
