"""The lecture figure: per-layer histograms of activations and backward signal, stats by layer."""

from __future__ import annotations

import functools
import struct
import zlib
from math import cos, radians, sin
from pathlib import Path
from typing import Callable

import numpy as np
from isal import isal_zlib
from matplotlib import rc_context, rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.mathtext import MathTextParser
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

from layerscope.files import replacing
from layerscope.probe.record import LECTURE_HISTOGRAMS, STATS, Histogram, ProbeRecord

TICKS = 8  # pt: the smallest text in every figure
LABELS = 9

# activations share one x-range, as in the lecture; the backward signal can span orders of
# magnitude across layers, so each of its panels has its own range (σ in the title).
_ROWS = tuple(zip(LECTURE_HISTOGRAMS, ("activation a", "backward signal dL/da"), ("tab:blue", "tab:red"), (True, False)))
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


COLLAPSED = 0.05
"""A layer of a shared-range row whose values span less than this share of the row's range is collapsed: on the
shared range it would be a one-bin spike, so its panel is drawn on its own range, shaded and with a note."""
ZOOMED = "#fff4d6"  # the background of a panel drawn on its own range within a shared-range row


def number(x: float) -> str:
    """``x`` in at most two significant digits, readable at 8 pt: 0.21, 0.0024, 5.4e-4, 3e-7, 1.2e5 (no "e-07")."""
    if x == 0 or not np.isfinite(x):
        return f"{x:g}"
    text = f"{x:.2g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.1e}".replace(".0e", "e")
    mantissa, _, exponent = text.partition("e")
    return mantissa if not exponent else f"{mantissa}e{int(exponent)}"


class _HistogramPanel:
    """One layer's histogram (share of values per bin), redrawn per record; a rectifier's spike at 0 is stated, not
    drawn."""

    def __init__(self, ax, color: str) -> None:
        self.ax = ax
        self.bars = ax.stairs([0.0], [0.0, 1.0], fill=True, color=color, alpha=0.8)
        self.spike = ax.text(0.97, 0.95, "", transform=ax.transAxes, ha="right", va="top", fontsize=TICKS,
                             bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "lw": 0.5})
        self.flat = ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center", va="center", fontsize=TICKS)
        self.collapsed = ax.text(0.03, 0.95, "", transform=ax.transAxes, ha="left", va="top", fontsize=TICKS,
                                 bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "darkorange", "lw": 0.8})

    def update(self, h: Histogram, layer: int, rectifier: bool) -> bool:
        """Show ``h``; whether it drew bars (a non-finite or empty histogram, or one value, draws none)."""
        ax, drawn = self.ax, h.finite and h.num > 0
        spike = zero_spike(h) if drawn and rectifier else None
        self.bars.set_visible(drawn and h.max > h.min)
        self.spike.set_visible(spike is not None)
        self.flat.set_visible(drawn and h.max <= h.min and spike is None)  # every value equal (zero init)
        if not drawn:
            ax.set_title(f"layer {layer}\nnon-finite", fontsize=LABELS, color="crimson")
            return False
        counts = np.asarray(h.counts, dtype=float)
        if spike is not None:
            counts[spike[0]] -= spike[1] * h.num  # what the neighbours suggest lies near 0; the rest is at 0
            where = "at 0" if h.min == 0.0 else "near 0"  # ReLU's zeros; a leaky ReLU's small negatives
            self.spike.set_text(f"{spike[1]:.0%} {where}")
        if h.max > h.min:
            shares = counts / h.num
            self.bars.set_data(shares, h.edges)
            # what relim + autoscale would set (the bars stand on 0, a 5% margin above) without walking their path
            ax.set_ylim(0.0, (1 + rcParams["axes.ymargin"]) * shares.max() or 1.0)
        self.flat.set_text(f"all {number(h.min)}")
        ax.set_title(f"layer {layer}\nσ={number(_spread(h))}", fontsize=LABELS, color=rcParams["text.color"])
        return h.max > h.min

    def zoom(self, h: Histogram | None) -> None:
        """Mark the panel as drawn on its own range (``h``: the collapsed layer's histogram), or as on the row's
        shared range (None): a shaded background, the x label saying so, and a note of the range it spans."""
        ax = self.ax
        self.collapsed.set_visible(h is not None)
        ax.set_facecolor(ZOOMED if h is not None else rcParams["axes.facecolor"])
        if h is not None:
            spread = (f"±{number(max(abs(h.min), abs(h.max)))}" if h.min < 0 < h.max
                      else f"{number((h.min + h.max) / 2)}±{number((h.max - h.min) / 2)}")
            self.collapsed.set_text(f"collapsed: all\nin {spread}\nx-axis zoomed in")

    def label(self, name: str) -> None:
        """The x label ``name`` with the tick labels' shared power of ten and offset, which would otherwise stand in
        the corner beside it: "dL/da (×1e-11)", "a − 0.5 (×1e-6)"."""
        ax, formatter = self.ax, self.ax.xaxis.get_major_formatter()
        formatter.set_locs([t for t in ax.xaxis.get_majorticklocs()])
        shift, power = formatter.offset, formatter.orderOfMagnitude
        if shift:
            name = f"{name} {'−' if shift > 0 else '+'} {number(abs(shift))}"
        ax.xaxis.get_offset_text().set_visible(False)
        ax.set_xlabel(f"{name} (×1e{power})" if power else name, fontsize=TICKS, labelpad=1)


