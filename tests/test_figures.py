"""The run's own figures: every panel labelled, tick labels of 8 pt or more that do not overlap, a rectifier's
spike at 0 stated as a share, and a compact image that TensorBoard's cards show legibly."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from matplotlib.text import Text
from PIL import Image

from layerscope.probe import figure_workers
from layerscope.probe.figures import (CompactFigure, LectureFigure, compact_figure, drawings, lecture_figure, number,
                                      render, zero_spike)
from layerscope.probe.measure import histogram_summary
from layerscope.probe.record import LECTURE_HISTOGRAMS, STATS, Histogram, ProbeRecord
from layerscope.train.finish import figure_records

DEPTH = 10
TB_CARD_PX = 330  # how wide TensorBoard 2.21 shows an image card in a 1400 px window (IMAGES and TIME SERIES)


def histogram(values: np.ndarray, bins: int = 60) -> Histogram:
    """``values`` binned as a probe bins them."""
    row = histogram_summary(torch.from_numpy(values), bins).tolist()
    return Histogram.from_moments(*row[:5], counts=row[5:])


def record(activation, seed: int = 0) -> ProbeRecord:
    """A probe of a 10-layer net: pre-activations N(0, 1), backward signals N(0, (1e-4 l)²), the theory on the data."""
    rng = np.random.default_rng(seed)
    pre = [rng.normal(size=5000) for _ in range(DEPTH)]
    stats = {name: [float("nan")] * DEPTH for name in STATS}
    stats.update(activation_mean=[0.4] * DEPTH, activation_std=[0.6] * DEPTH, weight_grad_norm=[0.1] * DEPTH,
                 backward_std=np.linspace(1.3e-4, 2.1e-4, DEPTH).tolist())  # under a decade: crowded log labels
    stats["dead_fraction"] = [0.0] * DEPTH  # every activation has one
    if activation is relu:  # probes measure an inactive fraction for rectifiers only
        stats["inactive_fraction"] = [0.0] * DEPTH
    hists = {"activation": [histogram(activation(p)) for p in pre],
             "backward": [histogram(rng.normal(scale=1e-4 * (layer + 1), size=5000)) for layer in range(DEPTH)]}
    theory = {"activation_std": [0.58] * DEPTH, "backward_std": stats["backward_std"]}
    return ProbeRecord(50, stats, hists, theory=theory)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def test_zero_spike_is_a_rectifiers_share_at_zero_and_nothing_else():
    rng = np.random.default_rng(1)
    index, share = zero_spike(histogram(relu(rng.normal(size=20000))))
    assert index == 0 and share == pytest.approx(0.5, abs=0.02)
    assert zero_spike(histogram(np.tanh(rng.normal(size=20000)))) is None
    assert zero_spike(histogram(rng.normal(scale=1e-3, size=20000))) is None  # collapsed, but no spike
    assert zero_spike(histogram(np.zeros(100))) == (0, 1.0)  # zero init: everything at 0


def shown(ax) -> list[Text]:
    """The texts drawn in ``ax`` (a reused figure keeps its notes hidden when they do not apply)."""
    return [t for t in ax.texts if t.get_visible()]


def _labels(fig) -> list[Text]:
    return [t for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
            for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True) if t.get_visible() and t.get_text()]


def assert_no_overlap(fig) -> None:
    """No two tick labels of one axis overlap (call after drawing)."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = axis.get_ticklabels() + axis.get_ticklabels(minor=True)
            boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
            assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), ax.get_ylabel()


def test_lecture_figure_labels_every_panel_with_legible_ticks_and_states_the_relu_spike():
    fig = lecture_figure(record(relu), "10x500 relu")
    render(fig)
    histograms, curves = fig.axes[:2 * DEPTH], fig.axes[2 * DEPTH:]
    assert all(ax.get_xlabel() for ax in fig.axes)
    assert histograms[0].get_ylabel() and histograms[DEPTH].get_ylabel() and all(ax.get_ylabel() for ax in curves)
    assert min(t.get_fontsize() for t in _labels(fig)) >= 8
    assert_no_overlap(fig)
    spikes = [t.get_text() for ax in histograms[:DEPTH] for t in shown(ax)]
    assert len(spikes) == DEPTH and all(s.endswith("% at 0") and 45 <= int(s.split("%")[0]) <= 55 for s in spikes)
    assert not [t for ax in histograms[DEPTH:] for t in shown(ax)]  # the backward row has no spike to state
    tallest = max(p.get_path().vertices[:, 1].max() for p in histograms[0].patches)
    assert tallest < 0.2  # the spike's 50% is stated, not drawn: the positive part fills the panel


