"""The checks that decide each lecture claim from the runs' own recorded statistics.

Every check has the interface ``check(results, out) -> Verdict``: ``results`` maps a variant's
label to its ``RunResult`` and ``out`` is the experiment's folder for figures. Thresholds come
from the mean-field theory recorded with the run (``theory_*``) or from relations between runs;
the few fixed tolerances are named constants below.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import OmegaConf

from layerscope.activations import ACTIVATIONS
from layerscope.data import load_data
from layerscope.plots import (comparison_figure, ravine_figure, saddle_figure, step_size_figure,
                              weight_magnitude_figure)
from layerscope.probed_model import initialized_model
from layerscope.ravine import A, B, START, ravine
from layerscope.ravine import recorded as ravine_paths
from layerscope.registry import Registry
from layerscope.results import RunResult
from layerscope.run_files import probe_figure
from layerscope.saddle import ESCAPED, growth, saddle
from layerscope.saddle import recorded as saddle_paths
from layerscope.theory import fixed_point_q, init_variances, predict

CONFIDENCE_Z = 4.0
"""A per-layer ratio passes within 4 finite-width standard deviations of the theory's: a true claim fails
with probability about 6e-5 (normal tails)."""
DECISIVE_Z = CONFIDENCE_Z + 2.0
"""A near miss counts as excluded only 6 deviations away: its own draw would have to stray 2 deviations
toward the claim (probability 2.3%) to pass. Closer than that, the runs cannot decide and the check fails."""
FRESH_SEEDS = 10_000  # the simulated draws' seeds, apart from any run's
DRAWS = 16  # fresh weight draws that estimate the finite-width spread (the sd itself is then known to ~18%)
FACTOR = 2.0  # for quantities spanning orders of magnitude: agree within this factor
STALLED = 0.95  # a loss still above 95% of ln(classes) has not learned
ZIGZAG = 0.5  # crossing the ravine's floor on at least half of the steps is a zig-zag; a damped approach crosses once
LEARNED = 0.5  # a loss below half of ln(classes) has

# What the lecture's words mean in numbers. These define the statements; they are not tolerances.
MOST = 0.5  # "most units": more than half
UNSATURATED = 0.05  # "away from saturation": under 5% of a layer's units at ±1, a tenth of "most"
COLLAPSED = 0.01  # "collapses": layer 10 keeps under 1% of layer 1's std, two orders of magnitude lost
KEPT = 0.1  # "keeps the signal (or gradient)": layer 10 keeps over a tenth of layer 1's, under one order lost
STILL = 0.01  # "does not move": within 1% of where it started
VANISHED = 1e-3  # "vanishes by orders of magnitude": three orders lost between the last layer and the first
NEAR_ZERO = 0.01  # a weight "near zero": within 1% of its layer's initial weight std of 0
OVERFIT = 10.0  # "overfits": the test loss ends over ten times the train loss (memorized, not learned)
SPARSE = 2.0  # "sparse": over twice the near-zero weights that a Gaussian of the same spread holds
STALLS = 2.0  # "stalls" where another escapes: takes over twice its steps to leave the plateau
SETTLED_EPOCHS = 5  # where a loss has settled: the last 5 epochs (of lr_decay's 30, both decays below 1/5 of α₀)

PASS, FAIL, CONTRADICTS = "PASS", "FAIL", "CONTRADICTS THE LECTURE"


@dataclass(frozen=True)
class Part:
    """One statement of a claim and what the runs say of it: PASS, FAIL or CONTRADICTS THE LECTURE."""

    statement: str
    outcome: str
    numbers: str


def part(statement: str, holds: bool, numbers: str, lecture: bool = False) -> Part:
    """A statement that holds is PASS; one that does not is FAIL, or, for the lecture's own words that the
    experiment tests as they stand (``lecture``), a finding: CONTRADICTS THE LECTURE."""
    return Part(statement, PASS if holds else (CONTRADICTS if lecture else FAIL), numbers)


def holds(parts: list[Part], *runs: RunResult) -> bool:
    """A claim holds when every run completed and none of its statements FAILs (a CONTRADICTS is a finding)."""
    return all(r.status == "completed" for r in runs) and not any(p.outcome == FAIL for p in parts)


@dataclass
class Verdict:
    """The outcome of one claim: PASS/FAIL, the figures that decided it, and what they mean.

    ``parts`` splits the claim into its statements; a claim passes when none of them FAILs (a
    contradiction of the lecture is a finding, reported as such)."""

    passed: bool
    measured: str
    explanation: str
    figures: list[Path] = field(default_factory=list)
    lecture_differs: str | None = None
    theory_error: float | None = None  # max relative error of activation std vs theory, step 0
    parts: list[Part] = field(default_factory=list)


Check = Callable[[dict[str, RunResult], Path], Verdict]
CHECKS: Registry[Check] = Registry("check")


def check(*labels: str) -> Callable[[Check], Check]:
    """Register a check under its name, with the variant ``labels`` it reads by name (``reads``), so that an
    experiment whose variants lack one is refused when the experiments load, before anything trains."""
    def register(fn: Check) -> Check:
        fn.reads = labels
        return CHECKS.register(fn.__name__, fn)
    return register


def _theory_error(result: RunResult) -> float | None:
    errors = result.theory("rel_error_activation_std")
    return float(np.nanmax(errors)) if np.isfinite(errors).any() else None


def _lecture_figure(result: RunResult) -> list[Path]:
    first = probe_figure(result.run_dir, result.probes[0].step) if result.probes else None
    return [first] if first and first.exists() else []


def _largest(values: np.ndarray) -> float:
    """The largest finite value (0 when none is recorded)."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if len(finite) else 0.0


def _fmt(values: np.ndarray) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def _within_factor(measured: float, predicted: float, factor: float = FACTOR) -> bool:
    return measured > 0 and predicted > 0 and abs(math.log(measured / predicted)) <= math.log(factor)


def _ln_classes(result: RunResult) -> float:
    return math.log(result.summary.get("num_classes", 10))


def _ratio_per_layer(std: np.ndarray) -> float:
    """Geometric mean of std[l+1] / std[l]."""
    return float(np.exp(np.mean(np.log(std[1:] / std[:-1]))))


def _relu_ratio(sigma_w2: float) -> float:
    """The theory's per-layer std ratio for ReLU with this σ_w² (1/√2 for Xavier, 1 for He)."""
    return _ratio_per_layer(predict("relu", None, [sigma_w2] * 3, [0.0] * 3, 1.0).activation_std)


_RELU_WIDTH_NOTE = (
    "The check uses the mean ratio per layer: a single layer's std can stray 10-25% from the infinite-width "
    "prediction, because with ReLU the finite-width fluctuations of each layer's variance multiply from layer "
    "to layer (log-variance spread ≈ √(5·l/width)) instead of being damped as with tanh.")


def hidden_sigma_w2(cfg: dict) -> float:
    """σ_w² = fan_in · Var W of a hidden layer under the run's init (the theory's formula, ``init_variances``)."""
    width = cfg["model"]["width"]
    return init_variances(cfg["init"], cfg["activation"]["name"], cfg["activation"], [width], [width])[0][0]


