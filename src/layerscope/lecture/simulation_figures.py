"""The figures of the simulated experiments (21–24): lean, with fixed margins (constrained layout would double each
figure's drawing time) and linear axes where they serve, each drawn once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from layerscope.lecture.local_minimum import TILT
from layerscope.probe.figures import LABELS, TICKS, render

EARLY = 60  # steps shown of a path over time: the oscillation lives in the first few dozen
NEAR = 3.0  # residuals shown: smooth L1's quadratic zone (|r| < 1) and beyond; the statements read ±100


def _figure(width: float, height: float, rows: int = 1, columns: int = 1):
    """A figure of ``rows`` × ``columns`` axes with fixed margins."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, columns, squeeze=False)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.5 / height * rows ** 0.3,
                        top=1 - 0.45 / height, wspace=0.28, hspace=0.38)
    return fig, axes


def _finish(fig: Figure, title: str, path: Path, legends: tuple[str, ...]) -> Path:
    """Ticks, grids, the legends at ``legends`` (one place per axes, in order: matplotlib's "best" search costs as
    much as drawing the rest), the title; drawn once to ``path``."""
    for ax, where in zip(fig.axes, legends):
        ax.tick_params(labelsize=TICKS)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=TICKS, loc=where)
    fig.suptitle(title, fontsize=LABELS + 1)
    render(fig, path)
    return path


def ravine_rates_figure(rates, limit: float, same: float, path: Path) -> Path:
    """Each optimizer's steps to the minimum over α, SGD's limit dashed (left); the steep coordinate y over the
    first steps at the same α (solid) and at the larger one (dotted) (right)."""
    fig, ((left, right),) = _figure(11, 4, 1, 2)
    runs = {name: sorted([*ds, *([rates.larger[name]] if name in rates.larger else [])], key=lambda d: d.lr)
            for name, ds in {**rates.grid, "sgd": rates.sgd}.items()}
    finite = [d.steps_to_min for ds in runs.values() for d in ds if np.isfinite(d.steps_to_min)]
    top = 1.1 * max(finite)
    for index, (name, ds) in enumerate(runs.items()):
        lrs = np.array([d.lr for d in ds])
        steps = np.array([d.steps_to_min for d in ds])
        left.plot(lrs, np.where(np.isfinite(steps), steps, np.nan), "o-", color=f"C{index}", ms=3, label=name)
        left.plot(lrs[~np.isfinite(steps)], np.full((~np.isfinite(steps)).sum(), top), "x", color=f"C{index}", ms=6)
    left.axvline(limit, color="0.3", ls="--", lw=1, label=f"2/λ_max = {limit:g}")
    left.set_xlabel("α", fontsize=LABELS)
    left.set_ylabel("steps until f < 10⁻⁴ f(start) (×: never)", fontsize=LABELS)
    t = np.arange(EARLY + 1)
    names = list(rates.grid)
    for name, d in rates.at(same).items():
        right.plot(t, d.points[:EARLY + 1, 1], "-", color=f"C{names.index(name)}", lw=1.2,
                   label=f"{name}, α = {d.lr:.3g}")
    for name, d in rates.larger.items():
        if not d.diverged:
            right.plot(t, d.points[:EARLY + 1, 1], ":", color=f"C{names.index(name)}", lw=1.2,
                       label=f"{name}, α = {d.lr:.3g}")
    right.set_ylim(-2.2, 2.2)
    right.set_xlabel("step", fontsize=LABELS)
    right.set_ylabel("y (steep direction)", fontsize=LABELS)
    return _finish(fig, "Learning rates on the ravine: steps to the minimum, and the swing across it", path,
                   ("center right", "lower right"))


def local_minimum_figure(rolls, points: tuple[float, float, float], path: Path) -> Path:
    """x over the steps of each optimizer, with the minima and the barrier dashed."""
    fig, ((ax,),) = _figure(8, 4)
    for index, roll in enumerate((rolls.sgd, rolls.momentum)):
        ax.plot(np.arange(len(roll.xs)), roll.xs, "-", color=f"C{index}", lw=1.2,
                label=f"{roll.name}: ends at x = {roll.end:.3f}")
    for at, name in zip(points, ("deeper minimum", "barrier", "shallow minimum")):
        ax.axhline(at, color="0.5", ls="--", lw=0.8)
        ax.text(len(rolls.sgd.xs) - 1, at, name, fontsize=TICKS, ha="right", va="bottom")
    ax.set_xlabel("step", fontsize=LABELS)
    ax.set_ylabel("x", fontsize=LABELS)
    return _finish(fig, f"f(x) = ¼x⁴ − ½x² + {TILT:g}x from the shallow well's outer wall, same α", path,
                   ("upper right",))