def test_tanh_histograms_have_no_spike_label():
    fig = lecture_figure(record(np.tanh), "10x500 tanh")
    assert not [t for ax in fig.axes[:DEPTH] for t in shown(ax)]


def test_compact_figure_for_tensorboard_is_legible_at_card_size():
    fig = compact_figure(record(np.tanh), "10x500 tanh, init xavier_normal, bn none, sgd lr=0.05")
    height, width, _ = render(fig).shape
    shown = TB_CARD_PX / width  # TensorBoard scales the image to its card
    texts = _labels(fig) + [ax.xaxis.label for ax in fig.axes] + [ax.yaxis.label for ax in fig.axes]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes) and len(fig.axes) == 2
    assert min(t.get_fontsize() for t in texts) * fig.dpi / 72 * shown >= 9  # px on screen
    assert width <= 800 and height <= 900
    assert_no_overlap(fig)


def _contents(fig) -> list:
    """What a person reads in a figure: every visible text and every visible line's data, in drawing order."""
    out = [fig.get_suptitle()]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale(), *map(np.round, ax.get_xlim(), [6] * 2)]
        out += [t.get_text() for t in shown(ax) + _labels_of(ax)]
        out += [(line.get_label(), np.round(line.get_ydata(), 9).tolist()) for line in ax.lines if line.get_visible()]
        out += [p.get_path().vertices.round(9).tolist() for p in ax.patches if p.get_visible()]
        legend = ax.get_legend()
        out.append([t.get_text() for t in legend.get_texts()] if legend else None)
    return out


def _labels_of(ax) -> list[Text]:
    return [t for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("kind", ["lecture", "compact"])
def test_a_reused_figure_shows_what_a_new_one_shows(kind):
    """Figures are built once per process and redrawn with each record's data: after showing a relu probe with
    its theory, a tanh probe without theory and with a non-finite layer reads exactly as in a new figure."""
    reused = LectureFigure(DEPTH) if kind == "lecture" else CompactFigure()
    first, second = record(relu), record(np.tanh, seed=1)
    second.theory = None
    second.histograms["backward"][3] = Histogram(float("nan"), float("nan"), 5000, float("nan"), float("nan"), [0.0] * 60)
    reused.update(first, "first").render()
    reused.figure.set_layout_engine("constrained")  # lay it out again, as a new figure is: then pixels compare too
    pixels = reused.update(second, "second").render()
    new = lecture_figure(second, "second") if kind == "lecture" else compact_figure(second, "second")
    expected = render(new)
    assert _contents(reused.figure) == _contents(new)
    assert (np.abs(pixels.astype(int) - expected).sum(-1) > 0).mean() < 0.02  # a text may sit a pixel apart


def test_figures_of_a_run_are_its_first_and_last_probe_unless_asked_for_every_one():
    records = [ProbeRecord(step, {}) for step in (0, 50, 100, 119)]
    assert [r.step for r in figure_records(records, True)] == [0, 119]
    assert [r.step for r in figure_records(records, "every")] == [0, 50, 100, 119]
    assert figure_records(records, False) == [] and figure_records([], True) == []
    assert [r.step for r in figure_records(records[:1], True)] == [0]  # a probe-only run: one figure


def test_worker_processes_draw_the_figures_this_process_would(tmp_path):
    """A stack's members hand their figures to worker processes: the PNG a worker writes and the TensorBoard image it
    returns are, pixel for pixel, the figures this process draws from the same record (as probes.jsonl keeps it)."""
    kept = ProbeRecord.from_json(record(np.tanh).to_json(LECTURE_HISTOGRAMS))
    figures = figure_workers.RunFigures("10x500 tanh", lambda step: tmp_path / "probe.png", many=True)
    figures.begin(kept)
    [future] = figures.futures()
    step, data, shape = future.result(timeout=120)
    assert step == kept.step and shape == (800, 720, 3)
    lecture, compact = drawings.__wrapped__(DEPTH)  # built as the worker's are: laid out on layout_record
    assert np.array_equal(np.asarray(Image.open(tmp_path / "probe.png").convert("RGB")),
                          lecture.update(kept, "10x500 tanh").render())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
                          compact.update(kept, "10x500 tanh").render())


def test_a_reused_figure_looks_the_same_whatever_its_process_drew_before():
    """Reused figures are laid out on one record (layout_record), not on the first one a process draws: a probe's
    figure is the same from a process that drew an extreme record first (a collapsed net) as from one that drew
    nothing before, and that record's own tick labels do not overlap in that layout."""
    extreme, later = collapsed_record(), record(np.tanh, seed=1)
    before, fresh = drawings.__wrapped__(DEPTH), drawings.__wrapped__(DEPTH)
    for drew_before, drew_fresh in zip(before, fresh):
        drew_before.update(extreme, "10x500 tanh, init normal(std=0.01)").render()
        assert_no_overlap(drew_before.figure)
        assert np.array_equal(drew_before.update(later, "10x500 tanh").render(),
                              drew_fresh.update(later, "10x500 tanh").render())