@check("run")
def std_collapses(results: dict[str, RunResult], out: Path) -> Verdict:
    """Std falls at every layer, to below ``COLLAPSED`` of layer 1's, as the theory predicts: ln(std₁₀/std₁)
    within the theory's finite-width bias + ``CONFIDENCE_Z`` deviations of fresh draws of the run's network."""
    r = results["run"]
    std, theory = r.stat("activation_std"), r.theory("activation_std")
    ratio, predicted = std[-1] / std[0], theory[-1] / theory[0]
    draws = finite_width_stds(r.config)
    logs = np.log(draws[:, -1] / draws[:, 0])
    allowed = float(allowed_distance(logs, math.log(predicted)))
    off = abs(math.log(ratio / predicted)) if ratio > 0 else math.inf
    monotone = bool(np.all(np.diff(std) < 0))
    parts = [part("the std falls at every layer", monotone, f"std {_fmt(std)}"),
             part("it collapses toward zero", ratio < COLLAPSED,
                  f"layer 10 keeps ×{ratio:.2g} of layer 1 (collapsed: under ×{COLLAPSED:g})"),
             part("as the mean-field theory predicts", off <= allowed,
                  f"theory ×{predicted:.2g}; off by {math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%}")]
    passed = holds(parts, r)
    sigma_w2 = hidden_sigma_w2(r.config)
    return Verdict(
        passed, f"std layer 1→10: {std[0]:.3g} → {std[-1]:.3g} (×{ratio:.2g}; theory ×{predicted:.2g}, off by "
                f"{math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%})",
        f"Per-layer activation std: {_fmt(std)}. It falls at {'every' if monotone else 'not every'} layer; the "
        f"mean-field recursion q_l = σ_w² E[tanh(√q z)²] with σ_w² = width · Var W = {sigma_w2:.3g} predicts "
        f"{_fmt(theory)}: in the linear regime of tanh each layer multiplies the std by about √σ_w² ≈ "
        f"{math.sqrt(sigma_w2):.2f}. The allowed distance of the layer-10/layer-1 ratio from the theory is derived "
        f"from {DRAWS} fresh draws of this network: the theory's finite-width bias plus {CONFIDENCE_Z:g} standard "
        f"deviations of ln(ratio).", _lecture_figure(r), theory_error=_theory_error(r), parts=parts)


@check("run")
def saturation_and_backward(results: dict[str, RunResult], out: Path) -> Verdict:
    """Most units saturated in every layer; the backward signal follows the theory's χ, whatever the lecture says."""
    r = results["run"]
    saturated = r.stat("saturated_fraction")
    backward, weight_grad = r.stat("backward_std"), r.stat("weight_grad_norm")
    growth = backward[0] / backward[-1]
    predicted = float(r.theory("backward_std")[0] / r.theory("backward_std")[-1])
    chi = float(np.nanmean(r.theory("chi")[1:]))
    parts = [part("most units are saturated at ±1 in every layer", bool(saturated.min() > MOST),
                  f"saturated {saturated.min():.0%}–{saturated.max():.0%} per layer"),
             part("the backward signal follows the mean-field gain χ", _within_factor(growth, predicted),
                  f"×{growth:.3g} from layer 10 to 1, theory ×{predicted:.3g}"),
             part("the gradients vanish", growth < 1, f"backward signal ×{growth:.3g} from layer 10 to 1", lecture=True)]
    passed = holds(parts)
    differs = None
    if growth > 1:
        differs = (f"The lecture says the gradients vanish. Measured, the backward signal dL/da grows "
                   f"×{growth:.3g} from layer 10 back to layer 1, as the mean-field gain χ = σ_w² E[tanh'(h)²] "
                   f"≈ {chi:.1f} > 1 per layer predicts (×{predicted:.3g}): saturation makes tanh' tiny for most "
                   f"units, but the weights (σ_w² = width · Var W = {hidden_sigma_w2(r.config):.3g}) multiply the signal by "
                   f"√σ_w² ≈ {math.sqrt(hidden_sigma_w2(r.config)):.1f} per layer, which wins. The weight "
                   f"gradients do not vanish either (norm {weight_grad[0]:.3g} at layer 1, {weight_grad[-1]:.3g} at "
                   f"layer 10). Saturation puts the net in the chaotic regime, where the gradient is large but "
                   f"carries little information about the input; it does not make it vanish.")
    return Verdict(
        passed, f"saturated {saturated.min():.0%}–{saturated.max():.0%} per layer; backward ×{growth:.3g} "
                f"layer 10→1 (theory ×{predicted:.3g})",
        f"Saturated fraction (|a| within 1% of the range from ±1) per layer: {_fmt(saturated)}. Backward-signal "
        f"std per layer: {_fmt(backward)}.", _lecture_figure(r), differs, _theory_error(r), parts)


@check("run")
def std_healthy(results: dict[str, RunResult], out: Path) -> Verdict:
    """Std matches theory per layer, layer 10 keeps over ``KEPT`` of layer 1's, under ``UNSATURATED`` saturated."""
    r = results["run"]
    std, theory, saturated = r.stat("activation_std"), r.theory("activation_std"), r.stat("saturated_fraction")
    draws = finite_width_stds(r.config)
    center, spread = draws.mean(0), draws.std(0, ddof=1)
    allowed = allowed_distance(draws, theory)
    off = np.abs(std - theory)
    matches = bool(np.all(off <= allowed))
    kept = std[-1] / std[0]
    parts = [part("the std follows the mean-field theory at every layer", matches,
                  f"off by at most {np.max(off / theory):.2%}, allowed {np.min(allowed / theory):.2%}–"
                  f"{np.max(allowed / theory):.2%}"),
             part("the signal reaches the last layer", kept > KEPT,
                  f"layer 10 keeps ×{kept:.2f} of layer 1's std (kept: over ×{KEPT:g})"),
             part("no layer saturates", saturated.max() < UNSATURATED,
                  f"at most {saturated.max():.2%} of a layer's units at ±1 (under {UNSATURATED:.0%})")]
    passed = holds(parts, r)
    return Verdict(
        passed, f"std {std[0]:.3g} → {std[-1]:.3g} (×{_ratio_per_layer(std):.2f} per layer); max saturated "
                f"{saturated.max():.1%}; off the theory by at most {np.max(off / theory):.2%} (allowed "
                f"{np.min(allowed / theory):.2%}–{np.max(allowed / theory):.2%})",
        f"Per-layer activation std {_fmt(std)} against the theory's {_fmt(theory)}; the largest saturated "
        f"fraction is {saturated.max():.2%}. The allowed distance from the theory is derived per layer from "
        f"{DRAWS} fresh draws of this network (same init, width, data and batch): the infinite-width theory's "
        f"own bias at this width (at most {np.max(np.abs(center - theory) / theory):.2%}) plus {CONFIDENCE_Z:g} "
        f"standard deviations of a draw (at most {np.max(spread / theory):.2%}){'' if matches else '; the run lies outside it'}. "
        f"{_tanh_fixed_point(hidden_sigma_w2(r.config))}",
        _lecture_figure(r), theory_error=_theory_error(r), parts=parts)


def _tanh_fixed_point(sigma_w2: float) -> str:
    """Where the tanh length map q_l = σ_w² E[tanh(√q_(l−1) z)²] leads at this σ_w², in words."""
    recursion = f"With σ_w² = {sigma_w2:.3g} the recursion q_l = σ_w² E[tanh(√q_(l−1) z)²]"
    if math.isclose(sigma_w2, 1.0, rel_tol=1e-9):
        return f"{recursion} has q = 0 as its only fixed point but approaches it slowly (q shrinks like 1/l), " \
               f"hence the slow decline."
    if sigma_w2 < 1.0:
        return f"{recursion} has q = 0 as its only fixed point and approaches it geometrically, ×σ_w² a layer."
    q_star = fixed_point_q("tanh", None, sigma_w2, 0.0)
    return f"{recursion} settles at its nonzero fixed point q* = {q_star:.3g} (pre-activation std √q*)."


def ratio_spread(cfg: dict) -> float:
    """Standard deviation of ln(per-layer std ratio) over fresh draws of the run's network (``finite_width_stds``).

    ReLU is positively homogeneous, so the spread does not depend on σ_w²: it holds for the claim's
    σ_w² and for its near misses alike.
    """
    return float(np.std([math.log(_ratio_per_layer(row)) for row in finite_width_stds(cfg)], ddof=1))


def allowed_distance(draws: np.ndarray, target: np.ndarray | float) -> np.ndarray:
    """How far a run may lie from ``target`` (per column): the fresh draws' bias from it plus ``CONFIDENCE_Z``
    of their standard deviations."""
    return np.abs(draws.mean(0) - target) + CONFIDENCE_Z * draws.std(0, ddof=1)


