"""Chapter: initialization. The std of the forward signal per layer: collapse, saturation, the healthy inits,
the theory's ratio per layer, and the symmetry that zero init never breaks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.finite_width import (
    DRAWS,
    allowed_distance,
    finite_width_backward,
    finite_width_signal,
    finite_width_stds,
    own_signal,
    ratio_per_layer,
    ratio_spread,
)
from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import COLLAPSED, CONFIDENCE_Z, KEPT, LEARNED, MOST, STALLED
from layerscope.lecture.claims.verdict import (
    CONTRADICTS,
    Part,
    Verdict,
    check,
    first_figure,
    fmt,
    holds,
    ln_classes,
    over_seeds,
    part,
    theory_error,
)
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
    """tanh (``run``): std falls at every layer, to below ``COLLAPSED`` of layer 1's, as the theory predicts
    (ln(std₁₀/std₁) within the theory's finite-width bias + ``CONFIDENCE_Z`` deviations of fresh draws); sigmoid,
    where the experiment runs it: ``sigmoid_signal_collapses``."""
    r = results["run"]
    std, theory = r.stat("activation_std"), r.theory("activation_std")
    ratio, predicted = std[-1] / std[0], theory[-1] / theory[0]
    draws = finite_width_stds(r.config)
    logs = np.log(draws[:, -1] / draws[:, 0])
    allowed = float(allowed_distance(logs, math.log(predicted)))
    off = abs(math.log(ratio / predicted)) if ratio > 0 else math.inf
    monotone = bool(np.all(np.diff(std) < 0))
    parts = [part("the std falls at every layer", monotone, f"std {fmt(std)}", cite=TANH_SMALL),
             part("it collapses toward zero", ratio < COLLAPSED,
                  f"layer 10 keeps ×{ratio:.2g} of layer 1 (collapsed: under ×{COLLAPSED:g})", cite=TANH_SMALL),
             part("as the mean-field theory predicts", off <= allowed,
                  f"theory ×{predicted:.2g}; off by {math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%}",
                  cite=TANH_SMALL)]
    sigmoid, sigmoid_text = ([], "") if "sigmoid" not in results else sigmoid_signal_collapses(results["sigmoid"])
    parts += sigmoid
    passed = holds(parts, *results.values())
    sigma_w2 = hidden_sigma_w2(r.config)
    return Verdict(
        passed, f"std layer 1→10: {std[0]:.3g} → {std[-1]:.3g} (×{ratio:.2g}; theory ×{predicted:.2g}, off by "
                f"{math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%})"
                + (f"; sigmoid: {sigmoid[2].numbers}" if sigmoid else ""),
        f"Per-layer activation std: {fmt(std)}. It falls at {'every' if monotone else 'not every'} layer; the "
        f"mean-field recursion q_l = σ_w² E[tanh(√q z)²] with σ_w² = width · Var W = {sigma_w2:.3g} predicts "
        f"{fmt(theory)}: in the linear regime of tanh each layer multiplies the std by about √σ_w² ≈ "
        f"{math.sqrt(sigma_w2):.2f}. The allowed distance of the layer-10/layer-1 ratio from the theory is derived "
        f"from {DRAWS} fresh draws of this network: the theory's finite-width bias plus {CONFIDENCE_Z:g} standard "
        f"deviations of ln(ratio).{sigmoid_text}", first_figure(r), _differs(parts), theory_error(r), parts)


TANH_SMALL = "001:79"  # tanh, W ~ N(0, 0.01²): the lecture's experiment (its figure: the std collapses)
SIGMOID_SMALL = "000:129"  # sigmoid, W ~ N(0, 0.01²): "weights too small ... the information vanishes"


def sigmoid_signal_collapses(r: RunResult) -> tuple[list[Part], str]:
    """Sigmoid, W ~ N(0, 0.01²): the mean sits at σ(0) = 1/2 and the std at the theory's fixed point, while the input's
    signal (each unit's spread over the samples, of the run's own network in float64) collapses by the theory's
    √χ a layer; tolerances from fresh draws in float64, as ``std_collapses``'."""
    mean, theory_mean = r.stat("activation_mean"), r.theory("activation_mean")
    std, theory_std = r.stat("activation_std"), r.theory("activation_std")
    draws, own = finite_width_signal(r.config), own_signal(r.config, r.summary.get("device", "cpu"))
    mean_off, mean_allowed = np.abs(mean - theory_mean), allowed_distance(draws["activation_mean"], theory_mean)
    std_off, std_allowed = np.abs(std - theory_std), allowed_distance(draws["activation_std"], theory_std)
    spread = own["sample_spread"]
    ratio = spread[-1] / spread[0]
    chi = r.theory("chi")
    predicted = math.sqrt(float(np.prod(chi[1:])))
    logs = np.log(draws["sample_spread"][:, -1] / draws["sample_spread"][:, 0])
    allowed = float(allowed_distance(logs, math.log(predicted)))
    off = abs(math.log(ratio / predicted)) if ratio > 0 else math.inf
    rebuilt = float(np.max(np.abs(own["activation_std"] / std - 1)))
    parts = [part("with sigmoid the activations' mean sits at σ(0) = 1/2 in every layer",
                  bool(np.all(mean_off <= mean_allowed)),
                  f"mean {fmt(mean)}; theory {theory_mean[-1]:.3g}; worst {_margin(mean_off, mean_allowed)}",
                  cite=SIGMOID_SMALL),
             part("with sigmoid the std over samples and units follows the theory to a fixed point, not to zero",
                  bool(np.all(std_off <= std_allowed)) and std[-1] / std[0] > KEPT,
                  f"std {std[0]:.3g} → {std[-1]:.3g} (×{std[-1] / std[0]:.2f}); worst "
                  f"{_margin(std_off, std_allowed, theory_std)}", cite=SIGMOID_SMALL),
             part("with sigmoid the input's signal (each unit's spread over the samples) collapses toward zero",
                  ratio < COLLAPSED, f"spread {spread[0]:.3g} → {spread[-1]:.3g}: layer 10 keeps ×{ratio:.2g} of "
                                     f"layer 1 (collapsed: under ×{COLLAPSED:g})", lecture=True, cite=SIGMOID_SMALL),
             part("it collapses by √χ a layer, as the mean-field theory predicts",
                  off <= allowed and rebuilt <= REBUILT,
                  f"theory ×{predicted:.3g}; off by {math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%} (the "
                  f"run's network rebuilt: its recorded std within {rebuilt:.1e})", cite=SIGMOID_SMALL)]
    sigma_w2 = hidden_sigma_w2(r.config)
    spacing = np.finfo(np.float32).eps / 2  # float32's spacing of the numbers in [1/2, 1)
    lost = np.flatnonzero(spread < spacing)
    rounding = (f" From layer {lost[0] + 1} on it is smaller than float32's spacing of the numbers just over 1/2 "
                f"({spacing:.1e}): the run's own float32 arithmetic rounds it away." if len(lost) else "")
    text = (f" With sigmoid (σ_w² = {sigma_w2:.3g}) 'the signal' cannot be the std the lecture's figure draws: σ(0) = "
            f"1/2, so every unit sits near 1/2 plus a fixed offset of its own (Σ_i w_ji · 1/2, spread √(σ_w²/4) ≈ "
            f"{math.sqrt(sigma_w2 / 4):.3g} in the pre-activation), and the std over samples and units settles at the "
            f"theory's fixed point ({fmt(std)}; theory {fmt(theory_std)}). The information about the input is the "
            f"part of a unit's output that changes from sample to sample: each unit's std over the "
            f"{r.config['trainer']['batch_size']} samples, root-mean-square over the layer ({fmt(spread)}). "
            f"Linearized about each unit's offset it is carried by the same Jacobian as the backward signal, ×√χ_l = "
            f"√(σ_w² E[σ'(h_l)²]) ≈ {math.sqrt(float(np.nanmean(chi[1:]))):.3g} a layer (σ' ≤ 1/4). It is measured "
            f"on the run's own network, rebuilt from its config and seed, in float64.{rounding} Tolerances: {DRAWS} "
            f"fresh draws of this network in float64, their bias from the theory plus {CONFIDENCE_Z:g} standard "
            f"deviations.")
    return parts, text


REBUILT = 1e-4
"""The network rebuilt from a run's config and seed is the run's: its activation std within 0.01% of the recorded one
per layer (float32 against float64 rounding moves it about 1e-7; another draw of the weights, 0.2% to 4% at width
500)."""


def _differs(parts: list[Part], why: str = "") -> str | None:
    """The statements the runs contradict, with their numbers (and ``why``); None where none is."""
    contradicted = [f"{p.statement} ({p.numbers})" for p in parts if p.outcome == CONTRADICTS]
    return "Measured against the lecture's words: " + "; ".join(contradicted) + f".{why}" if contradicted else None


def _margin(off: np.ndarray, allowed: np.ndarray, scale: np.ndarray | None = None) -> str:
    """The layer nearest its allowance (over it, where one is): its distance and allowance, relative to ``scale``."""
    worst = int(np.argmax(off - allowed))
    if scale is None:
        return f"layer {worst + 1} off by {off[worst]:.2g}, allowed {allowed[worst]:.2g}"
    return f"layer {worst + 1} off by {off[worst] / scale[worst]:.2%}, allowed {allowed[worst] / scale[worst]:.2%}"


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
                  f"saturated {saturated.min():.0%}–{saturated.max():.0%} per layer", cite="001:79, 000:130"),
             part("the backward signal follows the mean-field gain χ", _within_factor(growth, predicted),
                  f"×{growth:.3g} from layer 10 to 1, theory ×{predicted:.3g}", cite="000:130"),
             part("the gradients vanish", growth < 1, f"backward signal ×{growth:.3g} from layer 10 to 1", lecture=True,
                  cite="000:130")]
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
    parts = [part("the std follows the mean-field theory at every layer", matches, f"worst margin: {margin}",
                  cite="001:89, 001:90"),
             part("the signal reaches the last layer", kept > KEPT,
                  f"layer 10 keeps ×{kept:.2f} of layer 1's std (kept: over ×{KEPT:g})", cite="000:140, 001:91"),
             part("no layer saturates", saturated.max() < UNSATURATED,
                  f"at most {saturated.max():.2%} of a layer's units at ±1 (under {UNSATURATED:.0%})",
                  cite="000:150, 001:91")]
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
                        alternatives: tuple[float, float], cite: str) -> Verdict:
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
                  f"{CONFIDENCE_Z:g} sd, ±{tolerance:.1%})", cite=cite),
             part("the runs tell it from σ_w² = " + " and ".join(f"{s:g}" for s in alternatives), decisive,
                  f"{excluded} sd away (needed: {DECISIVE_Z:g})", cite=cite)]
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
                               "by 1/√2 ≈ 0.707.", (0.75, 1.3), "000:150, 001:93, 001:95")