def collapsed_record() -> ProbeRecord:
    """A tanh net with small init: activations shrink 5x per layer (layers 3-10 collapse), backward signals span
    1e-11 to 1e8 with one layer far from 0 (an offset), as `init=normal init.std=0.01` and worse give."""
    rng = np.random.default_rng(2)
    stats = {name: [float("nan")] * DEPTH for name in STATS}
    stats.update(activation_mean=[0.0] * DEPTH, activation_std=[0.2 * 0.2 ** k for k in range(DEPTH)],
                 backward_std=[10.0 ** (k - 11) for k in range(DEPTH)], weight_grad_norm=[1e-7] * DEPTH)
    acts = [histogram(np.tanh(rng.normal(scale=0.2 * 0.2 ** k, size=5000))) for k in range(DEPTH)]
    scales = [1e-11, 1e-9, 1e-7, 1e-5, 1e-3, 0.1, 10.0, 1e3, 1e6, 1e8]
    back = [histogram(rng.normal(scale=s, size=5000) + (1e6 if k == 8 else 0.0)) for k, s in enumerate(scales)]
    return ProbeRecord(0, stats, {"activation": acts, "backward": back})


def _bars_width(ax) -> float:
    """The share of the panel's x-range that its visible bars span (0 when none are drawn)."""
    bars = [p for p in ax.patches if p.get_visible()]
    if not bars:
        return 0.0
    x = np.concatenate([p.get_path().vertices[:, 0] for p in bars])
    low, high = ax.get_xlim()
    return (x.max() - x.min()) / (high - low)


def test_a_collapsed_layer_is_drawn_on_its_own_range_and_said_to_be_collapsed():
    rec = collapsed_record()
    fig = lecture_figure(rec, "10x500 tanh, init normal(std=0.01)")
    render(fig)
    activations, backward = fig.axes[:DEPTH], fig.axes[DEPTH:2 * DEPTH]
    for ax in activations + backward:  # no empty panel: bars across a fair part of it, or a note
        assert _bars_width(ax) > 0.05 or shown(ax), ax.get_title()
    spans = [h.max - h.min for h in rec.histograms["activation"]]
    widest = max(h.max for h in rec.histograms["activation"]) - min(h.min for h in rec.histograms["activation"])
    collapsed = [s < 0.05 * widest for s in spans]
    assert collapsed[:2] == [False, False] and all(collapsed[3:])
    for ax, small, h in zip(activations, collapsed, rec.histograms["activation"]):
        notes = [t.get_text() for t in shown(ax)]
        if small:  # its own range, shaded, the range it spans stated
            assert _bars_width(ax) > 0.8 and notes and notes[0].startswith("collapsed")
            assert "zoomed" in notes[0] and ax.get_facecolor() != activations[0].get_facecolor()
        else:  # the lecture's shared range
            assert not notes and ax.get_xlim() == activations[0].get_xlim()
    for ax in backward:
        assert _bars_width(ax) > 0.8 and not shown(ax)
    for ax in activations + backward:  # σ written as 3e-7, not 3e-07 or 0.0000003
        sigma = ax.get_title().split("σ=")[1]
        assert re.fullmatch(r"\d{1,3}(\.\d+)?|\d(\.\d)?e-?[1-9]\d?", sigma) and len(sigma) <= 7, sigma
    assert_no_overlap(fig)


def test_backward_tick_labels_are_few_short_and_apart_across_the_row():
    fig = lecture_figure(collapsed_record(), "10x500 tanh")
    render(fig)
    renderer = fig.canvas.get_renderer()
    row = fig.axes[DEPTH:2 * DEPTH]
    boxes = []
    for ax in row:
        low, high = ax.get_xlim()
        labels = [t for t in ax.xaxis.get_ticklabels() if t.get_visible() and t.get_text()
                  and low <= t.get_position()[0] <= high]  # the labels drawn
        assert 2 <= len(labels) <= 3 and all(len(t.get_text()) <= 5 for t in labels), [t.get_text() for t in labels]
        assert not ax.xaxis.get_offset_text().get_visible()  # the power of ten is in the x label instead
        boxes += [t.get_window_extent(renderer) for t in labels] + [ax.xaxis.label.get_window_extent(renderer)]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert row[0].get_xlabel() == "dL/da (×1e-11)" and row[8].get_xlabel() == "dL/da (×1e6)"


def test_numbers_in_the_figure_are_short():
    assert [number(x) for x in (0.21, 0.0024, 5.4e-4, 3e-7, 1.23e5, 0.0, -2.5e-11)] == [
        "0.21", "0.0024", "5.4e-4", "3e-7", "1.2e5", "0", "-2.5e-11"]


