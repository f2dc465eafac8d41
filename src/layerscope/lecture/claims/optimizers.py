"""Chapter: optimizers. SGD, momentum and Adam on a ravine, learning-rate decay, the saddle, Adagrad's
shrinking step and Adam's bias correction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import LEARNED
from layerscope.lecture.claims.verdict import Verdict, check, holds, ln_classes, over_seeds, part
from layerscope.lecture.figures import comparison_figure, ravine_figure, saddle_figure, step_size_figure
from layerscope.lecture.ravine import START, A, B, ravine
from layerscope.lecture.ravine import recorded as ravine_paths
from layerscope.lecture.saddle import ESCAPED, growth, saddle
from layerscope.lecture.saddle import recorded as saddle_paths
from layerscope.runs.results import RunResult

ZIGZAG = 0.5  # crossing the ravine's floor on at least half of the steps is a zig-zag; a damped approach crosses once


STALLS = 2.0  # "stalls" where another escapes: takes over twice its steps to leave the plateau


SETTLED_EPOCHS = 5  # where a loss has settled: the last 5 epochs (of lr_decay's 30, both decays below 1/5 of α₀)


def _ahead_of_sgd(names: tuple[str, ...], target: float):
    """The effect "``names`` reach the loss ``target`` before SGD": SGD's steps to it less the slowest one's."""
    return lambda r: r["sgd"].steps_to(target) - max(r[n].steps_to(target) for n in names)


@check("sgd", "momentum", "adam")
def optimizers(results: dict[str, RunResult], out: Path) -> Verdict:
    """Ravine: momentum, RMSProp and Adam settle in fewer steps than SGD; MLP: momentum and Adam reach the loss level first."""
    paths = ravine_paths(out)
    steps = {t.name: t.steps_to_min for t in paths}
    target = LEARNED * ln_classes(results["sgd"])
    reach = {label: r.steps_to(target) for label, r in results.items()}
    rates = {t.name: t.zigzag_rate for t in paths}
    sgd_zigzags = rates["sgd"] >= ZIGZAG
    adaptive = [n for n in ("adagrad", "rmsprop", "adam") if n in steps]
    parts = [
        part("SGD zig-zags across the ravine", sgd_zigzags, f"crosses the floor on {rates['sgd']:.0%} of its steps"),
        part("momentum reaches the ravine's minimum in fewer steps than SGD", steps["momentum"] < steps["sgd"],
             f"momentum {steps['momentum']:g}, SGD {steps['sgd']:g}"),
        part("the adaptive methods reach it in fewer steps than SGD", all(steps[n] < steps["sgd"] for n in adaptive),
             ", ".join(f"{n} {steps[n]:g}" for n in adaptive) + f" vs SGD {steps['sgd']:g}", lecture=True),
        over_seeds("training the MLP, momentum and Adam reach the loss level before SGD", results,
                   _ahead_of_sgd(("momentum", "adam"), target),
                   f"momentum {reach['momentum']:g}, Adam {reach['adam']:g}, SGD {reach['sgd']:g} steps"),
        over_seeds("training the MLP, AdaGrad and RMSProp reach it before SGD too", results,
                   _ahead_of_sgd(tuple(n for n in ("adagrad", "rmsprop") if n in reach), target),
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


def _settled(result: RunResult) -> float:
    """The mean train loss of the last ``SETTLED_EPOCHS`` epochs."""
    return float(np.mean(result.curve()[1][-SETTLED_EPOCHS:]))


def _jitter(result: RunResult) -> float:
    """The std of the train loss over the last ``SETTLED_EPOCHS`` epochs."""
    return float(np.std(result.curve()[1][-SETTLED_EPOCHS:]))


@check("constant")
def decay_settles_lower(results: dict[str, RunResult], out: Path) -> Verdict:
    """Both decayed runs end lower than the constant-lr run (mean train loss of the last ``SETTLED_EPOCHS`` epochs)."""
    settled = {label: _settled(r) for label, r in results.items()}
    jitter = {label: _jitter(r) for label, r in results.items()}
    def settles_lower(decay: str):
        return lambda r: lower(_settled(r[decay]), _settled(r["constant"]))

    def bounces(r: dict[str, RunResult]) -> float:
        return min(lower(_jitter(r[k]), _jitter(r["constant"])) for k in ("inverse_time", "exponential"))

    parts = [over_seeds(f"the {k.replace('_', ' ')} decay settles at a lower loss than a constant rate", results,
                        settles_lower(k), f"{settled[k]:.4f} vs {settled['constant']:.4f}")
             for k in ("inverse_time", "exponential")]
    parts.append(over_seeds("the constant rate keeps bouncing around the minimum", results, bounces,
                            f"std over the last {SETTLED_EPOCHS} epochs: "
                            + ", ".join(f"{k} {v:.2g}" for k, v in jitter.items()), lecture=True))
    passed = holds(parts)
    return Verdict(
        passed, f"train loss, last {SETTLED_EPOCHS} epochs: " + ", ".join(f"{k} {v:.3f} ± {jitter[k]:.2g}" for k, v in settled.items()),
        f"Mean ± std of the train loss over the last {SETTLED_EPOCHS} epochs: "
        + ", ".join(f"{k} {v:.4f} ± {jitter[k]:.2g}" for k, v in settled.items()) + ". A constant large step "
        "keeps bouncing around the minimum; a shrinking one lets the iterate settle into it.",
        [comparison_figure(results, "Learning-rate decay", out / "comparison.png")], parts=parts)


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
    why = (f"At step 1 Adam's moments are s₁ = (1−μ)g and r₁ = (1−ρ)g² (μ = {mu:g}, ρ = {rho:g}). Corrected, "
           f"ŝ₁ = g and r̂₁ = g², so the step is α·g/(|g| + δ) ≈ α per coordinate; uncorrected it is "
           f"α(1−μ)g/(√(1−ρ)|g| + δ). Both runs start from the same weights and batch, so their first update ratios "
           f"(|Δθ|/|θ| per layer) differ only by that factor: measured ×{ratio:.3f} (median over layers).")
    figure = comparison_figure(results, "Adam with and without bias correction", out / "comparison.png")
    return Verdict(passed, f"first update uncorrected / corrected ×{ratio:.3f} (predicted {predicted:.3f})", why,
                   [figure], differs, parts=parts)
