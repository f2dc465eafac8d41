"""The lecture figure: per-layer histograms of activations and backward signal, stats by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter
from PIL import Image

from layerscope.files import replacing
from layerscope.probe.measure import Histogram, ProbeRecord

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