_CHILD = """
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

def child():
    from layerscope.probe import figure_workers
    figure_workers.warm(1, 2)
    figure_workers._workers().submit(int).result()  # its figure worker is up, and idle

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(child).result()
    print("exited")
"""


def test_a_worker_process_with_figure_workers_of_its_own_exits(tmp_path):
    """A process that is itself a multiprocessing worker (``make reproduce`` runs experiments in some) joins its
    children as it exits, without running atexit: its figure workers must be stopped first, or it waits forever."""
    import subprocess
    import sys

    (tmp_path / "child.py").write_text(_CHILD)
    proc = subprocess.run([sys.executable, str(tmp_path / "child.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "exited", proc.stderr


def test_what_a_redrawn_figure_keeps_draws_plain_matplotlib_s_pixels_again_and_again(monkeypatch):
    """A figure redrawn per probe keeps its texts' rasters, works its ticks out once per draw and keeps a legend per
    set of curves: its pixels equal plain matplotlib's (an Agg canvas, ticks worked out as often as matplotlib does,
    a new legend each time), on every redraw (each with other texts and curves: titles, ticks, the step, the dead
    fraction of a rectifier)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from layerscope.probe import figures

    kept, plain = LectureFigure(DEPTH), LectureFigure(DEPTH)
    plain.canvas = FigureCanvasAgg(plain.figure)
    with monkeypatch.context() as patch:
        patch.setattr(figures, "_ticks_once_per_draw", lambda axis, drawing: None)
        plain.render()  # its axes as matplotlib made them, laid out as the other
    kept.render()
    assert type(kept.canvas) is not FigureCanvasAgg
    for seed, activation in ((0, np.tanh), (1, relu), (2, np.tanh), (0, relu), (0, np.tanh)):
        plain.curves.legends.clear()
        shown = [d.update(record(activation, seed), f"10x500 seed {seed}").render() for d in (kept, plain)]
        assert np.array_equal(*shown)
    assert len(kept.curves.legends) == 3  # on the left with and without the dead fraction, one on the right


def test_a_figure_drawn_once_draws_plain_matplotlib_s_pixels():
    """``render`` works each axis's ticks out once per layout pass and each math text (a log axis's 10⁻³) once per
    process: its pixels equal plain matplotlib's (a new Agg canvas), a figure drawn again equals it again, and a figure
    changed after a render (another tick locator) is drawn as matplotlib draws it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from layerscope.probe.figures import render

    def figure(scale: float) -> Figure:
        fig = Figure(figsize=(8, 3), layout="constrained")
        for ax, y in zip(fig.subplots(1, 2), (scale * 10.0 ** -np.arange(1, 8), scale * np.sin(np.arange(1, 8)))):
            ax.plot(np.arange(1, 8), y, "o-", label=f"scale {scale}")
            ax.set_yscale("log" if y.min() > 0 else "linear")
            ax.legend()
            ax.set_xlabel("layer")
            ax.grid(alpha=0.3, which="both")  # 6 decades in 2 inches: minor grid lines touch
        fig.suptitle(f"scale {scale}")
        return fig

    def plain(fig: Figure) -> np.ndarray:
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3]

    for scale in (1.0, 1e3, 1.0):
        assert np.array_equal(render(figure(scale)), plain(figure(scale)))
    fig, ref = figure(1.0), figure(1.0)
    for _ in range(2):  # a second draw starts its layout from the first one's: a few pixels move, in matplotlib too
        assert np.array_equal(render(fig), plain(ref))
    for f in (fig, ref):  # the layout kept as it is: each axis where it was, the same key to its ticks as before
        f.set_layout_engine("none")
        f.axes[1].xaxis.set_major_locator(MaxNLocator(3))
    assert np.array_equal(render(fig), plain(ref))


_HEAVY_MAIN = """
import torch  # this process's main module loads torch, as make reproduce's and the benchmarks' do

from layerscope.probe import figure_workers

if __name__ == "__main__":
    figure_workers.warm(1, 2)
    print(figure_workers._submit(eval, "sorted({'torch', 'matplotlib'} & set(__import__('sys').modules))").result())
"""


def test_a_figure_worker_loads_matplotlib_not_its_parents_main_module(tmp_path):
    """A spawned process imports its parent's main module by default; a figure worker does not, so it loads matplotlib
    for its figures and not torch (or whatever else the command's main module loads)."""
    import subprocess
    import sys

    (tmp_path / "heavy.py").write_text(_HEAVY_MAIN)
    proc = subprocess.run([sys.executable, str(tmp_path / "heavy.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "['matplotlib']", proc.stderr