@check()
def std_constant(results: dict[str, RunResult], out: Path) -> Verdict:
    """The per-layer std ratio is the theory's for ReLU with σ_w² = 2 (1), within its finite-width spread."""
    return _relu_ratio_verdict(results, 2.0, "He + ReLU", "He's σ_w² = 2 exactly undoes ReLU's halving of the "
                               "second moment.", (1.5, 2.6), "000:151, 001:99")


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
                  f"unit spread {spread:.3g}; sigmoid: non-zero updates in hidden layers {moved.tolist()}",
                  cite="000:124, 001:75, 002:569"),
             part("the loss does not move from ln(classes)", still and abs(loss - chance) / chance < STILL,
                  f"tanh: {loss:.4f} vs ln C = {chance:.4f}, every hidden gradient 0: {still}", cite="001:75")]
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


def backward_follows_chi(r: RunResult) -> tuple[bool, str]:
    """The backward std of layers 1–9 relative to layer 10's against the theory's ∏√χ, in log, each within the
    finite-width bias + ``CONFIDENCE_Z`` deviations of fresh draws of the run's network."""
    backward, theory = r.stat("backward_std"), r.theory("backward_std")
    target = np.log(theory / theory[-1])[:-1]
    draws = finite_width_backward(r.config)
    allowed = allowed_distance(np.log(draws / draws[:, -1:])[:, :-1], target)
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.abs(np.log(backward / backward[-1])[:-1] - target)
    worst = int(np.nanargmax(off - allowed)) if np.isfinite(off - allowed).any() else 0
    return bool(np.all(off <= allowed)), (f"layer 1 ×{backward[0] / backward[-1]:.3g} of layer 10's, theory "
                                          f"×{theory[0] / theory[-1]:.3g}; worst: layer {worst + 1} off by "
                                          f"{math.exp(off[worst]) - 1:.1%}, allowed {math.exp(allowed[worst]) - 1:.1%}")


