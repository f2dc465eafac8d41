"""The lecture figure: per-layer histograms of activations and backward signal, stats by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from layerscope.probes import ProbeRecord

_ROWS = (("activation", "activation", "tab:blue"), ("backward", "backward signal dL/da", "tab:red"))


def _histogram_row(fig: Figure, grid, row: int, record: ProbeRecord, quantity: str, label: str, color: str) -> None:
    hists = record.histograms[quantity]
    finite = [h for h in hists if h.finite]
    low = min((h.min for h in finite), default=-1.0)
    high = max((h.max for h in finite), default=1.0)
    first = None
    for layer, h in enumerate(hists):
        ax = fig.add_subplot(grid[row, layer], sharex=first)
        first = first or ax
        if h.finite and h.num > 0:
            ax.stairs(np.asarray(h.counts) / h.num, h.edges, fill=True, color=color, alpha=0.8)
            std = np.sqrt(max(h.sum_squares / h.num - (h.sum / h.num) ** 2, 0.0))
            ax.set_title(f"layer {layer + 1}\nσ={std:.2g}", fontsize=8)
        else:
            ax.set_title(f"layer {layer + 1}\nnon-finite", fontsize=8, color="crimson")
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=6)
        if high > low:
            ax.set_xlim(low, high)
        if layer == 0:
            ax.set_ylabel(label, fontsize=8)


def lecture_figure(record: ProbeRecord, title: str) -> Figure:
    """Histograms per layer (activations, backward signal) above the mean/std-by-layer curves."""
    depth = len(record.histograms["activation"])
    fig = Figure(figsize=(max(10.0, 1.5 * depth), 7.5), layout="constrained")
    grid = fig.add_gridspec(3, depth, height_ratios=(1, 1, 1.4))
    for row, (quantity, label, color) in enumerate(_ROWS):
        _histogram_row(fig, grid, row, record, quantity, label, color)
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
    if theory and np.isfinite(theory["backward_std"]).all():
        ax.semilogy(layers, theory["backward_std"], "k--", lw=1, label="backward std, mean-field theory")
    ax.set_xlabel("layer")
    ax.set_xticks(layers)
    ax.legend(fontsize=8)
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