def finite_width_stds(cfg: dict, draws: int = DRAWS) -> np.ndarray:
    """Per-layer activation std (draws, depth) of fresh networks built exactly as the run's (its init, width,
    data and batch), seeded apart from it: the finite-width distribution of what the run measured."""
    return _finite_width_stds(OmegaConf.to_yaml(cfg), draws).copy()


@functools.lru_cache(maxsize=32)
def _finite_width_stds(cfg_yaml: str, draws: int) -> np.ndarray:
    base = OmegaConf.create(cfg_yaml)
    rows = []
    for draw in range(draws):
        fresh = base.copy()
        fresh.trainer.seed = FRESH_SEEDS + draw
        data = load_data(fresh.data, fresh.trainer.seed)
        model, stds = initialized_model(fresh, data), []  # train mode: batch statistics and dropout, as probed
        hooks = [block.act.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
                 for block in model.blocks]  # where the probes read the activation
        with torch.no_grad():
            model(data.x_train[:fresh.trainer.batch_size].to(next(model.parameters()).dtype))
        for hook in hooks:
            hook.remove()
        rows.append(stds)
    return np.array(rows)


def _relu_ratio_verdict(results: dict[str, RunResult], sigma_w2: float, setting: str, why: str,
                        alternatives: tuple[float, float]) -> Verdict:
    """PASS when the mean ln(per-layer std ratio) over the runs (independent draws: one seed each) is within
    ``CONFIDENCE_Z`` finite-width deviations of the theory's, and the near misses lie ``DECISIVE_Z`` away."""
    runs = list(results.values())
    r = runs[0]
    std = r.stat("activation_std")
    logs = [math.log(_ratio_per_layer(x.stat("activation_std"))) for x in runs]
    ratio, expected = math.exp(float(np.mean(logs))), _relu_ratio(sigma_w2)
    spread = ratio_spread(r.config) / math.sqrt(len(runs))  # of the mean of independent draws
    z = abs(math.log(ratio / expected)) / spread
    distance = {s: abs(math.log(_relu_ratio(s) / expected)) / spread for s in alternatives}
    decisive = min(distance.values()) >= DECISIVE_Z
    excluded = ", ".join(f"σ_w² = {s:g} (×{_relu_ratio(s):.3f}) lies {d:.1f}" for s, d in distance.items())
    tolerance = math.exp(CONFIDENCE_Z * spread) - 1
    parts = [part(f"the std changes by ×{expected:.3f} per layer, the theory's for σ_w² = {sigma_w2:g}",
                  z <= CONFIDENCE_Z, f"×{ratio:.3f} over {len(runs)} seed(s), {z:.1f} sd off (accepted: "
                  f"{CONFIDENCE_Z:g} sd, ±{tolerance:.1%})"),
             part("the runs tell it from σ_w² = " + " and ".join(f"{s:g}" for s in alternatives), decisive,
                  f"{excluded} sd away (needed: {DECISIVE_Z:g})")]
    return Verdict(
        holds(parts, *runs),
        f"×{ratio:.3f} per layer over {len(runs)} seed(s) (theory for {setting}: {expected:.3f}; {z:.1f} sd off, "
        f"tolerance ±{tolerance:.1%}; near misses {min(distance.values()):.1f}+ sd away)",
        f"Per-layer activation std of seed {r.config.get('trainer', {}).get('seed')}: {_fmt(std)}. {why} The "
        f"tolerance is derived, not chosen: {DRAWS} fresh draws of this network at its width, depth and batch give "
        f"a standard deviation of {spread * math.sqrt(len(runs)):.4f} in ln(ratio) per draw, {spread:.4f} for the "
        f"mean of these {len(runs)} independent seeds; the check accepts {CONFIDENCE_Z:g} deviations (a true claim "
        f"fails with probability about 6e-5) and needs the near misses {DECISIVE_Z:g} away: {excluded} deviations "
        f"away{'' if decisive else ' — too close: these runs cannot decide; use more seeds or a wider net'}. "
        f"{_RELU_WIDTH_NOTE}", _lecture_figure(r), theory_error=_theory_error(r), parts=parts)


@check()
def std_ratio_matches_theory(results: dict[str, RunResult], out: Path) -> Verdict:
    """The per-layer std ratio is the theory's for ReLU with σ_w² = 1 (1/√2), within its finite-width spread."""
    return _relu_ratio_verdict(results, 1.0, "Xavier + ReLU", "ReLU zeroes half of a symmetric input, so "
                               "E[relu(h)²] = q/2 and with σ_w² = 1 the variance halves per layer: the std shrinks "
                               "by 1/√2 ≈ 0.707.", (0.75, 1.3))


@check()
def std_constant(results: dict[str, RunResult], out: Path) -> Verdict:
    """The per-layer std ratio is the theory's for ReLU with σ_w² = 2 (1), within its finite-width spread."""
    return _relu_ratio_verdict(results, 2.0, "He + ReLU", "He's σ_w² = 2 exactly undoes ReLU's halving of the "
                               "second moment.", (1.5, 2.6))


@check("sigmoid", "tanh")
def symmetry_never_breaks(results: dict[str, RunResult], out: Path) -> Verdict:
    """tanh: every activation and hidden gradient exactly 0, loss ln(classes) within 1%; sigmoid: some hidden
    layers get non-zero updates, and the units of every layer stay identical at every probe."""
    tanh, sigmoid = results["tanh"], results["sigmoid"]
    probes = range(len(sigmoid.probes))
    spread = max(float(np.nanmax(r.stat("unit_spread", i))) for r in (tanh, sigmoid) for i in range(len(r.probes)))
    still = all(not np.any(tanh.stat(k, i)) for k in ("activation_std", "weight_grad_norm")
                for i in range(len(tanh.probes)))
    grads = np.nanmax(np.stack([sigmoid.stat("weight_grad_norm", i) for i in probes]), axis=0)
    moved = np.flatnonzero(grads > 0) + 1  # hidden layers whose weights received a non-zero update
    loss, chance = tanh.final("train_loss"), _ln_classes(tanh)
    sigmoid_loss = sigmoid.final("train_loss")
    parts = [part("the units of a layer stay identical after training", bool(spread == 0.0 and len(moved) > 0),
                  f"unit spread {spread:.3g}; sigmoid: non-zero updates in hidden layers {moved.tolist()}"),
             part("the loss does not move from ln(classes)", still and abs(loss - chance) / chance < STILL,
                  f"tanh: {loss:.4f} vs ln C = {chance:.4f}, every hidden gradient 0: {still}")]
    passed = holds(parts, tanh, sigmoid)
    layers = f"{moved.min()}–{moved.max()}" if len(moved) else "none"
    return Verdict(
        passed, f"unit spread {spread:.3g} at every probe of both runs; sigmoid: non-zero updates in layers {layers} "
                f"(largest gradient norm {grads.max():.2g}); tanh loss {loss:.4f} vs ln C = {chance:.4f}",
        f"With W = 0 every unit of a layer computes the same function and receives the same gradient. With tanh "
        f"(tanh(0) = 0) that gradient is exactly 0: every activation and hidden weight gradient is 0 at every probe "
        f"({'measured' if still else 'NOT measured'}), only the output bias learns, and the loss stays at ln C. That "
        f"alone cannot tell 'symmetry preserved' from 'nothing moves', so the sigmoid run (σ(0) = 1/2) makes the "
        f"updates real: hidden layers {layers} received non-zero gradients (norm up to {grads.max():.2g}; deeper "
        f"layers get a gradient that shrinks by orders of magnitude per layer, below float32's range), and still "
        f"the std across a layer's units is {spread:.3g} at all {len(sigmoid.probes)} probes: the units stay "
        f"identical. Its loss ends at {sigmoid_loss:.4f}.",
        [comparison_figure(results, "Zero init", out / "comparison.png")], parts=parts)