def _kept(r: RunResult, stat: str) -> float:
    """Layer 1's ``stat`` over layer 10's: how much of the backward signal reaches the input."""
    values = r.stat(stat)
    return float(values[0] / values[-1])


@check("xavier_tanh", "he_relu", "xavier_relu", "xavier_sigmoid")
def gradient_kept(results: dict[str, RunResult], out: Path) -> Verdict:
    """Step 0: the backward std per layer follows the theory's χ (``backward_follows_chi``) for every init; the
    lecture's good inits keep over ``KEPT`` of it at layer 1, Xavier + ReLU under it; Xavier + sigmoid, forward and
    backward."""
    sigmoid = results["xavier_sigmoid"]
    follows = {label: backward_follows_chi(r) for label, r in results.items()}
    kept = {label: _kept(r, "backward_std") for label, r in results.items()}
    weights = {label: _kept(r, "weight_grad_norm") for label, r in results.items()}

    def keeps(label: str, setting: str, cite: str) -> Part:
        return part(f"{setting} keeps the gradient: layer 1's backward std over ×{KEPT:g} of layer 10's",
                    kept[label] > KEPT, f"×{kept[label]:.3g} (weight gradient norm ×{weights[label]:.3g})",
                    lecture=True, cite=cite)

    std, saturated = sigmoid.stat("activation_std"), sigmoid.stat("saturated_fraction")
    spread = own_signal(sigmoid.config, sigmoid.summary.get("device", "cpu"))["sample_spread"]
    signal = spread[-1] / spread[0]
    chi = {label: r.theory("chi") for label, r in results.items()}
    predicted = math.sqrt(float(np.prod(chi["xavier_sigmoid"][1:])))
    parts = [part("Xavier + tanh: the backward signal follows the theory's χ at every layer", *follows["xavier_tanh"],
                  cite="000:140, 001:86"),
             keeps("xavier_tanh", "Xavier + tanh", "000:140, 000:150, 001:104"),
             part("He + ReLU: the backward signal follows χ = 1 at every layer", *follows["he_relu"],
                  cite="000:151, 001:99"),
             keeps("he_relu", "He + ReLU", "000:140, 000:151, 001:104"),
             part("Xavier + ReLU: the backward signal follows χ = 1/2 at every layer", *follows["xavier_relu"],
                  cite="000:150, 001:95"),
             part(f"Xavier + ReLU does not keep it: layer 1's backward std under ×{KEPT:g} of layer 10's",
                  kept["xavier_relu"] < KEPT, f"×{kept['xavier_relu']:.3g} (weight gradient norm "
                                              f"×{weights['xavier_relu']:.3g})", lecture=True, cite="000:150, 001:95"),
             part("Xavier + sigmoid: the backward signal follows the theory's χ at every layer",
                  *follows["xavier_sigmoid"], cite="000:150"),
             part("Xavier + sigmoid: the activation std stays away from 0 and from saturation",
                  std[-1] / std[0] > KEPT and saturated.max() < UNSATURATED,
                  f"layer 10 keeps ×{std[-1] / std[0]:.2f} of layer 1's std; at most {saturated.max():.2%} saturated",
                  lecture=True, cite="000:150, 001:104"),
             part(f"Xavier + sigmoid: the input's signal (each unit's spread over the samples) keeps over ×{KEPT:g} "
                  f"at layer 10",
                  signal > KEPT, f"×{signal:.2g} (theory ×{predicted:.2g})",
                  lecture=True, cite="000:150, 001:104"),
             keeps("xavier_sigmoid", "Xavier + sigmoid", "000:150, 001:104")]
    passed = holds(parts, *results.values())
    contradicted = [p.statement for p in parts if p.outcome == CONTRADICTS]
    differs = None
    if any(p.startswith("Xavier + sigmoid") for p in contradicted):
        differs = (f"The lecture recommends Xavier for sigmoid as for tanh. Measured at step 0 with sigmoid, the std "
                   f"the lecture's figure draws goes ×{std[-1] / std[0]:.2f} from layer 1 to 10, the backward signal "
                   f"at layer 1 is ×{kept['xavier_sigmoid']:.2g} of layer 10's (the weight gradients ×"
                   f"{weights['xavier_sigmoid']:.2g}) and the input's signal, each unit's spread over the samples, "
                   f"ends ×{signal:.2g} of layer 1's. Sigmoid's slope is at most 1/4, so with σ_w² = "
                   f"{hidden_sigma_w2(sigmoid.config):.3g} the gain χ = σ_w² E[σ'(h)²] ≈ "
                   f"{float(np.nanmean(chi['xavier_sigmoid'][1:])):.3g} per layer shrinks both by √χ a layer; the "
                   f"std that stays is each unit's fixed offset around σ(0) = 1/2, the same for every input. Keeping "
                   f"Var(y) = Var(z) (001:88–90) needs f'(0) = 1 and zero-mean activations, and sigmoid has neither.")
    elif contradicted:
        differs = _differs(parts)
    lines = "; ".join(f"{label}: backward std {fmt(r.stat('backward_std'))}, χ per layer ≈ "
                      f"{float(np.nanmean(chi[label][1:])):.3g}" for label, r in results.items())
    return Verdict(
        passed, "backward layer 1 / layer 10: " + ", ".join(f"{k} ×{v:.2g}" for k, v in kept.items()),
        f"The backward signal dL/da per layer at step 0 ({lines}). The mean-field theory scales it by √χ_l = "
        f"√(σ_w² E[φ'(h_l)²]) from layer l to l − 1, anchored at the measured layer 10; each layer's ratio to layer 10 "
        f"is allowed the bias plus {CONFIDENCE_Z:g} standard deviations of {DRAWS} fresh draws of the same network "
        f"(same init, width, data, batch and loss). Kept: layer 1's backward std over ×{KEPT:g} of layer 10's. "
        f"With tanh (tanh'(0) = 1) and Xavier's σ_w² = 1, χ = E[tanh'(h)²] rises from {chi['xavier_tanh'][1]:.2f} at "
        f"layer 2 to {chi['xavier_tanh'][-1]:.2f} at layer 10 as the pre-activations shrink; ReLU halves the mean "
        f"square of the backward signal (χ = σ_w²/2), which He's σ_w² = 2 undoes and Xavier's σ_w² = 1 does not. "
        f"The weight gradient norms (layer 1 / layer 10: " + ", ".join(f"{k} ×{v:.2g}" for k, v in weights.items())
        + ") carry each layer's input as well as its backward signal, so they need not follow it.",
        [comparison_figure(results, "Gradient variance at step 0", out / "comparison.png")], differs,
        theory_error(results["xavier_tanh"]), parts)