class _HistogramRow:
    """A row of histogram panels, one per layer: activations share one x-range, the backward signal's panels
    each have their own."""

    def __init__(self, fig: Figure, grid, row: int, depth: int, label: str, color: str, shared: bool) -> None:
        self.shared, self.panels, self.name = shared, [], label.split()[-1]
        for layer in range(depth):
            ax = fig.add_subplot(grid[row, layer])  # a shared row sets one range on every panel but a collapsed one
            ax.set_yticks([])
            ax.set_xlabel(label.split()[-1], fontsize=TICKS, labelpad=1)
            self.panels.append(_HistogramPanel(ax, color))
            # two or three ticks, their labels short: a power of ten beyond 1e-2..1e3 is one offset in the corner
            ax.xaxis.set_major_locator(MaxNLocator(nbins=2, steps=[1, 2, 2.5, 5, 10], min_n_ticks=2))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
            ax.xaxis.get_offset_text().set_fontsize(TICKS)
            ax.tick_params(axis="x", labelsize=TICKS)
            if layer == 0:
                ax.set_ylabel(f"{label}\nshare per bin", fontsize=LABELS)

    def update(self, hists: list[Histogram], rectifier: bool) -> None:
        finite = [h for h in hists if h.finite]
        low = min((h.min for h in finite), default=-1.0)
        high = max((h.max for h in finite), default=1.0)
        for layer, (panel, h) in enumerate(zip(self.panels, hists)):
            ax, drawn = panel.ax, panel.update(h, layer + 1, rectifier)
            # collapsed: on the shared range a one-bin spike, so drawn on its own range and marked as such
            collapsed = self.shared and drawn and high > low and h.max - h.min < COLLAPSED * (high - low)
            panel.zoom(h if collapsed else None)
            if self.shared and high > low and not collapsed:
                ax.set_xlim(low, high)
            elif drawn:  # the bars fill the panel, a margin keeps the labels of neighbouring panels apart
                margin = 0.05 * (h.max - h.min)
                ax.set_xlim(h.min - margin, h.max + margin)
            else:  # as an empty panel's
                ax.set_xlim(0.0, 1.0)
            panel.label(self.name)