@check("relu_he", "sigmoid")
def vanishing_gradient(results: dict[str, RunResult], out: Path) -> Verdict:
    """Sigmoid: weight-gradient norm layer 1/layer 10 < ``VANISHED`` and the loss stalls; ReLU+He: > ``KEPT``, it learns."""
    sig, relu = results["sigmoid"], results["relu_he"]
    ratio_sig = sig.stat("weight_grad_norm")[0] / sig.stat("weight_grad_norm")[-1]
    ratio_relu = relu.stat("weight_grad_norm")[0] / relu.stat("weight_grad_norm")[-1]
    chance = _ln_classes(sig)
    loss_sig, loss_relu = sig.final("train_loss"), relu.final("train_loss")
    parts = [part("with sigmoid the gradient norm shrinks by orders of magnitude toward the input", ratio_sig < VANISHED,
                  f"layer 1 / layer 10: {ratio_sig:.2g} (vanished: under {VANISHED:g})"),
             part("with sigmoid training stalls", loss_sig > STALLED * chance,
                  f"loss {loss_sig:.3f} (ln C = {chance:.3f})"),
             part("ReLU with He init keeps the gradient", ratio_relu > KEPT,
                  f"layer 1 / layer 10: {ratio_relu:.2g} (kept: over {KEPT:g})"),
             part("ReLU with He init trains", loss_relu < LEARNED * chance, f"loss {loss_relu:.3f}")]
    passed = holds(parts)
    chi_values = sig.theory("chi")[1:]
    chi = float(np.nanmean(chi_values)) if np.isfinite(chi_values).any() else float("nan")
    return Verdict(
        passed, f"grad norm layer 1/10: sigmoid {ratio_sig:.2g}, ReLU+He {ratio_relu:.2g}; loss {loss_sig:.3f} vs "
                f"{loss_relu:.3f}",
        f"At step 0 the weight-gradient norm per layer is {_fmt(sig.stat('weight_grad_norm'))} with sigmoid and "
        f"{_fmt(relu.stat('weight_grad_norm'))} with ReLU + He. Sigmoid's slope is at most 1/4, so the backward "
        f"gain χ = σ_w² E[σ'(h)²] ≈ {chi:.3f} per layer: the signal shrinks ×{chi ** 0.5:.2f} per layer. "
        f"After {sig.summary.get('steps')} steps the sigmoid net's loss is {loss_sig:.3f} (ln C = {chance:.3f}) "
        f"while ReLU + He reaches {loss_relu:.3f}.",
        [comparison_figure(results, "Vanishing gradient", out / "comparison.png")], theory_error=_theory_error(sig),
        parts=parts)


@check("clip_norm", "no_clip")
def clipping_rescues(results: dict[str, RunResult], out: Path) -> Verdict:
    """Without clipping the run is recorded as diverged at a step; with clip_grad_norm it completes and learns."""
    plain, clipped = results["no_clip"], results["clip_norm"]
    chance = _ln_classes(clipped)
    parts = [part("the loss diverges (NaN/inf) without clipping", plain.status == "diverged",
                  f"{plain.status} at step {plain.summary.get('diverged_at_step')}"),
             part("the same setting trains with clip_grad_norm",
                  clipped.status == "completed" and clipped.final("train_loss") < LEARNED * chance,
                  f"{clipped.status}, loss {clipped.final('train_loss'):.3f} (ln C = {chance:.3f})")]
    passed = holds(parts)
    return Verdict(
        passed, f"no clip: {plain.status} at step {plain.summary.get('diverged_at_step')}; clip: {clipped.status}, "
                f"loss {clipped.final('train_loss'):.3f}",
        f"Without clipping the loss became NaN/inf at step {plain.summary.get('diverged_at_step')} and the run was "
        f"stopped and recorded as diverged. Clipping the total gradient norm bounds every update, and the same "
        f"setting trains to a loss of {clipped.final('train_loss'):.3f} (test accuracy "
        f"{clipped.final('test_accuracy'):.1%}).",
        [comparison_figure(results, "Exploding gradient and clipping", out / "comparison.png")], parts=parts)


@check("after", "before", "none")
def bn_before_restores(results: dict[str, RunResult], out: Path) -> Verdict:
    """bn=before: every layer's std is tanh(N(0,1))'s within the finite-width spread of fresh draws
    (bias + ``CONFIDENCE_Z`` deviations) and it learns; bn=none collapses and stalls; before trains better than after."""
    none, before, after = results["none"], results["before"], results["after"]
    std = before.config["init"]["std"]
    healthy = float(predict("tanh", None, [1.0], [0.0], 1.0).activation_std[0])
    std_before = before.stat("activation_std")
    draws = finite_width_stds(before.config)
    allowed = allowed_distance(draws, healthy)
    off = np.abs(std_before - healthy)
    chance = _ln_classes(none)
    loss = {label: r.final("train_loss") for label, r in results.items()}
    parts = [
        part("BN before the nonlinearity restores healthy statistics and trains",
             bool(np.all(off <= allowed)) and loss["before"] < LEARNED * chance,
             f"std {std_before.min():.3f}–{std_before.max():.3f} (tanh of N(0,1): {healthy:.3f}; off by at most "
             f"{np.max(off / healthy):.2%}, allowed {np.min(allowed / healthy):.2%}–{np.max(allowed / healthy):.2%}), "
             f"loss {loss['before']:.3f}"),
        part("without BN the net neither keeps its signal nor trains",
             none.stat("activation_std")[-1] < COLLAPSED * healthy and loss["none"] > STALLED * chance,
             f"std at layer 10 {none.stat('activation_std')[-1]:.2g}, loss {loss['none']:.3f} (ln C = {chance:.3f})"),
        part("BN before the nonlinearity trains better than BN after it", loss["before"] < loss["after"],
             f"loss before {loss['before']:.3f}, after {loss['after']:.3f}", lecture=True)]
    passed = holds(parts)
    return Verdict(
        passed, f"std with BN before {std_before.min():.2f}–{std_before.max():.2f} (tanh of N(0,1): {healthy:.2f}); "
                f"loss none {none.final('train_loss'):.3f}, before {before.final('train_loss'):.3f}, after "
                f"{after.final('train_loss'):.3f}",
        f"Under W ~ N(0, {std:g}²) without BN the activation std falls to {none.stat('activation_std')[-1]:.2g} by "
        f"layer 10 and the loss stays at {none.final('train_loss'):.3f}. BN before tanh rescales each unit's input "
        f"to unit variance, so every layer sees tanh of N(0, 1): std {_fmt(std_before)}, and the net trains to "
        f"{before.final('train_loss'):.3f}. The allowed distance from tanh(N(0, 1))'s std ({healthy:.3f}) is derived "
        f"per layer from {DRAWS} fresh draws of this network with BN before tanh: their bias plus {CONFIDENCE_Z:g} "
        f"standard deviations. BN after tanh leaves the first tanh in its tiny linear range "
        f"(activation std {after.stat('activation_std')[0]:.2g} at layer 1) but renormalizes what reaches the next "
        f"layer (std {_fmt(after.stat('activation_std')[1:3])}...); it trains too, to {after.final('train_loss'):.3f}.",
        [comparison_figure(results, f"Batch-norm placement (tanh, W ~ N(0, {std:g}²))", out / "comparison.png")],
        parts=parts)