BAD_INITS = {"small": "N(0, 0.01²)", "large": "N(0, 1)"}
"""The lecture's two random inits (001:79), by the variant labels of ``bad_init_trains``."""


def _initial_loss(r: RunResult) -> float:
    """The loss of the first training batch, before any update."""
    losses = r.batch_losses()[1]
    return float(losses[0]) if len(losses) else math.nan


@check("xavier", "small", "large")
def bad_init_trains(results: dict[str, RunResult], out: Path) -> Verdict:
    """Over seeds: Xavier trains (loss under ``LEARNED`` · ln C); each bad init stays over ``STALLED`` · ln C and ends
    above Xavier's loss (the lecture's words, 000:137 and 001:82, tested as they stand)."""
    xavier, chance = results["xavier"], ln_classes(results["xavier"])

    def numbers(label: str) -> str:
        r = results[label]
        return (f"loss {_initial_loss(r):.3g} → {r.final('train_loss'):.3g}, train accuracy "
                f"{r.final('train_accuracy'):.0%} (ln C = {chance:.3f})")

    parts = [over_seeds("Xavier's N(0, 1/fan_in), the reference, trains", results,
                        lambda r: LEARNED * chance - r["xavier"].final("train_loss"),
                        f"{numbers('xavier')}; learned: under {LEARNED * chance:.3f}", cite="001:86, 001:104")]
    for label, words in BAD_INITS.items():
        parts += [over_seeds(f"with W ~ {words} the net does not train: its loss stays over {STALLED:.0%} of ln C",
                             results, lambda r, label=label: r[label].final("train_loss") - STALLED * chance,
                             f"{numbers(label)}; stalled: over {STALLED * chance:.3f}", lecture=True,
                             cite="000:137, 001:82"),
                  over_seeds(f"with W ~ {words} it ends with a higher loss than Xavier", results,
                             lambda r, label=label: lower(r["xavier"].final("train_loss"),
                                                          r[label].final("train_loss")),
                             f"{results[label].final('train_loss'):.3g} vs {xavier.final('train_loss'):.3g}",
                             lecture=True, cite="000:137, 001:82")]
    passed = holds(parts, *results.values())
    small, large = results["small"], results["large"]
    sigma_w2 = {label: hidden_sigma_w2(r.config) for label, r in results.items()}
    width = xavier.config["model"]["width"]
    rises = large.final("train_loss") < _initial_loss(large) and large.final("train_accuracy") > math.exp(-chance)
    learning = "; its loss falls and its accuracy rises above chance (1/C): it learns, more slowly than Xavier" * rises
    return Verdict(
        passed, "; ".join(f"{label}: loss {r.final('train_loss'):.3g}, accuracy {r.final('train_accuracy'):.0%}"
                          for label, r in results.items()),
        f"tanh, {xavier.config['model']['depth']}×{width}, trained {xavier.summary.get('steps')} steps on "
        f"{xavier.config['data']['name']}. W ~ N(0, 0.01²) gives σ_w² = width · Var W = {sigma_w2['small']:.3g}: "
        f"in the linear regime of tanh the forward signal shrinks ×√σ_w² ≈ {math.sqrt(sigma_w2['small']):.2g} a "
        f"layer (activation std at step 0: {fmt(small.stat('activation_std'))}), so the head sees nearly a constant "
        f"and the hidden layers' gradients shrink alike (backward std {fmt(small.stat('backward_std'))}): "
        f"{numbers('small')}. W ~ N(0, 1) gives σ_w² = {sigma_w2['large']:.3g}: the units saturate toward ±1 "
        f"(saturated fraction {fmt(large.stat('saturated_fraction'))}) and the head's N(0, 1) weights over "
        f"{width} such inputs make logits of std about √{width} ≈ {math.sqrt(width):.0f}, where a uniform guess "
        f"costs ln C: {numbers('large')}{learning}. Xavier (σ_w² = {sigma_w2['xavier']:.3g}): {numbers('xavier')}. "
        f"Each statement is decided over {len(xavier.seeds) or 1} seeds by the rule in the report's header.",
        [comparison_figure(results, "Bad random init, trained", out / "comparison.png")], _differs(parts), parts=parts)
