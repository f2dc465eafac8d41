"""Chapter: initialization. The std of the forward signal per layer: collapse, saturation, the healthy inits,
the theory's ratio per layer, and the symmetry that zero init never breaks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.finite_width import (
    DRAWS,
    allowed_distance,
    finite_width_stds,
    ratio_per_layer,
    ratio_spread,
)
from layerscope.lecture.claims.thresholds import COLLAPSED, CONFIDENCE_Z, KEPT, MOST
from layerscope.lecture.claims.verdict import Verdict, check, first_figure, fmt, holds, ln_classes, part, theory_error
from layerscope.lecture.figures import comparison_figure
from layerscope.runs.results import RunResult
from layerscope.theory.meanfield import fixed_point_q
from layerscope.theory.prediction import init_variances, predict

DECISIVE_Z = CONFIDENCE_Z + 2.0
"""A near miss counts as excluded only 6 deviations away: its own draw would have to stray 2 deviations
toward the claim (probability 2.3%) to pass. Closer than that, the runs cannot decide and the check fails."""


FACTOR = 2.0  # for quantities spanning orders of magnitude: agree within this factor


UNSATURATED = 0.05  # "away from saturation": under 5% of a layer's units at ±1, a tenth of "most"


STILL = 0.01  # "does not move": within 1% of where it started


def _within_factor(measured: float, predicted: float, factor: float = FACTOR) -> bool:
    return measured > 0 and predicted > 0 and abs(math.log(measured / predicted)) <= math.log(factor)


def _relu_ratio(sigma_w2: float) -> float:
    """The theory's per-layer std ratio for ReLU with this σ_w² (1/√2 for Xavier, 1 for He)."""
    return ratio_per_layer(predict("relu", None, [sigma_w2] * 3, [0.0] * 3, 1.0).activation_std)


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
    parts = [part("the std falls at every layer", monotone, f"std {fmt(std)}"),
             part("it collapses toward zero", ratio < COLLAPSED,
                  f"layer 10 keeps ×{ratio:.2g} of layer 1 (collapsed: under ×{COLLAPSED:g})"),
             part("as the mean-field theory predicts", off <= allowed,
                  f"theory ×{predicted:.2g}; off by {math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%}")]
    passed = holds(parts, r)
    sigma_w2 = hidden_sigma_w2(r.config)
    return Verdict(
        passed, f"std layer 1→10: {std[0]:.3g} → {std[-1]:.3g} (×{ratio:.2g}; theory ×{predicted:.2g}, off by "
                f"{math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%})",
        f"Per-layer activation std: {fmt(std)}. It falls at {'every' if monotone else 'not every'} layer; the "
        f"mean-field recursion q_l = σ_w² E[tanh(√q z)²] with σ_w² = width · Var W = {sigma_w2:.3g} predicts "
        f"{fmt(theory)}: in the linear regime of tanh each layer multiplies the std by about √σ_w² ≈ "
        f"{math.sqrt(sigma_w2):.2f}. The allowed distance of the layer-10/layer-1 ratio from the theory is derived "
        f"from {DRAWS} fresh draws of this network: the theory's finite-width bias plus {CONFIDENCE_Z:g} standard "
        f"deviations of ln(ratio).", first_figure(r), theory_error=theory_error(r), parts=parts)


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
        f"Saturated fraction (|a| within 1% of the range from ±1) per layer: {fmt(saturated)}. Backward-signal "
        f"std per layer: {fmt(backward)}.", first_figure(r), differs, theory_error(r), parts)


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
    worst = int(np.argmax(off - allowed))  # the layer nearest its allowance (over it, where one is)
    margin = f"layer {worst + 1} off by {off[worst] / theory[worst]:.2%}, allowed {allowed[worst] / theory[worst]:.2%}"
    parts = [part("the std follows the mean-field theory at every layer", matches, f"worst margin: {margin}"),
             part("the signal reaches the last layer", kept > KEPT,
                  f"layer 10 keeps ×{kept:.2f} of layer 1's std (kept: over ×{KEPT:g})"),
             part("no layer saturates", saturated.max() < UNSATURATED,
                  f"at most {saturated.max():.2%} of a layer's units at ±1 (under {UNSATURATED:.0%})")]
    passed = holds(parts, r)
    return Verdict(
        passed, f"std {std[0]:.3g} → {std[-1]:.3g} (×{ratio_per_layer(std):.2f} per layer); max saturated "
                f"{saturated.max():.1%}; worst margin against the theory: {margin}",
        f"Per-layer activation std {fmt(std)} against the theory's {fmt(theory)}; the largest saturated "
        f"fraction is {saturated.max():.2%}. The allowed distance from the theory is derived per layer from "
        f"{DRAWS} fresh draws of this network (same init, width, data and batch): the infinite-width theory's "
        f"own bias at this width (at most {np.max(np.abs(center - theory) / theory):.2%}) plus {CONFIDENCE_Z:g} "
        f"standard deviations of a draw (at most {np.max(spread / theory):.2%}){'' if matches else '; the run lies outside it'}. "
        f"{_tanh_fixed_point(hidden_sigma_w2(r.config))}",
        first_figure(r), theory_error=theory_error(r), parts=parts)


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


def _relu_ratio_verdict(results: dict[str, RunResult], sigma_w2: float, setting: str, why: str,
                        alternatives: tuple[float, float]) -> Verdict:
    """PASS when the mean ln(per-layer std ratio) over the runs (independent draws: one seed each) is within
    ``CONFIDENCE_Z`` finite-width deviations of the theory's, and the near misses lie ``DECISIVE_Z`` away."""
    runs = list(results.values())
    r = runs[0]
    std = r.stat("activation_std")
    logs = [math.log(ratio_per_layer(x.stat("activation_std"))) for x in runs]
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
        f"Per-layer activation std of seed {r.config.get('trainer', {}).get('seed')}: {fmt(std)}. {why} The "
        f"tolerance is derived, not chosen: {DRAWS} fresh draws of this network at its width, depth and batch give "
        f"a standard deviation of {spread * math.sqrt(len(runs)):.4f} in ln(ratio) per draw, {spread:.4f} for the "
        f"mean of these {len(runs)} independent seeds; the check accepts {CONFIDENCE_Z:g} deviations (a true claim "
        f"fails with probability about 6e-5) and needs the near misses {DECISIVE_Z:g} away: {excluded} deviations "
        f"away{'' if decisive else ' — too close: these runs cannot decide; use more seeds or a wider net'}. "
        f"{_RELU_WIDTH_NOTE}", first_figure(r), theory_error=theory_error(r), parts=parts)


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
    loss, chance = tanh.final("train_loss"), ln_classes(tanh)
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