@check("sgd", "momentum", "adam")
def optimizers(results: dict[str, RunResult], out: Path) -> Verdict:
    """Ravine: momentum, RMSProp and Adam settle in fewer steps than SGD; MLP: momentum and Adam reach the loss level first."""
    paths = ravine_paths(out)
    steps = {t.name: t.steps_to_min for t in paths}
    target = LEARNED * _ln_classes(results["sgd"])
    reach = {label: r.steps_to(target) for label, r in results.items()}
    faster_mlp = all(reach[n] < reach["sgd"] for n in ("momentum", "adam"))
    rates = {t.name: t.zigzag_rate for t in paths}
    sgd_zigzags = rates["sgd"] >= ZIGZAG
    adaptive = [n for n in ("adagrad", "rmsprop", "adam") if n in steps]
    parts = [
        part("SGD zig-zags across the ravine", sgd_zigzags, f"crosses the floor on {rates['sgd']:.0%} of its steps"),
        part("momentum reaches the ravine's minimum in fewer steps than SGD", steps["momentum"] < steps["sgd"],
             f"momentum {steps['momentum']:g}, SGD {steps['sgd']:g}"),
        part("the adaptive methods reach it in fewer steps than SGD", all(steps[n] < steps["sgd"] for n in adaptive),
             ", ".join(f"{n} {steps[n]:g}" for n in adaptive) + f" vs SGD {steps['sgd']:g}", lecture=True),
        part("training the MLP, momentum and Adam reach the loss level before SGD", faster_mlp,
             f"momentum {reach['momentum']:g}, Adam {reach['adam']:g}, SGD {reach['sgd']:g} steps"),
        part("training the MLP, AdaGrad and RMSProp reach it before SGD too",
             all(reach[n] < reach["sgd"] for n in ("adagrad", "rmsprop") if n in reach),
             ", ".join(f"{n} {reach[n]:g}" for n in ("adagrad", "rmsprop") if n in reach) + f" vs SGD "
             f"{reach['sgd']:g} steps", lecture=True)]
    table = ", ".join(f"{n} {s:g}" for n, s in steps.items())
    mlp = ", ".join(f"{n} {s:g}" for n, s in reach.items())
    zigzag = ", ".join(f"{n} {r:.2f}" for n, r in rates.items())
    behind = [n for n in ("adagrad", "rmsprop") if n in reach and not reach[n] < reach["sgd"]]
    differs = None
    also = [n for n, r in rates.items() if n != "sgd" and r >= ZIGZAG]
    if also:
        differs = (f"SGD is not the only one that zig-zags: {', '.join(also)} also cross the ravine's floor on "
                   f"{', '.join(f'{rates[n]:.0%}' for n in also)} of their steps (SGD {rates['sgd']:.0%}); they "
                   f"still settle sooner, because their steps along the flat direction are larger. ")
    if behind:
        differs = (differs or "") + (f"Not every adaptive method beats SGD on the MLP: {', '.join(behind)} took "
                   f"{', '.join(f'{reach[n]:g}' for n in behind)} steps against SGD's {reach['sgd']:g} to reach "
                   f"loss {target:.2f} with the lecture's hyper-parameters. AdaGrad's accumulated r only grows, so "
                   f"its steps only shrink.")
    if "rmsprop" in behind:
        rho = results["rmsprop"].config["optimizer"]["rho"]
        differs += (f" RMSProp with ρ = {rho:g} and no bias correction starts with r ≈ {1 - rho:.2g} g², so its "
                    f"first steps are about 1/√(1 − ρ) = {1 / math.sqrt(1 - rho):.0f} times α in every coordinate.")
    return Verdict(
        holds(parts),
        f"SGD zig-zags on {rates['sgd']:.0%} of its steps; ravine steps: {table}; MLP steps to loss {target:.2f}: {mlp}",
        f"On f = ½({A:g} x² + {B:g} y²) from {START}, each optimizer at the best lr of a grid, the steps until f stays "
        f"below 10⁻⁴ f(start) are {table}. Sign changes of the steep coordinate per step before settling (1: a "
        f"zig-zag on every step; {ZIGZAG:g} or more counts as zig-zagging): {zigzag}. SGD's lr is "
        f"capped by the steep direction (α < 2/{B:g}), so it crawls along the flat one; momentum accumulates the "
        f"consistent flat-direction gradient, and the adaptive methods divide each coordinate by its own gradient "
        f"scale. Training the MLP with the lecture's hyper-parameters, the steps to reach loss {target:.2f} are "
        f"{mlp} (inf: not within the run).",
        [ravine_figure(paths, ravine, out / "ravine.png"),
         comparison_figure(results, "Optimizers training the MLP", out / "comparison.png")], differs, parts=parts)


@check("sigmoid")
def activations(results: dict[str, RunResult], out: Path) -> Verdict:
    """Sigmoid ends with the highest loss of all activations; every rectifier and GELU/SiLU below it."""
    final = {label: r.final("train_loss") for label, r in results.items()}
    slowest = max(final, key=lambda k: final[k])
    saturating = [k for k in final if ACTIVATIONS.get(k).bounds]  # the variants are named by their activation
    rectifiers = [k for k in results if ACTIVATIONS.get(k).rectifier]
    others = [k for k in final if k not in saturating]
    sigmoid_saturated = _largest(results["sigmoid"].stat("saturated_fraction", -1))
    dead = {k: _largest(results[k].stat("dead_fraction", -1)) for k in rectifiers}
    worst_other, best_saturating = max(others, key=lambda k: final[k]), min(saturating, key=lambda k: final[k])
    parts = [
        part("sigmoid trains slowest", slowest == "sigmoid", f"sigmoid loss {final['sigmoid']:.3f}, next "
             f"{max((final[k] for k in final if k != 'sigmoid'), default=float('nan')):.3f}"),
        part("sigmoid saturates", sigmoid_saturated > MOST, f"at most {sigmoid_saturated:.1%} of sigmoid units "
             f"saturated at the last probe", lecture=True),
        part("rectifiers can have dead units", max(dead.values(), default=0.0) > 0,
             ", ".join(f"{k} {v:.1%}" for k, v in dead.items()) + " dead at most", lecture=True),
        part("non-saturating activations train fastest", final[worst_other] < final[best_saturating],
             f"slowest non-saturating {worst_other} {final[worst_other]:.3f} vs fastest saturating "
             f"{best_saturating} {final[best_saturating]:.3f}", lecture=True)]
    passed = holds(parts)
    rows = []
    for label, r in results.items():
        saturated, dead = r.stat("saturated_fraction", -1), r.stat("dead_fraction", -1)
        extra = (f"saturated ≤ {np.nanmax(saturated):.1%}" if np.isfinite(saturated).any() else
                 f"dead ≤ {np.nanmax(dead):.1%}" if np.isfinite(dead).any() else "no saturation/dead units defined")
        rows.append(f"{label}: loss {final[label]:.3f}, {extra}")
    return Verdict(
        passed, f"slowest: {slowest} (loss {final[slowest]:.3f}); fastest: {min(final, key=lambda k: final[k])}",
        "After the same number of steps, each with its recommended init gain (He, gain auto): " + "; ".join(rows)
        + ". Fractions are the maximum over layers at the last probe. Where sigmoid does not saturate, it stalls "
        "for another reason: σ'(h) ≤ 1/4, so the backward signal shrinks at every layer (experiment 7).",
        [comparison_figure(results, "Activations", out / "comparison.png")], parts=parts)


@check("constant")
def decay_settles_lower(results: dict[str, RunResult], out: Path) -> Verdict:
    """Both decayed runs end lower than the constant-lr run (mean train loss of the last ``SETTLED_EPOCHS`` epochs)."""
    settled = {label: float(np.mean(r.curve()[1][-SETTLED_EPOCHS:])) for label, r in results.items()}
    jitter = {label: float(np.std(r.curve()[1][-SETTLED_EPOCHS:])) for label, r in results.items()}
    parts = [part(f"the {k.replace('_', ' ')} decay settles at a lower loss than a constant rate",
                  settled[k] < settled["constant"], f"{settled[k]:.4f} vs {settled['constant']:.4f}")
             for k in ("inverse_time", "exponential")]
    parts.append(part("the constant rate keeps bouncing around the minimum",
                      all(jitter["constant"] > jitter[k] for k in ("inverse_time", "exponential")),
                      f"std over the last {SETTLED_EPOCHS} epochs: " + ", ".join(f"{k} {v:.2g}" for k, v in jitter.items()),
                      lecture=True))
    passed = holds(parts)
    return Verdict(
        passed, f"train loss, last {SETTLED_EPOCHS} epochs: " + ", ".join(f"{k} {v:.3f} ± {jitter[k]:.2g}" for k, v in settled.items()),
        f"Mean ± std of the train loss over the last {SETTLED_EPOCHS} epochs: "
        + ", ".join(f"{k} {v:.4f} ± {jitter[k]:.2g}" for k, v in settled.items()) + ". A constant large step "
        "keeps bouncing around the minimum; a shrinking one lets the iterate settle into it.",
        [comparison_figure(results, "Learning-rate decay", out / "comparison.png")], parts=parts)