class _ByLayerPanels:
    """Activation std by layer on ``left`` (``full``: also its mean, the saturated fraction, the dead fraction (units that
    pass no gradient) and, where it differs from the dead one, the inactive fraction (input ≤ 0)), the backward signal's
    std on ``right`` (log; ``full``: also the weight-gradient norm), the mean-field prediction dashed."""

    def __init__(self, left, right, full: bool = True) -> None:
        self.left, self.right, self.full = left, right, full
        self.legends: dict = {}  # (axes, its curves) -> their legend, built once
        plot = lambda ax, style, **kw: ax.plot([], [], style, **kw)[0]  # noqa: E731 - one line per curve
        self.lines = {"activation_mean": plot(left, "o-", color="C0", label="activation mean"),
                      "activation_std": plot(left, "s-", color="C1", label="activation std" if full else "measured"),
                      "theory_activation_std": plot(left, "k--", lw=1, label="activation std, mean-field theory"
                                                    if full else "mean-field theory"),
                      "saturated_fraction": plot(left, "^--C2", label="saturated fraction"),
                      "dead_fraction": plot(left, "v--C3", label="dead fraction (no gradient)"),
                      "inactive_fraction": plot(left, "<:C4", label="inactive fraction (input ≤ 0)"),
                      "backward_std": plot(right, "o-C0", label="backward std"),
                      "weight_grad_norm": plot(right, "s-C1", label="weight grad norm"),
                      "theory_backward_std": plot(right, "k--", lw=1, label="backward std, mean-field theory")}
        left.set_ylabel("activation mean, std;\nshare of units" if full else "activation std")
        right.set_ylabel("backward std, ‖dL/dW‖ (log)" if full else "backward signal std (log)")
        self.zero = right.text(0.5, 0.5, "backward signal and weight\ngradients are exactly 0", ha="center",
                               va="center", transform=right.transAxes, fontsize=TICKS)
        for ax in (left, right):
            ax.set_xlabel("layer")
            ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
            ax.tick_params(labelsize=TICKS)
            ax.grid(alpha=0.3, which="both")

    def update(self, record: ProbeRecord) -> None:
        depth = len(record.histograms["activation"])
        layers = np.arange(1, depth + 1)
        stats = {k: np.array([np.nan if v is None else v for v in vs], dtype=float) for k, vs in record.stats.items()}
        theory = record.theory or {}
        shown = {"activation_std": stats["activation_std"], "activation_mean": stats["activation_mean"] if self.full
                 else None, "theory_activation_std": np.asarray(theory["activation_std"], float) if theory else None}
        shown["saturated_fraction"] = _finite(stats, "saturated_fraction") if self.full else None
        dead, inactive = _finite(stats, "dead_fraction"), _finite(stats, "inactive_fraction")
        if self.full and dead is not None and (_rectifier(record) or (dead > 0).any()):
            shown["dead_fraction"] = dead
        if self.full and inactive is not None and not np.array_equal(inactive, dead):
            shown["inactive_fraction"] = inactive
        for key in ("backward_std", "weight_grad_norm")[:2 if self.full else 1]:
            shown[key] = np.where(stats[key] > 0, stats[key], np.nan) if (stats[key] > 0).any() else None
        if theory and all(v is not None and v > 0 for v in theory["backward_std"]):
            shown["theory_backward_std"] = np.asarray(theory["backward_std"], float)
        for key, line in self.lines.items():
            values = shown.get(key)
            line.set_visible(values is not None)
            if values is not None:
                line.set_data(layers, values)
        logged = any(shown.get(k) is not None for k in ("backward_std", "weight_grad_norm", "theory_backward_std"))
        self.right.set_yscale("log" if logged else "linear")
        self.zero.set_visible(not logged)
        for ax in (self.left, self.right):
            ax.relim(visible_only=True)
            ax.autoscale_view()
        if logged:
            _log_ticks(self.right)
        for ax in (self.left, self.right) if self.full else (self.left,):
            handles = tuple(line for line in self.lines.values() if line.axes is ax and line.get_visible())
            if handles and (ax, handles) not in self.legends:  # a legend finds its place as it is drawn
                self.legends[ax, handles] = ax.legend(handles=handles, fontsize=TICKS)
            ax.legend_ = self.legends.get((ax, handles))


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


