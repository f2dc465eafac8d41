"""Chapter: optimizers. SGD, momentum and Adam on a ravine, learning-rate decay, the saddle, Adagrad's
shrinking step and Adam's bias correction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import LEARNED
from layerscope.lecture.claims.verdict import Verdict, check, fmt, holds, ln_classes, over_seeds, part
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


@check("sgd", "momentum", "adagrad", "rmsprop", "adam")
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
        part("SGD zig-zags across the ravine", sgd_zigzags, f"crosses the floor on {rates['sgd']:.0%} of its steps",
             cite="000:70, 001:47"),
        part("momentum reaches the ravine's minimum in fewer steps than SGD", steps["momentum"] < steps["sgd"],
             f"momentum {steps['momentum']:g}, SGD {steps['sgd']:g}", cite="000:72, 001:55"),
        part("the adaptive methods reach it in fewer steps than SGD", all(steps[n] < steps["sgd"] for n in adaptive),
             ", ".join(f"{n} {steps[n]:g}" for n in adaptive) + f" vs SGD {steps['sgd']:g}", lecture=True,
             cite="000:81, 001:61"),
        over_seeds("training the MLP, momentum and Adam reach the loss level before SGD", results,
                   _ahead_of_sgd(("momentum", "adam"), target),
                   f"momentum {reach['momentum']:g}, Adam {reach['adam']:g}, SGD {reach['sgd']:g} steps",
                   cite="001:55, 001:69"),
        over_seeds("training the MLP, AdaGrad and RMSProp reach it before SGD too", results,
                   _ahead_of_sgd(tuple(n for n in ("adagrad", "rmsprop") if n in reach), target),
                   ", ".join(f"{n} {reach[n]:g}" for n in ("adagrad", "rmsprop") if n in reach) + f" vs SGD "
                   f"{reach['sgd']:g} steps", lecture=True, cite="000:81, 001:61"),
        over_seeds("AdaGrad slows down: its loss falls less in the second half of training, beside its first, than "
                   "RMSProp's", results, lambda r: lower(_late_progress(r["adagrad"]), _late_progress(r["rmsprop"])),
                   "second half's loss decrease over the first half's: "
                   + ", ".join(f"{k} {_late_progress(results[k]):.3f}" for k in ("adagrad", "rmsprop")),
                   lecture=True, cite="000:87, 001:64")]
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


EARLY_EPOCHS = 3  # "early": the first 3 epochs (of 30), while a decayed rate is still over half of α₀
EARLY_PACE = 1.1  # "keeps the early speed": an early loss within ×1.1 of the constant rate's


def _early(result: RunResult) -> float:
    """The mean train loss of the first ``EARLY_EPOCHS`` epochs."""
    return float(np.mean(result.curve()[1][:EARLY_EPOCHS]))


def _settled(result: RunResult) -> float:
    """The mean train loss of the last ``SETTLED_EPOCHS`` epochs."""
    return float(np.mean(result.curve()[1][-SETTLED_EPOCHS:]))


def _jitter(result: RunResult) -> float:
    """The std of the train loss over the last ``SETTLED_EPOCHS`` epochs."""
    return float(np.std(result.curve()[1][-SETTLED_EPOCHS:]))


@check("constant", "inverse_time", "exponential", "adam_constant", "adam_exponential")
def decay_settles_lower(results: dict[str, RunResult], out: Path) -> Verdict:
    """Both decayed runs end lower than the constant-lr run (mean train loss of the last ``SETTLED_EPOCHS`` epochs)
    and keep its early speed; Adam with a decay ends lower than Adam without."""
    settled = {label: _settled(r) for label, r in results.items()}
    jitter = {label: _jitter(r) for label, r in results.items()}
    early = {label: _early(r) for label, r in results.items()}
    decays = ("inverse_time", "exponential")

    def settles_lower(decay: str, constant: str = "constant"):
        return lambda r: lower(_settled(r[decay]), _settled(r[constant]))

    def bounces(r: dict[str, RunResult]) -> float:
        return min(lower(_jitter(r[k]), _jitter(r["constant"])) for k in decays)

    def keeps_pace(r: dict[str, RunResult]) -> float:
        return math.log(EARLY_PACE) - max(math.log(_early(r[k]) / _early(r["constant"])) for k in decays)

    parts = [over_seeds(f"the {k.replace('_', ' ')} decay settles at a lower loss than a constant rate", results,
                        settles_lower(k), f"{settled[k]:.4f} vs {settled['constant']:.4f}", cite="002:454, 002:561")
             for k in decays]
    parts += [over_seeds("the constant rate keeps bouncing around the minimum", results, bounces,
                         f"std over the last {SETTLED_EPOCHS} epochs: "
                         + ", ".join(f"{k} {jitter[k]:.2g}" for k in ("constant", *decays)), lecture=True,
                         cite="002:454"),
              over_seeds("a decaying rate keeps the early speed of the large rate", results, keeps_pace,
                         f"mean train loss of the first {EARLY_EPOCHS} epochs: "
                         + ", ".join(f"{k} {early[k]:.4f}" for k in ("constant", *decays))
                         + f" (keeps the speed: within ×{EARLY_PACE:g} of the constant rate's)", lecture=True,
                         cite="002:561"),
              over_seeds("Adam too gains from a decaying rate", results,
                         settles_lower("adam_exponential", "adam_constant"),
                         f"{settled['adam_exponential']:.4f} vs {settled['adam_constant']:.4f}", lecture=True,
                         cite="002:553")]
    passed = holds(parts)
    return Verdict(
        passed, f"train loss, last {SETTLED_EPOCHS} epochs: " + ", ".join(f"{k} {v:.3f} ± {jitter[k]:.2g}" for k, v in settled.items()),
        f"Mean ± std of the train loss over the last {SETTLED_EPOCHS} epochs: "
        + ", ".join(f"{k} {v:.4f} ± {jitter[k]:.2g}" for k, v in settled.items()) + ". A constant large step "
        "keeps bouncing around the minimum; a shrinking one lets the iterate settle into it, and while it is still "
        f"large it descends as fast (first {EARLY_EPOCHS} epochs: "
        + ", ".join(f"{k} {v:.4f}" for k, v in early.items()) + "). Adam's per-weight step is scaled by its own "
        "running r̂, but its size is still α: shrinking α lets it settle too.",
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
                  f"{momentum.escape_step:g}", cite="001:56"),
             part("momentum escapes and reaches the minimum in fewer steps",
                  momentum.settle_step < sgd.settle_step,
                  f"settled at step {momentum.settle_step:g} with momentum, {sgd.settle_step:g} with SGD",
                  cite="001:56")]
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


def _late_progress(result: RunResult) -> float:
    """The train loss's decrease over the run's second half as a share of its decrease over the first half."""
    steps, loss = result.test_curve("train_loss")
    middle = float(np.interp(steps[-1] / 2, steps, loss))
    return (middle - loss[-1]) / (loss[0] - middle)


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
                  f"step {t1:.0f} → {t2:.0f}: ×{ratio['adagrad']:.3f} (1/√t: ×{candidates['1/√t']:.3f})",
                  cite="000:87, 001:64"),
             part("RMSProp's does not", nearest["rmsprop"] == "level",
                  f"step {t1:.0f} → {t2:.0f}: ×{ratio['rmsprop']:.3f}", cite="001:65")]
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


SETTLES_AFTER = 10  # the notes: "after 10 steps" the bias correction stops mattering (000:112, 002:472)


def _uncorrected_factor(mu: float, rho: float, t: int) -> float:
    """The uncorrected step over the corrected one at step ``t`` (same moments): (1−μᵗ)/√(1−ρᵗ)."""
    return (1 - mu**t) / math.sqrt(1 - rho**t)


@check("corrected", "uncorrected")
def adam_bias_correction(results: dict[str, RunResult], out: Path) -> Verdict:
    """The first update without bias correction is (1−μ)/√(1−ρ) times the corrected one (the candidate nearest the
    measured ratio, in log scale, among that, 1 and the notes' 0.1)."""
    corrected, uncorrected = results["corrected"], results["uncorrected"]
    optimizer = corrected.config["optimizer"]
    mu, rho = optimizer["mu"], optimizer["rho"]
    predicted = (1 - mu) / math.sqrt(1 - rho)
    ratio = float(np.nanmedian(uncorrected.stat("update_ratio", 0) / corrected.stat("update_ratio", 0)))
    at = next(i for i, record in enumerate(corrected.probes) if record.step >= SETTLES_AFTER)
    later = float(np.nanmedian(uncorrected.stat("update_ratio", at) / corrected.stat("update_ratio", at)))
    candidates = {"(1−μ)/√(1−ρ)": predicted, "1 (no difference)": 1.0, "1−μ (the notes' 'ten times too small')": 1 - mu}
    nearest = _nearest(ratio, candidates)
    parts = [part("without bias correction the first step is wrong in size", abs(math.log(ratio)) > math.log(2),
                  f"uncorrected / corrected first update: ×{ratio:.3f}", cite="000:102, 001:69"),
             part(f"it is (1−μ)/√(1−ρ) = {predicted:.3f} times the corrected one", nearest == "(1−μ)/√(1−ρ)",
                  f"×{ratio:.3f}; nearest of the candidates: {nearest}", cite="000:102, 001:69"),
             part("the first step is ten times too small (s₁ = 0.1·g)", ratio < 1, f"×{ratio:.3f}", lecture=True,
                  cite="000:104–110"),
             part(f"after about {SETTLES_AFTER} steps the correction no longer matters", abs(math.log(later)) < math.log(2),
                  f"uncorrected / corrected update at step {SETTLES_AFTER + 1}: ×{later:.3f}, (1−μᵗ)/√(1−ρᵗ) = "
                  f"{_uncorrected_factor(mu, rho, SETTLES_AFTER + 1):.3f} (no longer matters: within ×2 of 1)",
                  lecture=True, cite="000:112–114, 002:472"),
             over_seeds("without bias correction Adam converges more slowly", results,
                        lambda r: lower(r["corrected"].final("train_loss"), r["uncorrected"].final("train_loss")),
                        f"loss after {corrected.summary.get('steps')} steps: corrected {corrected.final('train_loss'):.3f}, "
                        f"uncorrected {uncorrected.final('train_loss'):.3f}", lecture=True, cite="001:69")]
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
    if abs(math.log(later)) >= math.log(2):
        differs = (differs or "") + (
            f" The notes add that after about {SETTLES_AFTER} steps the correction no longer matters. That holds for "
            f"the first moment (1 − μ¹⁰ = {1 - mu**10:.2f}) but not for the second: 1 − ρᵗ reaches 1/2 only after "
            f"{math.log(0.5) / math.log(rho):.0f} steps, so at step {SETTLES_AFTER + 1} the uncorrected step is still "
            f"(1−μᵗ)/√(1−ρᵗ) = {_uncorrected_factor(mu, rho, SETTLES_AFTER + 1):.2f} times the corrected one "
            f"(measured ×{later:.2f}).")
    return Verdict(passed, f"first update uncorrected / corrected ×{ratio:.3f} (predicted {predicted:.3f})", why,
                   [figure], differs, parts=parts)


def _final_loss(result: RunResult) -> float:
    """The final train loss; inf for a run that diverged (it never settled anywhere)."""
    return math.inf if result.status == "diverged" else result.final("train_loss")


def _spread(r: dict[str, RunResult], labels: tuple[str, ...]) -> float:
    """The range of log final loss over ``labels``: how much the outcome depends on the choice among them."""
    losses = np.log([_final_loss(r[k]) for k in labels])
    return float(losses.max() - losses.min())


SGD_RATES = ("sgd_small", "sgd", "sgd_large")
ADAM_RATES = ("adam_small", "adam", "adam_large")


@check(*SGD_RATES, *ADAM_RATES)
def learning_rate(results: dict[str, RunResult], out: Path) -> Verdict:
    """SGD: a rate ten times too small is slower, ten times too large fails; Adam's loss depends less on α over the
    same ×100 range, and its step per weight stays within α."""
    rate = {label: r.config["optimizer"]["lr"] for label, r in results.items()}
    loss = {label: _final_loss(r) for label, r in results.items()}
    steps = {label: per_weight_step(results[label])[1][:-1] for label in ADAM_RATES}  # the last probe has no update
    widest = max(float(np.nanmax(v)) for v in steps.values())

    def bounded(r: dict[str, RunResult]) -> float:
        return 1.0 - max(float(np.nanmax(per_weight_step(r[k])[1][:-1])) for k in ADAM_RATES)

    parts = [over_seeds("a learning rate too small is slow", results,
                        lambda r: lower(_final_loss(r["sgd"]), _final_loss(r["sgd_small"])),
                        f"loss after {results['sgd'].summary.get('steps')} steps: lr {rate['sgd_small']:g} "
                        f"{loss['sgd_small']:.3f}, lr {rate['sgd']:g} {loss['sgd']:.3f}", lecture=True,
                        cite="002:454, 002:462"),
             over_seeds("a learning rate too large does not converge", results,
                        lambda r: lower(_final_loss(r["sgd"]), _final_loss(r["sgd_large"])),
                        f"lr {rate['sgd_large']:g}: {results['sgd_large'].status}, loss {loss['sgd_large']:.3f}; "
                        f"lr {rate['sgd']:g} {loss['sgd']:.3f}", lecture=True, cite="002:454, 002:462"),
             over_seeds("Adam needs little tuning: its loss depends less on α than SGD's over the same ×100 range",
                        results, lambda r: _spread(r, SGD_RATES) - _spread(r, ADAM_RATES),
                        "final loss: " + ", ".join(f"{k} (lr {rate[k]:g}) {loss[k]:.3f}" for k in (*SGD_RATES, *ADAM_RATES)),
                        lecture=True, cite="002:535"),
             over_seeds("Adam's step per weight is bounded by α", results, bounded,
                        f"largest RMS step per weight over probes and rates: {widest:.3f} α (bounded: at most 1 α)",
                        lecture=True, cite="002:539")]
    return Verdict(
        holds(parts), ", ".join(f"{k} {loss[k]:.3f}" for k in results),
        f"The same ReLU + He net, {results['sgd'].summary.get('steps')} steps, at three rates a factor of ten apart "
        f"for SGD ({', '.join(f'{rate[k]:g}' for k in SGD_RATES)}) and for Adam "
        f"({', '.join(f'{rate[k]:g}' for k in ADAM_RATES)}). SGD's step is α·g: too small and it crawls, too large and "
        f"it overshoots. Adam's step per weight is α·ŝ/(√r̂ + δ), whose size is α whatever the gradient's scale, so "
        f"one α fits a wider range of problems and its step never exceeds about α (RMS per weight at each probe: "
        + "; ".join(f"{k} {fmt(v)}" for k, v in steps.items()) + ").",
        [comparison_figure(results, "Learning rates", out / "comparison.png")], parts=parts)


def _roughness(result: RunResult) -> float:
    """How much the test loss still jumps from epoch to epoch over the second half: mean |Δ log test loss|."""
    values = result.curve("test_loss")[1]
    late = np.log(values[len(values) // 2:])
    return float(np.mean(np.abs(np.diff(late))))


@check("batch_1", "batch_8", "batch_64")
def batch_size(results: dict[str, RunResult], out: Path) -> Verdict:
    """Over the second half, batch-1 SGD's test loss jumps more from epoch to epoch than batch 64's; batch 64's less
    than batch 8's."""
    rough = {label: _roughness(r) for label, r in results.items()}
    numbers = "mean |Δ log test loss| per epoch, second half: " + ", ".join(f"{k} {v:.3g}" for k, v in rough.items())
    parts = [over_seeds("batch-1 SGD never settles: its loss keeps jumping where a large batch settles", results,
                        lambda r: lower(_roughness(r["batch_64"]), _roughness(r["batch_1"])), numbers, lecture=True,
                        cite="002:452, 002:458"),
             over_seeds("a bigger batch oscillates less", results,
                        lambda r: lower(_roughness(r["batch_64"]), _roughness(r["batch_8"])), numbers, lecture=True,
                        cite="002:50")]
    cfg = results["batch_1"].config
    return Verdict(
        holds(parts), numbers,
        f"The same net and rate (lr {cfg['optimizer']['lr']:g}) on {cfg['data']['max_train']} training digits for "
        f"{cfg['trainer']['epochs']} epochs at batch 1, 8 and 64, the test loss measured after every epoch. Each "
        f"step follows one batch's gradient, an estimate of the full gradient whose noise shrinks like 1/√batch: "
        f"batch 1 follows single samples and keeps moving around the minimum.",
        [comparison_figure(results, "Batch size", out / "comparison.png")], parts=parts)