@check("bn_2", "ln_2", "bn_128", "ln_128")
def layer_norm_small_batches(results: dict[str, RunResult], out: Path) -> Verdict:
    """BN stalls at batch 2 and trains at 128; LN trains at both (train loss against ``STALLED``/``LEARNED`` · ln C)."""
    chance = _ln_classes(results["bn_2"])
    loss = {label: r.final("train_loss") for label, r in results.items()}
    accuracy = {label: r.final("test_accuracy") for label, r in results.items()}

    def numbers(label: str) -> str:
        return f"{label}: loss {loss[label]:.3f} (ln C = {chance:.3f}), test accuracy {accuracy[label]:.1%}"

    parts = [part("batch norm does not train at batch 2", loss["bn_2"] > STALLED * chance, numbers("bn_2")),
             part("batch norm trains at batch 128", loss["bn_128"] < LEARNED * chance, numbers("bn_128")),
             part("layer norm trains at batch 2", loss["ln_2"] < LEARNED * chance, numbers("ln_2")),
             part("layer norm trains at batch 128", loss["ln_128"] < LEARNED * chance, numbers("ln_128"))]
    passed = holds(parts, *results.values())
    binary = math.tanh(1.0)
    std = results["bn_2"].stat("activation_std")
    return Verdict(
        passed, ", ".join(f"{k} loss {v:.3f}" for k, v in loss.items()),
        f"Batch norm normalizes each unit over the batch. Over two samples the normalized values are exactly "
        f"±1 (x − mean is ±d/2 and the batch std d/2), so every tanh unit outputs ±tanh(1) = ±{binary:.3f}: "
        f"the measured activation std of bn_2 at step 0 is {_fmt(std)} per layer. Each layer then carries one "
        f"bit per unit, which sample is larger, and the running averages it evaluates with are far from any "
        f"one batch's. Layer norm normalizes each sample over its {results['ln_2'].config['model']['width']} "
        f"units instead, which does not depend on the batch: " + "; ".join(numbers(k) for k in results) + ".",
        [comparison_figure(results, "LayerNorm vs BatchNorm at batch 2 and 128", out / "comparison.png")],
        parts=parts)


def _near_zero(result: RunResult) -> tuple[float, float, float]:
    """Share of the final hidden weights within ``NEAR_ZERO`` initial stds of 0, the share a Gaussian of each
    layer's final spread would hold there, and the near-zero threshold of the first layer."""
    cfg, weights = result.config, result.final_weights()
    sigma_w2, _ = init_variances(cfg["init"], cfg["activation"]["name"], cfg["activation"],
                                 [w.shape[1] for w in weights], [w.shape[0] for w in weights])
    near = gaussian = 0.0
    thresholds = [NEAR_ZERO * math.sqrt(s2 / w.shape[1]) for w, s2 in zip(weights, sigma_w2)]
    for w, eps in zip(weights, thresholds):
        near += np.count_nonzero(np.abs(w) < eps)
        gaussian += w.size * math.erf(eps / (float(w.std()) * math.sqrt(2)))
    total = sum(w.size for w in weights)
    return near / total, gaussian / total, thresholds[-1]


@check("plain", "l1", "l2")
def l1_sparsifies(results: dict[str, RunResult], out: Path) -> Verdict:
    """L1: over ``SPARSE`` times the near-zero weights of a Gaussian of the same spread; L2: smaller weights, not sparse."""
    shares = {label: _near_zero(r) for label, r in results.items()}
    rms = {label: float(np.sqrt(np.mean(np.concatenate([w.ravel() ** 2 for w in r.final_weights()]))))
           for label, r in results.items()}

    def numbers(label: str) -> str:
        near, gaussian, _ = shares[label]
        return f"{label}: {near:.2%} near zero, a Gaussian of its spread {gaussian:.2%} (×{near / gaussian:.1f})"

    parts = [part("L1 makes the weights sparse", shares["l1"][0] > SPARSE * shares["l1"][1], numbers("l1")),
             part("L2 shrinks every weight", rms["l2"] < rms["plain"],
                  f"RMS weight {rms['l2']:.4f} with L2, {rms['plain']:.4f} without a penalty"),
             part("L2 does not make them sparse", shares["l2"][0] < SPARSE * shares["l2"][1], numbers("l2"))]
    passed = holds(parts, *results.values())
    l1 = results["l1"].config["trainer"]["l1"]
    weight_decay = results["l2"].config["trainer"]["weight_decay"]
    lr = results["l1"].config["optimizer"]["lr"]
    figure = weight_magnitude_figure({k: np.concatenate([w.ravel() for w in r.final_weights()])
                                      for k, r in results.items()}, {k: v[2] for k, v in shares.items()},
                                     "L1 vs L2: magnitudes of the hidden weights", out / "weights.png")
    return Verdict(
        passed, "; ".join(numbers(k) for k in results),
        f"A weight counts as near zero within {NEAR_ZERO:.0%} of its layer's initial std of 0. L1 (λ = {l1:g}) adds "
        f"λ·sign(w) to every gradient: a weight the data does not hold up is pulled to 0 at a constant rate "
        f"and then hops across it by α·λ = {lr * l1:.1e} per step, so it stays near zero. L2 (weight decay "
        f"{weight_decay:g}) adds λ·w: the pull fades as w shrinks, so every weight shrinks in proportion and "
        f"none is singled out. RMS weight: " + ", ".join(f"{k} {v:.4f}" for k, v in rms.items()) + ".",
        [figure, comparison_figure(results, "L1 vs L2 regularization", out / "comparison.png")], parts=parts)


@check("selu")
def selu_self_normalizes(results: dict[str, RunResult], out: Path) -> Verdict:
    """SELU's std is 1 (its fixed point) at every layer within the finite-width spread of fresh draws
    (bias + ``CONFIDENCE_Z`` deviations); tanh's and ReLU's layer-10 std lie outside that band."""
    selu = results["selu"]
    std = {label: r.stat("activation_std") for label, r in results.items()}
    draws = finite_width_stds(selu.config)
    allowed = allowed_distance(draws, 1.0)
    off = np.abs(std["selu"] - 1.0)
    mean = np.abs(selu.stat("activation_mean"))
    parts = [part("SELU keeps the activation std at 1 in every layer", bool(np.all(off <= allowed)),
                  f"std {_fmt(std['selu'])}; off by at most {off.max():.2%}, allowed {allowed.min():.2%}–"
                  f"{allowed.max():.2%}"),
             part("and its mean near 0", bool(np.all(mean <= allowed)), f"|mean| at most {mean.max():.3f}")]
    parts += [part(f"{label} with the same init drifts away", abs(std[label][-1] - 1.0) > allowed[-1],
                   f"std layer 1 → 10: {std[label][0]:.3f} → {std[label][-1]:.3f}")
              for label in results if label != "selu"]
    passed = holds(parts, *results.values())
    chis = selu.theory("chi")
    chi = float(np.nanmean(chis)) if np.isfinite(chis).any() else math.nan
    return Verdict(
        passed, ", ".join(f"{k} std layer 10: {v[-1]:.3f}" for k, v in std.items()),
        f"SELU's λ ≈ 1.0507 and α ≈ 1.6733 are chosen so that for h ~ N(0, 1) its output has mean 0 and variance "
        f"1; with LeCun's Var W = 1/fan_in (σ_w² = 1) the next layer's pre-activation is again N(0, 1): q* = 1 is "
        f"the fixed point and every layer reproduces it (the theory's χ₁ ≈ {chi:.3f}, close to 1). The allowed "
        f"distance from 1 is derived per layer from {DRAWS} fresh draws of the SELU network: their bias plus "
        f"{CONFIDENCE_Z:g} standard deviations. tanh with σ_w² = 1 has q = 0 as its only fixed point and shrinks "
        f"slowly; ReLU halves the second moment per layer.",
        [comparison_figure(results, "SELU, tanh and ReLU with LeCun init", out / "comparison.png")],
        theory_error=_theory_error(selu), parts=parts)