def _finite(stats: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    """The statistic where any layer has a value (None when it is NaN throughout, or absent)."""
    values = stats.get(key)
    return values if values is not None and np.isfinite(values).any() else None


def _rectifier(record: ProbeRecord) -> bool:
    """Whether the run's activation is a rectifier (probes measure an inactive fraction only for those; a record
    written before that statistic existed had a dead fraction only for those)."""
    stats = record.stats
    return bool(np.isfinite(np.array(stats.get("inactive_fraction", stats.get("dead_fraction", [])), dtype=float)).any())


class _TextKeepingRenderer(RendererAgg):
    """Agg, keeping each text's raster and layout (``_kept_layout``): a figure drawn again for every probe draws
    mostly the same labels, ticks and legends, and rasterizing them is a sixth of a draw. The pixels are Agg's own."""

    texts: dict[tuple, tuple[np.ndarray, float, float, float]] = {}
    layouts: dict[tuple, tuple] = {}
    KEPT = 4096  # rasters, a few kB each; layouts
    mathtext = MathTextParser("agg")  # one for every figure: a parser keeps its parses (10 ms each), Agg makes one a draw

    def __init__(self, width, height, dpi):
        super().__init__(width, height, dpi)
        self.mathtext_parser = self.mathtext

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        """Agg's ``draw_text`` (matplotlib 3.7-3.10), the glyphs laid out and rasterized once per text and font."""
        if ismath:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        key = (s, hash(prop), bool(gc.get_antialiased()), self.dpi, get_hinting_flag())
        kept = self.texts.get(key)
        if kept is None:
            font = self._prepare_font(prop)
            font.set_text(s, 0, flags=get_hinting_flag())
            font.draw_glyphs_to_bitmap(antialiased=gc.get_antialiased())
            xo, yo = font.get_bitmap_offset()
            if len(self.texts) >= self.KEPT:
                del self.texts[next(iter(self.texts))]
            kept = self.texts[key] = (np.array(font.get_image()), font.get_descent() / 64.0, xo / 64.0, yo / 64.0)
        image, descent, xo, yo = kept
        self._renderer.draw_text_image(image, round(x + xo + descent * sin(radians(angle))),
                                       round(y + yo + descent * cos(radians(angle))) + 1, angle, gc)


_TEXT_LAYOUT = Text._get_layout


def _kept_layout(text: Text, renderer):
    """Matplotlib's ``Text._get_layout`` (3.7-3.10), kept per text, font and alignment when ``renderer`` keeps texts:
    a draw lays out each text two or three times (its extent, its place, its raster), a fifth of a draw."""
    if not isinstance(renderer, _TextKeepingRenderer):
        return _TEXT_LAYOUT(text, renderer)
    key = (text._get_wrapped_text(), hash(text._fontproperties), text.get_usetex(), text._parse_math, renderer.dpi,
           text.get_figure(root=True).dpi, text._linespacing, text.get_rotation(), text._get_multialignment(),
           text._horizontalalignment, text._verticalalignment, text.get_rotation_mode())
    kept = renderer.layouts.get(key)
    if kept is None:  # its bbox and lines are read, never changed, by matplotlib
        if len(renderer.layouts) >= renderer.KEPT:
            del renderer.layouts[next(iter(renderer.layouts))]
        kept = renderer.layouts[key] = _TEXT_LAYOUT(text, renderer)
    return kept


Text._get_layout = _kept_layout


class _Canvas(FigureCanvasAgg):
    """An Agg canvas whose renderer keeps text rasters (``_TextKeepingRenderer``)."""

    def get_renderer(self):
        """Agg's renderer for the figure's size, made again only when that changes."""
        key = (*self.figure.bbox.size, self.figure.dpi)
        if self._lastKey != key:
            self.renderer, self._lastKey = _TextKeepingRenderer(*key), key
        return self.renderer


class _Drawing:
    """A figure built once and drawn again for each record: only its data, texts and ranges change. Its first draw
    lays it out (constrained layout); later draws keep that layout, which is most of what a fresh figure costs."""

    def __init__(self, fig: Figure) -> None:
        self.figure, self.canvas, self.draws = fig, _Canvas(fig), 0

    def render(self, path: Path | None = None) -> np.ndarray:
        """Draw the figure as it is now, save it as PNG at ``path`` (when given); its (H, W, 3) pixels."""
        return _rgb(self._drawn(path)[0])

    def png(self, path: Path | None = None) -> tuple[bytes, tuple[int, int, int]]:
        """Draw the figure as it is now, save it as PNG at ``path`` (when given); the PNG and (H, W, 3)."""
        rgba, image = self._drawn(path)
        return image or png(rgba), (*rgba.shape[:2], 3)

    def _drawn(self, path: Path | None) -> tuple[np.ndarray, bytes | None]:
        if not self.draws:
            for ax in self.figure.axes:
                _ticks_once_per_draw(ax.xaxis, lambda: self.draws)
                _ticks_once_per_draw(ax.yaxis, lambda: self.draws)
        self.draws += 1
        drawn = _save(self.figure, path, self.canvas)
        self.figure.set_layout_engine("none")
        return drawn


def _ticks_once_per_draw(axis, draws: Callable[[], int]) -> None:
    """Have ``axis`` work out its ticks, and their labels' extents, once per draw (``draws()`` counts them) for one
    position and range of its axes: matplotlib does it three times, for the axis, its label's place and its spine's
    extent. Their lines are drawn together (``_draw_axis``)."""
    update_ticks, label_boxes, kept = axis._update_ticks, axis._get_ticklabel_bboxes, {}
    axis.draw = functools.partial(_draw_axis, axis)

    def _update_ticks():
        key = (draws(), *axis.get_view_interval(), *axis.axes.bbox.bounds)
        if kept.get("key") != key:
            kept.clear()
            kept.update(key=key, ticks=update_ticks())
        return kept["ticks"]

    def _get_ticklabel_bboxes(ticks, renderer=None):
        if ticks is not kept.get("ticks"):
            return label_boxes(ticks, renderer)
        if "boxes" not in kept:
            kept["boxes"] = label_boxes(ticks, renderer)
        return kept["boxes"]

    axis._update_ticks, axis._get_ticklabel_bboxes = _update_ticks, _get_ticklabel_bboxes


def _draw_axis(axis, renderer) -> None:
    """Matplotlib's ``Axis.draw`` (3.7-3.10) on Agg, its ticks' marks drawn a kind at a time, as one line each
    (``_drawn_together``), not a line a tick: a lecture figure's ~70 marks took a twelfth of its draw."""
    if not axis.get_visible():
        return
    ticks = axis._update_ticks()
    boxes = axis._get_ticklabel_bboxes(ticks, renderer)  # matplotlib's list: the extents kept for this draw
    ticks = [tick for tick in ticks if tick.get_visible()]
    for tick in ticks:
        tick.gridline.draw(renderer)
    for kind in ("tick1line", "tick2line"):
        _drawn_together([getattr(tick, kind) for tick in ticks], renderer)
    for tick in ticks:
        tick.label1.draw(renderer)
        tick.label2.draw(renderer)
    axis._update_label_position(renderer)
    axis.label.draw(renderer)
    axis._update_offset_text_position(*boxes)
    axis.offsetText.set_text(axis.major.formatter.get_offset())
    axis.offsetText.draw(renderer)
    axis.stale = False


def _look(line: Line2D) -> tuple:
    """What a tick's line looks like: lines that share it can be drawn as one."""
    return (line.get_visible(), id(line.get_transform()), line.get_linestyle(), line.get_linewidth(), line.get_color(),
            line.get_alpha(), line.get_marker(), line.get_markersize(), line.get_markeredgewidth(),
            line.get_markeredgecolor(), line.get_markerfacecolor(), line.get_clip_on(), id(line.get_clip_box()),
            line.get_zorder(), line.get_antialiased(), line.get_snap(), line.get_path_effects() == [])


def _drawn_together(marks: list[Line2D], renderer) -> None:
    """Draw tick marks, those that look alike (``_look``) as one line: the first of them holding all their points. Agg
    stamps a marker at each point of a line, blending each stamp on its own, so the pixels are those of one draw a
    mark (lines are not: where two touch, one path is blended once, two lines twice)."""
    groups: dict[tuple, list[Line2D]] = {}
    for line in marks:
        groups.setdefault(_look(line), []).append(line)
    for group in groups.values():
        first = group[0]
        if len(group) == 1 or first.get_linestyle() != "None":  # a line through the points would join the marks
            for line in group:
                line.draw(renderer)
            continue
        own = first.get_xdata(orig=True), first.get_ydata(orig=True)
        first.set_data(*(np.concatenate([getattr(line, f"get_{xy}data")(orig=True) for line in group]) for xy in "xy"))
        first.draw(renderer)
        first.set_data(*own)


class LectureFigure(_Drawing):
    """Histograms per layer (activations, backward signal) above the mean/std-by-layer curves, for ``depth`` layers."""

    def __init__(self, depth: int) -> None:
        super().__init__(Figure(figsize=(max(11.0, 1.6 * depth), 8.5), layout="constrained"))
        grid = self.figure.add_gridspec(3, depth, height_ratios=(1, 1, 1.5))
        self.rows = [_HistogramRow(self.figure, grid, row, depth, label, color, shared)
                     for row, (_, label, color, shared) in enumerate(_ROWS)]
        half = depth // 2
        with rc_context({"axes.labelsize": LABELS + 1}):
            self.curves = _ByLayerPanels(self.figure.add_subplot(grid[2, :half]),
                                         self.figure.add_subplot(grid[2, half:]))

    def update(self, record: ProbeRecord, title: str) -> "LectureFigure":
        """Show ``record``, titled ``title``."""
        for row, (quantity, *_) in zip(self.rows, _ROWS):
            row.update(record.histograms[quantity], _rectifier(record) and quantity == "activation")
        self.curves.update(record)
        self.figure.suptitle(f"{title} — step {record.step}", fontsize=12)
        return self


class CompactFigure(_Drawing):
    """The lecture figure's two by-layer curves alone, for TensorBoard's image cards (shown about 330 px wide):
    3.6 inches wide with 8-9 pt text, so its text is about 10 px tall there (rendered at 200 dpi, 720 px)."""

    def __init__(self) -> None:
        with rc_context({"font.size": LABELS, "axes.labelsize": LABELS, "lines.markersize": 4}):
            super().__init__(Figure(figsize=(3.6, 4.0), dpi=200, layout="constrained"))
            axes = self.figure.subplots(2, 1)
            self.curves = _ByLayerPanels(*axes, full=False)
            for ax in axes:
                ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))

    def update(self, record: ProbeRecord, title: str) -> "CompactFigure":
        """Show ``record``, titled ``title``."""
        with rc_context({"font.size": LABELS, "axes.labelsize": LABELS, "lines.markersize": 4}):
            self.curves.update(record)
            self.figure.suptitle(f"{title}\nstep {record.step}", fontsize=TICKS)
        return self