def zigzag_figure(same: dict, fastest: dict, target: np.ndarray, path: Path) -> Path:
    """The walks in the weight plane at the same α (left) and the distance to w* over the steps at each inputs'
    fastest α (right)."""
    fig, ((left, right),) = _figure(11, 4.2, 1, 2)
    for index, (label, walk) in enumerate(same.items()):
        stop = int(min(walk.steps_to_target, len(walk.path) - 1))
        left.plot(walk.path[:stop + 1, 0], walk.path[:stop + 1, 1], ".-", color=f"C{index}", ms=3, lw=0.8,
                  label=f"{label} inputs, α = {walk.lr:g}")
    left.plot(*target, "k*", ms=12, label="w*")
    left.axhline(0, color="0.5", lw=0.6)
    left.axvline(0, color="0.5", lw=0.6)
    left.set_xlabel("w₁", fontsize=LABELS)
    left.set_ylabel("w₂", fontsize=LABELS)
    left.set_aspect("equal", adjustable="datalim")
    for index, (label, walk) in enumerate(fastest.items()):
        distance = np.linalg.norm(walk.path - target, axis=1)
        shown = min(len(distance), int(np.nanmax([walk.steps_to_target for walk in fastest.values()])) + 20)
        right.plot(np.arange(shown), distance[:shown], "-", color=f"C{index}",
                       label=f"{label}, α = {walk.lr:g}: {walk.steps_to_target:g} steps")
    right.set_xlabel("step (one sample each)", fontsize=LABELS)
    right.set_ylabel("|w − w*|", fontsize=LABELS)
    return _finish(fig, "A unit fed by sigmoid outputs (all positive) vs the same inputs centred", path,
                   ("lower left", "upper right"))


def loss_gradients_figure(errors: np.ndarray, outputs: dict, p_true: np.ndarray, ratio: np.ndarray, gamma: float,
                          residuals: np.ndarray, robust: dict, chord, data: tuple, fits: dict, path: Path) -> Path:
    """|∂L/∂z| over a sigmoid output's error; focal over cross-entropy; the regression losses' gradients; the
    outlier fits; the MLP's loss along the segment to its permuted copy."""
    fig, axes = _figure(13, 7.5, 2, 3)
    ax = axes[0, 0]
    for index, (name, g) in enumerate(outputs.items()):
        ax.plot(errors, g, "-", color=f"C{index}", label=name)
    ax.set_xlabel("error 1 − σ(z) (target 1)", fontsize=LABELS)
    ax.set_ylabel("|∂L/∂z|", fontsize=LABELS)
    ax = axes[0, 1]
    ax.plot(1 - p_true, ratio, "-", color="C0", label="focal / cross-entropy")
    ax.plot(1 - p_true, (1 - p_true) ** gamma, "--", color="C1", lw=1, label=f"(1 − p_t)^{gamma:g}")
    ax.set_xlabel("error 1 − p_t", fontsize=LABELS)
    ax.set_ylabel("gradient ratio", fontsize=LABELS)
    ax = axes[0, 2]
    near = np.abs(residuals) <= NEAR
    for index, (name, g) in enumerate(robust.items()):
        ax.plot(residuals[near], g[near], "-", color=f"C{index}", label=name)
    ax.set_xlabel("residual (prediction − target)", fontsize=LABELS)
    ax.set_ylabel("|∂L/∂prediction|", fontsize=LABELS)
    ax = axes[1, 0]
    x, y = data
    ax.plot(x, y, "k.", ms=5, label="data (one outlier)")
    for index, (name, (slope, intercept)) in enumerate(fits.items()):
        ax.plot(x, slope * x + intercept, "-", color=f"C{index}", lw=1.2,
                label=f"{name}: {slope:.2f}x + {intercept:.2f}")
    ax.set_xlabel("x", fontsize=LABELS)
    ax.set_ylabel("y", fontsize=LABELS)
    ax = axes[1, 1]
    ax.plot(chord.t, chord.losses, "o-", color="C0", ms=3, label="loss on the segment")
    ax.plot([0, 1], [chord.ends, chord.ends], "--", color="C1", lw=1, label="chord")
    ax.set_xlabel("t: (1 − t) W + t W′, W′ = W with two hidden units swapped", fontsize=LABELS)
    ax.set_ylabel("cross-entropy of the MLP", fontsize=LABELS)
    axes[1, 2].set_axis_off()
    return _finish(fig, "The losses' gradients (product's losses, autograd)", path,
                   ("upper left", "upper left", "upper center", "upper left", "lower center", "upper left"))