@check("cross_entropy", "mse")
def cross_entropy_beats_mse(results: dict[str, RunResult], out: Path) -> Verdict:
    """From saturated sigmoid outputs: MSE's weight gradients are smaller than cross-entropy's at every layer at
    step 0, and after the same steps its test accuracy is lower."""
    ce, mse = results["cross_entropy"], results["mse"]
    ratio = mse.stat("weight_grad_norm") / ce.stat("weight_grad_norm")
    accuracy = {label: r.final("test_accuracy") for label, r in results.items()}
    classes = ce.summary.get("num_classes", 10)
    parts = [part("MSE's gradient is small where the outputs saturate", bool(np.all(ratio < 1)),
                  f"weight-gradient norm MSE / cross-entropy at step 0: {_fmt(ratio)} per layer"),
             part("MSE learns slowly", accuracy["mse"] < accuracy["cross_entropy"],
                  f"test accuracy after {mse.summary.get('steps')} steps: MSE {accuracy['mse']:.1%}, "
                  f"cross-entropy {accuracy['cross_entropy']:.1%} (chance {1 / classes:.0%})")]
    passed = holds(parts, *results.values())
    layer10 = ce.stat("activation_std")[-1]
    return Verdict(
        passed, f"gradient ratio MSE/CE {ratio.min():.2g}–{ratio.max():.2g}; test accuracy MSE "
                f"{accuracy['mse']:.1%}, cross-entropy {accuracy['cross_entropy']:.1%}",
        f"With σ_w² = {init_variances(ce.config['init'], 'relu', ce.config['activation'], [1], [1])[0][0]:.2f} the "
        f"ReLU signal grows every layer (activation std {layer10:.2g} at layer 10), so the logits start large and "
        f"most sigmoid outputs sit at 0 or 1. Per output, MSE on σ(z) has the gradient 2 (σ(z) − t) σ'(z), and "
        f"σ'(z) ≈ e^−|z| there; binary cross-entropy's is σ(z) − t, the same error without the vanishing factor. "
        f"Loss curves: " + "; ".join(f"{k} {_fmt(r.curve()[1])}" for k, r in results.items()) + ".",
        [comparison_figure(results, "Cross-entropy vs MSE from saturated sigmoid outputs", out / "comparison.png")],
        parts=parts)


@check("dropout", "plain")
def dropout_regularizes(results: dict[str, RunResult], out: Path) -> Verdict:
    """Without dropout the test loss ends over ``OVERFIT`` times the train loss; the lecture's "dropout narrows the
    train/test gap and raises test accuracy" is measured as it stands."""
    plain, dropped = results["plain"], results["dropout"]
    test = {label: r.curve("test_loss")[1] for label, r in results.items()}
    gap = {label: r.final("test_loss") - r.final("train_loss") for label, r in results.items()}
    best = {label: float(np.max(r.curve("test_accuracy")[1])) for label, r in results.items()}
    final = {label: r.final("test_accuracy") for label, r in results.items()}
    parts = [part("without dropout the net overfits the small training set",
                  plain.final("test_loss") > OVERFIT * plain.final("train_loss"),
                  f"test loss {plain.final('test_loss'):.3f}, train loss {plain.final('train_loss'):.4f} (overfit: "
                  f"over ×{OVERFIT:g})"),
             part("dropout narrows the gap between training and test loss", gap["dropout"] < gap["plain"],
                  f"test − train loss: dropout {gap['dropout']:.3f}, none {gap['plain']:.3f}", lecture=True),
             part("dropout improves the test accuracy", final["dropout"] > final["plain"],
                  f"final test accuracy: dropout {final['dropout']:.1%}, none {final['plain']:.1%}", lecture=True)]
    passed = holds(parts, *results.values())
    p = dropped.config["model"]["dropout"]
    n = plain.config["data"]["max_train"]
    differs = None
    if any(x.outcome == CONTRADICTS for x in parts):
        differs = (f"Here dropout (p = {p:g} after each of the {plain.config['model']['depth']} hidden layers, "
                   f"{n} training examples) did not deliver what the notes promise: the gap is "
                   f"{gap['dropout']:.3f} with it and {gap['plain']:.3f} without, and the final test accuracy "
                   f"{final['dropout']:.1%} against {final['plain']:.1%} (best over the run {best['dropout']:.1%} "
                   f"and {best['plain']:.1%}). In a 10-layer net the masks of every layer compound, so the noise "
                   f"slows the fit as much as it regularizes it; the recorded train loss is also measured with "
                   f"the masks on. Dropout's benefit is a matter of rate, depth and data size, not a rule.")
    return Verdict(
        passed, f"test − train loss: none {gap['plain']:.3f}, dropout {gap['dropout']:.3f}; test accuracy "
                f"{final['plain']:.1%} vs {final['dropout']:.1%}",
        f"On {n} training examples the plain net reaches a train loss of {plain.final('train_loss'):.4f} while its "
        f"test loss bottoms out at {test['plain'].min():.3f} and ends at {test['plain'][-1]:.3f}: it memorizes. "
        f"Dropout zeroes each hidden unit with probability p = {p:g} at every training step (and scales the "
        f"others by 1/(1 − p)), so no unit can rely on another; at test time all units are on.",
        [comparison_figure(results, "Dropout on a small training set", out / "comparison.png")], differs,
        parts=parts)


@check()
def momentum_escapes_saddle(results: dict[str, RunResult], out: Path) -> Verdict:
    """At the same α, momentum's escape from the saddle takes fewer steps than SGD's; the escape rates are the
    linearized dynamics' (growth λ per step, ``saddle.growth``)."""
    paths = saddle_paths(out)
    sgd, momentum = paths
    mu = momentum.hyper["mu"]
    rate = {p.name: growth(p.hyper["lr"], p.hyper.get("mu", 0.0)) for p in paths}
    predicted = {p.name: math.log(ESCAPED / abs(p.points[0, 1])) / math.log(rate[p.name]) for p in paths}
    parts = [part("plain SGD stalls on the plateau around the saddle", sgd.escape_step > STALLS * momentum.escape_step,
                  f"SGD leaves it (|y| > {ESCAPED:g}) at step {sgd.escape_step:g}, momentum at "
                  f"{momentum.escape_step:g}"),
             part("momentum escapes and reaches the minimum in fewer steps",
                  momentum.settle_step < sgd.settle_step,
                  f"settled at step {momentum.settle_step:g} with momentum, {sgd.settle_step:g} with SGD")]
    passed = holds(parts)
    return Verdict(
        passed, f"escape: SGD {sgd.escape_step:g} steps, momentum {momentum.escape_step:g}; settled: "
                f"{sgd.settle_step:g} vs {momentum.settle_step:g}",
        f"Near the saddle f ≈ ½x² − ½y², so y grows by a constant factor per step: 1 + α = {rate['sgd']:.3f} for "
        f"SGD, λ = {rate['momentum']:.3f} for momentum (μ = {mu:g}, the larger root of λ² − (1 + μ + α)λ + μ = 0). "
        f"From y₀ = {abs(sgd.points[0, 1]):g} that predicts an escape after about {predicted['sgd']:.0f} and "
        f"{predicted['momentum']:.0f} steps; measured: {sgd.escape_step:g} and {momentum.escape_step:g}. "
        f"Plain SGD is stuck where the gradient is small, whatever the direction it points; momentum adds up the "
        f"small but consistent push along y.",
        [saddle_figure(paths, saddle, ESCAPED, out / "saddle.png")], parts=parts)


STEP_PROBES = 5  # probes averaged at each end of the second half: one batch's update scatters by ~20%


def _nearest(value: float, candidates: dict[str, float]) -> str:
    """The candidate nearest ``value`` in log scale."""
    return min(candidates, key=lambda k: abs(math.log(value / candidates[k])))