@functools.lru_cache(maxsize=8)
def drawings(depth: int) -> tuple[LectureFigure, CompactFigure]:
    """The lecture and compact figures of a ``depth``-layer run, built once per process and reused for every probe
    of every run of that depth. Each is laid out on one record (``layout_record``), not on the first one the process
    draws: a figure then looks the same whichever process (a worker, this one) draws it, and after what."""
    drawn = LectureFigure(depth), CompactFigure()
    for drawing in drawn:
        drawing.update(layout_record(depth), "the layout's record").render()
    return drawn


def layout_record(depth: int) -> ProbeRecord:
    """The record the reused figures are laid out on: a ``depth``-layer tanh net at step 0 whose tick labels are as
    wide as a run's usually get (-0.10, 10⁻¹¹: a vanishing backward signal) and reach the histograms' edges (-2.5 and
    2.5), with two-line titles, legends and the mean-field curves. A run's narrower labels leave a few pixels free."""
    shape = np.exp(-0.5 * np.linspace(-3.0, 3.0, 60) ** 2)
    counts = (5000 * shape / shape.sum()).round(2).tolist()
    stats = {name: [float("nan")] * depth for name in STATS}
    spread = np.linspace(0.21, 0.02, depth).tolist()
    backward = np.geomspace(1e-11, 1e-5, depth).tolist()
    stats.update(activation_mean=[-0.12] * depth, activation_std=spread, saturated_fraction=[0.0] * depth,
                 dead_fraction=[0.0] * depth, backward_std=backward, weight_grad_norm=[2e-7] * depth)
    histograms = {"activation": [Histogram.from_moments(-0.52, 0.52, 5000, 0.0, a, counts) for a in spread],
                  "backward": [Histogram.from_moments(-2.6 * b, 2.6 * b, 5000, 0.0, b, counts) for b in backward]}
    return ProbeRecord(0, stats, histograms, theory={"activation_std": spread, "backward_std": backward})


