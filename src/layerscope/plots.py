"""The lecture figure: per-layer histograms of activations and backward signal, stats by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter
from PIL import Image

from layerscope.probes import Histogram, ProbeRecord
from layerscope.ravine import A, B
from layerscope.run_files import replacing

TICKS = 8  # pt: the smallest text in every figure
LABELS = 9

# activations share one x-range, as in the lecture; the backward signal can span orders of
# magnitude across layers, so each of its panels has its own range (σ in the title).
_ROWS = (("activation", "activation a", "tab:blue", True), ("backward", "backward signal dL/da", "tab:red", False))
LECTURE_HISTOGRAMS = tuple(row[0] for row in _ROWS)
"""The histograms the lecture figure draws (probes.jsonl keeps these, so a finished run can be drawn again)."""
SPIKE = 3.0  # a bin at 0 holding this many times its neighbour's count is a spike (a rectifier's zeros)


def zero_spike(h: Histogram) -> tuple[int, float] | None:
    """(bin, share of all values) of a spike at 0, such as a ReLU's outputs for negative inputs, or None.

    The share is the spike's bin less its neighbour's level, which estimates the values near, not at, 0.
    """
    if not (h.finite and h.num > 0 and h.min <= 0.0 <= h.max):
        return None
    counts = np.asarray(h.counts, dtype=float)
    span = h.max - h.min
    k = min(int((0.0 - h.min) / span * len(counts)), len(counts) - 1) if span > 0 else 0
    level = max([counts[i] for i in (k - 1, k + 1) if 0 <= i < len(counts)], default=0.0)
    if counts[k] < SPIKE * level or counts[k] - level < 0.02 * h.num:
        return None
    return k, (counts[k] - level) / h.num


def _spread(h: Histogram) -> float:
    return float(np.sqrt(max(h.sum_squares / h.num - (h.sum / h.num) ** 2, 0.0)))


def _histogram_panel(ax, h: Histogram, layer: int, color: str, rectifier: bool) -> None:
    """One layer's histogram (share of values per bin); a rectifier's spike at 0 is stated, not drawn."""
    if not (h.finite and h.num > 0):
        ax.set_title(f"layer {layer}\nnon-finite", fontsize=LABELS, color="crimson")
        return
    counts = np.asarray(h.counts, dtype=float)
    spike = zero_spike(h) if rectifier else None
    if spike is not None:
        counts[spike[0]] -= spike[1] * h.num  # what the neighbours suggest lies near 0; the rest is at 0
        where = "at 0" if h.min == 0.0 else "near 0"  # ReLU's zeros; a leaky ReLU's small negatives
        ax.text(0.97, 0.95, f"{spike[1]:.0%} {where}", transform=ax.transAxes, ha="right", va="top", fontsize=TICKS,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "lw": 0.5})
    if h.max > h.min:
        ax.stairs(counts / h.num, h.edges, fill=True, color=color, alpha=0.8)
    elif spike is None:  # every value equal (zero init): no width to draw
        ax.text(0.5, 0.5, f"all {h.min:.3g}", transform=ax.transAxes, ha="center", va="center", fontsize=TICKS)
    ax.set_title(f"layer {layer}\nσ={_spread(h):.2g}", fontsize=LABELS)


def _histogram_row(fig: Figure, grid, row: int, record: ProbeRecord, quantity: str, label: str, color: str,
                   shared: bool, rectifier: bool) -> None:
    hists = record.histograms[quantity]
    finite = [h for h in hists if h.finite]
    low = min((h.min for h in finite), default=-1.0)
    high = max((h.max for h in finite), default=1.0)
    first = None
    for layer, h in enumerate(hists):
        ax = fig.add_subplot(grid[row, layer], sharex=first if shared else None)
        first = first or ax
        _histogram_panel(ax, h, layer + 1, color, rectifier and quantity == "activation")
        ax.set_yticks([])
        ax.set_xlabel(label.split()[-1], fontsize=TICKS, labelpad=1)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.xaxis.get_offset_text().set_fontsize(TICKS)
        ax.tick_params(axis="x", labelsize=TICKS)
        if shared and high > low:
            ax.set_xlim(low, high)
        if layer == 0:
            ax.set_ylabel(f"{label}\nshare per bin", fontsize=LABELS)


def _by_layer_panels(left, right, record: ProbeRecord, full: bool = True) -> None:
    """Activation std by layer on ``left`` (``full``: also its mean and the saturated or dead fraction), the backward
    signal's std on ``right`` (log; ``full``: also the weight-gradient norm), the mean-field prediction dashed."""
    depth = len(record.histograms["activation"])
    layers = np.arange(1, depth + 1)
    stats = {k: np.array([np.nan if v is None else v for v in vs], dtype=float) for k, vs in record.stats.items()}
    theory = record.theory or {}
    if full:
        left.plot(layers, stats["activation_mean"], "o-", color="C0", label="activation mean")
    left.plot(layers, stats["activation_std"], "s-", color="C1", label="activation std" if full else "measured")
    if theory:
        left.plot(layers, theory["activation_std"], "k--", lw=1,
                  label="activation std, mean-field theory" if full else "mean-field theory")
    for key, style in (("saturated_fraction", "^--C2"), ("dead_fraction", "v--C3")) if full else ():
        if np.isfinite(stats[key]).any():
            left.plot(layers, stats[key], style, label=key.replace("_", " "))
    left.set_ylabel("activation mean, std;\nshare of units" if full else "activation std")
    for key, marker in (("backward_std", "o-C0"), ("weight_grad_norm", "s-C1"))[:2 if full else 1]:
        values = stats[key]
        if (values > 0).any():
            right.semilogy(layers, np.where(values > 0, values, np.nan), marker, label=key.replace("_", " "))
    if theory and all(v is not None and v > 0 for v in theory["backward_std"]):
        right.semilogy(layers, theory["backward_std"], "k--", lw=1, label="backward std, mean-field theory")
    right.set_ylabel("backward std, ‖dL/dW‖ (log)" if full else "backward signal std (log)")
    _log_ticks(right)
    if not right.get_legend_handles_labels()[0]:
        right.text(0.5, 0.5, "backward signal and weight\ngradients are exactly 0", ha="center", va="center",
                   transform=right.transAxes, fontsize=TICKS)
    for ax in (left, right):
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        ax.tick_params(labelsize=TICKS)
        ax.grid(alpha=0.3, which="both")
    for ax in (left, right) if full else (left,):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=TICKS)