def per_weight_step(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """(steps, the update's RMS per weight in units of α) at each probe: |ΔW|/(α·width), the median over the
    width × width layers (2 … depth)."""
    alpha, width = result.config["optimizer"]["lr"], result.config["model"]["width"]
    steps = np.array([record.step for record in result.probes], dtype=float)
    size = [np.median((result.stat("update_ratio", i) * result.stat("weight_norm", i))[1:]) for i in range(len(steps))]
    return steps, np.array(size) / (alpha * width)


def _second_half(steps: np.ndarray, values: np.ndarray) -> tuple[float, float, float, float]:
    """(t₁, t₂, v₁, v₂): the means of ``values`` (v) and of the steps (t) over STEP_PROBES probes around the run's
    middle and over its last STEP_PROBES probes."""
    middle = int(np.searchsorted(steps, steps[-1] / 2))
    early, late = slice(middle - STEP_PROBES // 2, middle + STEP_PROBES // 2 + 1), slice(-STEP_PROBES, None)
    return float(steps[early].mean()), float(steps[late].mean()), float(values[early].mean()), float(values[late].mean())


@check("adagrad", "rmsprop")
def adagrad_step_shrinks(results: dict[str, RunResult], out: Path) -> Verdict:
    """Over the second half of the run AdaGrad's step per weight falls like 1/√t while RMSProp's stays put: for
    each, the nearer in log scale of √(t₁/t₂) and 1."""
    curves = {name: per_weight_step(results[name]) for name in ("adagrad", "rmsprop")}
    halves = {name: _second_half(*curve) for name, curve in curves.items()}
    t1, t2, start, _ = halves["adagrad"]
    candidates = {"1/√t": math.sqrt(t1 / t2), "level": 1.0}
    ratio = {name: late / early for name, (_, _, early, late) in halves.items()}
    nearest = {name: _nearest(value, candidates) for name, value in ratio.items()}
    parts = [part("AdaGrad's effective step keeps shrinking toward zero", nearest["adagrad"] == "1/√t",
                  f"step {t1:.0f} → {t2:.0f}: ×{ratio['adagrad']:.3f} (1/√t: ×{candidates['1/√t']:.3f})"),
             part("RMSProp's does not", nearest["rmsprop"] == "level",
                  f"step {t1:.0f} → {t2:.0f}: ×{ratio['rmsprop']:.3f}")]
    adagrad, rmsprop = (results[name].config for name in ("adagrad", "rmsprop"))
    rho = rmsprop["optimizer"]["rho"]
    late = {name: half[3] for name, half in halves.items()}
    grown = {}
    for name, (steps, _) in curves.items():
        norms = np.array([np.median(results[name].stat("weight_grad_norm", i)[1:]) for i in range(len(steps))])
        _, _, early_norm, late_norm = _second_half(steps, norms)
        grown[name] = late_norm / early_norm
    steps = curves["adagrad"][0]
    second = steps[steps >= t1]
    guides = {"adagrad": (second, start * np.sqrt(t1 / second)), "rmsprop": (steps, np.ones_like(steps))}
    return Verdict(
        holds(parts, *results.values()),
        f"step per weight, step {t1:.0f} → {t2:.0f}: AdaGrad ×{ratio['adagrad']:.3f}, RMSProp ×{ratio['rmsprop']:.3f}",
        f"Both train the same {adagrad['model']['depth']}×{adagrad['model']['width']} "
        f"{adagrad['activation']['name']} network on {adagrad['data']['n_train']} random-label Gaussian inputs, "
        f"AdaGrad with α = {adagrad['optimizer']['lr']:g}, "
        f"RMSProp with α = {rmsprop['optimizer']['lr']:g}, ρ = {rho:g}. Each weight moves by α·g/(√r + δ): the "
        f"size of that step per weight, in units of α, is |ΔW|/(α·width), recorded at every probe. AdaGrad's "
        f"r = Σ g² grows with every step, so its step falls like 1/√t for as long as training goes on: from step "
        f"{t1:.0f} to {t2:.0f} 1/√t predicts ×{candidates['1/√t']:.3f}, measured ×{ratio['adagrad']:.3f}, and it "
        f"ends at {late['adagrad']:.3f} α. RMSProp's r = ρ r + (1 − ρ) g² forgets the past over 1/(1 − ρ) = "
        f"{1 / (1 - rho):.0f} steps, so the step per weight stays near α·g/√(g²) = α: {late['rmsprop']:.2f} α at the "
        f"end (×{ratio['rmsprop']:.3f} over the second half). Its first step is the exception: r starts at 0 and, "
        f"without bias correction, r₁ = (1 − ρ)g² makes it 1/√(1 − ρ) = {1 / math.sqrt(1 - rho):.0f} α. The "
        f"gradients themselves did not keep one scale (|∇W| ×{grown['adagrad']:.2f} with AdaGrad and "
        f"×{grown['rmsprop']:.2f} with RMSProp over the second half, median layer): the step per weight divides "
        f"their scale out.",
        [step_size_figure(curves, guides, out / "step_sizes.png")], parts=parts)


@check("corrected", "uncorrected")
def adam_bias_correction(results: dict[str, RunResult], out: Path) -> Verdict:
    """The first update without bias correction is (1−μ)/√(1−ρ) times the corrected one (the candidate nearest the
    measured ratio, in log scale, among that, 1 and the notes' 0.1)."""
    corrected, uncorrected = results["corrected"], results["uncorrected"]
    optimizer = corrected.config["optimizer"]
    mu, rho = optimizer["mu"], optimizer["rho"]
    predicted = (1 - mu) / math.sqrt(1 - rho)
    ratio = float(np.nanmedian(uncorrected.stat("update_ratio", 0) / corrected.stat("update_ratio", 0)))
    candidates = {"(1−μ)/√(1−ρ)": predicted, "1 (no difference)": 1.0, "1−μ (the notes' 'ten times too small')": 1 - mu}
    nearest = _nearest(ratio, candidates)
    parts = [part("without bias correction the first step is wrong in size", abs(math.log(ratio)) > math.log(2),
                  f"uncorrected / corrected first update: ×{ratio:.3f}"),
             part(f"it is (1−μ)/√(1−ρ) = {predicted:.3f} times the corrected one", nearest == "(1−μ)/√(1−ρ)",
                  f"×{ratio:.3f}; nearest of the candidates: {nearest}"),
             part("the first step is ten times too small (s₁ = 0.1·g)", ratio < 1, f"×{ratio:.3f}", lecture=True)]
    passed = holds(parts, *results.values())
    differs = None
    if ratio > 1:
        differs = (f"The notes say the uncorrected first moment s₁ = (1−μ)g = {1 - mu:g}·g makes the start ten "
                   f"times too small. It does, but the second moment is further off: r₁ = (1−ρ)g² = {1 - rho:g}·g², "
                   f"so √r₁ = {math.sqrt(1 - rho):.4f}·|g| and the step s₁/√r₁ is (1−μ)/√(1−ρ) = {predicted:.3f} "
                   f"times α·sign(g): {predicted:.1f} times too large, measured ×{ratio:.3f}. The loss shows it: "
                   f"{uncorrected.final('train_loss'):.3f} without correction after {uncorrected.summary.get('steps')} "
                   f"steps, {corrected.final('train_loss'):.3f} with it.")
    return Verdict(
        passed, f"first update uncorrected / corrected ×{ratio:.3f} (predicted {predicted:.3f})",
        f"At step 1 Adam's moments are s₁ = (1−μ)g and r₁ = (1−ρ)g² (μ = {mu:g}, ρ = {rho:g}). Corrected, "
        f"ŝ₁ = g and r̂₁ = g², so the step is α·g/(|g| + δ) ≈ α per coordinate; uncorrected it is "
        f"α(1−μ)g/(√(1−ρ)|g| + δ). Both runs start from the same weights and batch, so their first update ratios "
        f"(|Δθ|/|θ| per layer) differ only by that factor: measured ×{ratio:.3f} (median over layers).",
        [comparison_figure(results, "Adam with and without bias correction", out / "comparison.png")], differs,
        parts=parts)