def lecture_figure(record: ProbeRecord, title: str) -> Figure:
    """A new lecture figure of ``record``."""
    return LectureFigure(len(record.histograms["activation"])).update(record, title).figure


def compact_figure(record: ProbeRecord, title: str) -> Figure:
    """A new compact figure of ``record`` (TensorBoard's image)."""
    return CompactFigure().update(record, title).figure


def render(fig: Figure, path: Path | None = None, canvas: FigureCanvasAgg | None = None) -> np.ndarray:
    """Draw ``fig`` once (on ``canvas``, or a new one), save it as PNG at ``path`` (when given); its (H, W, 3) pixels."""
    axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    for axis in axes:  # constrained layout asks each axis for its ticks six times or more in its one draw
        _ticks_once_per_draw(axis, lambda: 0)
    try:
        return _rgb(_save(fig, path, canvas)[0])
    finally:
        for axis in axes:  # the figure's own methods again: a later draw of a changed figure works its ticks out anew
            del axis._update_ticks, axis._get_ticklabel_bboxes, axis.draw


def _save(fig: Figure, path: Path | None, canvas: FigureCanvasAgg | None) -> tuple[np.ndarray, bytes | None]:
    """Draw ``fig``: its (H, W, 4) pixels, a view of the canvas's, and the PNG saved at ``path`` (None without)."""
    canvas = canvas or _Canvas(fig)
    canvas.draw()
    rgba, image = np.asarray(canvas.buffer_rgba()), None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image = png(rgba)
        with replacing(path) as tmp:
            tmp.write_bytes(image)
    return rgba, image