def _log_ticks(ax) -> None:
    """A log axis with a few labels: at powers of ten, or, on an axis spanning less than a decade (where matplotlib
    labels every tick, and the labels overlap), at most five plain ones with one shared power of ten."""
    low, high = ax.dataLim.y0, ax.dataLim.y1
    ax.yaxis.set_minor_formatter(NullFormatter())
    if 0 < low and high < 10 * low:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.yaxis.set_major_formatter(ScalarFormatter())  # the shared power as "1e-5": no tiny superscript
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.yaxis.get_offset_text().set_fontsize(TICKS)


def _rectifier(record: ProbeRecord) -> bool:
    """Whether the run's activation is a rectifier (probes measure a dead fraction only for those)."""
    return bool(np.isfinite(np.array(record.stats.get("dead_fraction", []), dtype=float)).any())


def lecture_figure(record: ProbeRecord, title: str) -> Figure:
    """Histograms per layer (activations, backward signal) above the mean/std-by-layer curves."""
    depth = len(record.histograms["activation"])
    fig = Figure(figsize=(max(11.0, 1.6 * depth), 8.5), layout="constrained")
    grid = fig.add_gridspec(3, depth, height_ratios=(1, 1, 1.5))
    for row, (quantity, label, color, shared) in enumerate(_ROWS):
        _histogram_row(fig, grid, row, record, quantity, label, color, shared, _rectifier(record))
    half = depth // 2
    with rc_context({"axes.labelsize": LABELS + 1}):
        _by_layer_panels(fig.add_subplot(grid[2, :half]), fig.add_subplot(grid[2, half:]), record)
    fig.suptitle(f"{title} — step {record.step}", fontsize=12)
    return fig


def compact_figure(record: ProbeRecord, title: str) -> Figure:
    """The lecture figure's two by-layer curves alone, for TensorBoard's image cards (shown about 330 px wide):
    3.6 inches wide with 8-9 pt text, so its text is about 10 px tall there (rendered at 200 dpi, 720 px)."""
    with rc_context({"font.size": LABELS, "axes.labelsize": LABELS, "lines.markersize": 4}):
        fig = Figure(figsize=(3.6, 4.0), dpi=200, layout="constrained")
        axes = fig.subplots(2, 1)
        _by_layer_panels(*axes, record, full=False)
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        fig.suptitle(f"{title}\nstep {record.step}", fontsize=TICKS)
    return fig


def render(fig: Figure, path: Path | None = None) -> np.ndarray:
    """Draw ``fig`` once, save it as PNG at ``path`` (when given) and return its (H, W, 3) pixels."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
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
    axes[0].set_title("activation std by layer, step 0 (dashed: theory)", fontsize=LABELS)
    axes[1].set_title("backward signal std by layer, step 0", fontsize=LABELS)
    for ax, ylabel in zip(axes, ("activation std (log)", "backward signal std dL/da (log)")):
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if trained:
        axes[2].set_title("train loss per epoch", fontsize=LABELS)
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