_PIXEL = np.dtype([("rgb", "V3"), ("alpha", "u1")])  # an RGBA pixel: its colour as one 3-byte item


def _rgb(rgba: np.ndarray) -> np.ndarray:
    """An opaque (H, W, 4) image's (H, W, 3) colours: its 3-byte pixels copied as one item each, twice as fast as
    numpy copies a slice of 3 of every 4 bytes."""
    return np.ascontiguousarray(rgba.view(_PIXEL)["rgb"]).view(np.uint8)


def png(rgba: np.ndarray) -> bytes:
    """An opaque (H, W, 4) uint8 image as RGB PNG bytes: rows unfiltered, deflated by ISA-L at its level 1. A figure is
    mostly flat colour, which deflate alone packs about as small as PIL's adaptive row filters do; ISA-L deflates a
    lecture figure in 0.5 ms (zlib at level 3: 4.8 ms, and 5% smaller)."""
    height, width, _ = rgba.shape
    rows = np.empty((height, 1 + 3 * width), np.uint8)  # each row: filter type 0 (none), then its RGB bytes
    rows[:, 0] = 0
    rows[:, 1:].view("V3")[...] = rgba.view(_PIXEL)["rgb"][..., 0]  # the colours copied straight into the rows
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, no interlace
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", isal_zlib.compress(rows, 1)) \
        + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
