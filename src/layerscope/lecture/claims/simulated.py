"""Claims decided by small deterministic simulations and by the losses' own formulas, not by training the MLP."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture import local_minimum, loss_shapes, ravine_rates, zigzag
from layerscope.lecture.claims.verdict import CONTRADICTS, Verdict, check, holds, part
from layerscope.lecture.ravine import A, B, START
from layerscope.lecture.ravine_rates import (
    OVERSHOOT,
    SAME,
    SGD_LIMIT,
    STEPS,
    flat_floor,
    larger_rate,
    momentum_limit,
)
from layerscope.lecture.simulation_figures import (
    local_minimum_figure,
    loss_gradients_figure,
    ravine_rates_figure,
    zigzag_figure,
)
from layerscope.paths import preset
from layerscope.runs.results import RunResult
from layerscope.theory.meanfield import one_thread

NAMES = {"sgd": "SGD", "momentum": "momentum", "adagrad": "AdaGrad", "rmsprop": "RMSProp"}
ROUNDING = 1e-12  # float64: a quantity that is exactly 0 in theory comes out within 1e-12 (eps 2.2e-16, with margin)


def _steps(value: float, never: str = "never") -> str:
    """Steps as an integer, ``never`` where infinite."""
    return f"{value:.0f}" if math.isfinite(value) else never


def _differs(parts, reasons: dict[str, str]) -> str | None:
    """The reasons (by statement) of the statements that contradict the lecture, joined; None if none does."""
    found = [reasons[p.statement] for p in parts if p.outcome == CONTRADICTS and p.statement in reasons]
    return " ".join(found) or None


def _series(values: dict[float, str]) -> str:
    """``α 0.03: …, α 0.0375: …`` for values by α."""
    return ", ".join(f"α {lr:.3g}: {text}" for lr, text in values.items())


@check()
def rates_on_the_ravine(results: dict[str, RunResult], out: Path) -> Verdict:
    """On the ravine: SGD's rate is capped at 2/λ_max while the flat direction crawls; at the same α momentum and the
    adaptive methods change the swing across the ravine; above SGD's limit momentum and RMSProp still settle."""
    with one_thread():
        rates = ravine_rates.simulate()
        figure = ravine_rates_figure(rates, SGD_LIMIT, SAME, out / "ravine_rates.png")
    grid, larger, mu, rho = rates.grid, rates.larger, rates.mu, rates.rho
    fastest = min(rates.sgd, key=lambda d: (d.steps_to_min, d.lr))
    oscillating = [i for i, d in enumerate(grid["sgd"]) if d.lr > OVERSHOOT]  # SGD oscillates between the walls
    swinging = {lr: rates.at(lr) for lr in (grid["sgd"][i].lr for i in oscillating)}
    big = larger["sgd"].lr
    table = _series({d.lr: "diverged" if d.diverged else _steps(d.steps_to_min, f">{STEPS}") for d in rates.sgd})

    def compare(name: str, measure) -> str:
        return _series({lr: f"{measure(at[name])} vs {measure(at['sgd'])}" for lr, at in swinging.items()})

    def travel(d) -> str:
        return f"{d.travel:.3g}"

    def steps(d) -> str:
        return _steps(d.steps_to_min, f">{STEPS}")

    adaptive = ("adagrad", "rmsprop")
    speedup = grid["sgd"][oscillating[0]].steps_to_min / min(grid["sgd"][i].steps_to_min for i in oscillating)
    statements = {
        "raising": "once SGD oscillates between the walls, simply raising its rate does not make it converge faster",
        "damps": "at the same α momentum damps the oscillation across the ravine",
        "faster": "at the same α AdaGrad and RMSProp speed the way to the valley floor: they reach the minimum sooner "
                  "than SGD",
    }
    parts = [
        part(statements["raising"], speedup <= 1,
             f"α > 1/λ_max = {OVERSHOOT:g}: steps to 10⁻⁴ f(start) " + _series(
                 {grid["sgd"][i].lr: steps(grid["sgd"][i]) for i in oscillating}) + f" (×{speedup:.2f} faster at best)",
             lecture=True, cite="001:47"),
        part(f"raising SGD's rate speeds it only up to the steep direction's limit 2/λ_max = {SGD_LIMIT:g}: its "
             f"fastest α lies below it and every larger α diverges",
             fastest.lr < SGD_LIMIT and all(d.diverged for d in rates.above)
             and not any(d.diverged for d in grid["sgd"]), f"steps: {table}", cite="001:47"),
        part(f"below it the flat direction still crawls: even the fastest SGD needs the flat direction's "
             f"{flat_floor():.0f} steps or more", fastest.steps_to_min >= flat_floor(),
             f"fastest: α {fastest.lr:.3g}, {_steps(fastest.steps_to_min)} steps; |x| shrinks by αλ_min < "
             f"2λ_min/λ_max = {2 * A / B:.0%} a step", lecture=True, cite="001:47"),
        part(statements["damps"], all(at["momentum"].travel < at["sgd"].travel for at in swinging.values()),
             "swing across the ravine, momentum vs SGD: " + compare("momentum", travel),
             lecture=True, cite="000:72, 001:55, 002:484"),
        part("momentum's accumulated gradients cancel where they alternate and add up where they agree: its steps "
             "across the ravine are shorter than α|∂f/∂y|, its steps along it longer than α|∂f/∂x|",
             all(at["momentum"].gain(1) < 1 < at["momentum"].gain(0) for at in swinging.values()),
             "Σ|Δθ| / Σα|∂f/∂θ| before settling (SGD: 1), across / along: " + _series(
                 {lr: f"{at['momentum'].gain(1):.2f} / {at['momentum'].gain(0):.2f}" for lr, at in swinging.items()}),
             lecture=True, cite="001:55, 002:484"),
        part(f"momentum allows a larger rate: at α = {big:.3g}, above SGD's limit and below momentum's "
             f"2(1 + μ)/λ_max = {momentum_limit(mu):.3g}, SGD diverges and momentum settles",
             larger["sgd"].diverged and math.isfinite(larger["momentum"].steps_to_min),
             f"SGD f = {larger['sgd'].values[-1]:.3g} after {STEPS} steps; momentum settled in "
             f"{_steps(larger['momentum'].steps_to_min)} steps", lecture=True, cite="002:482"),
        part("at the same α AdaGrad and RMSProp reduce the oscillation across the ravine",
             all(at[n].travel < at["sgd"].travel for at in swinging.values() for n in adaptive),
             "swing, AdaGrad vs SGD: " + compare("adagrad", travel) + "; RMSProp vs SGD: " + compare("rmsprop", travel),
             lecture=True, cite="000:81, 001:61, 001:63, 002:505"),
        part(statements["faster"], all(at[n].steps_to_min < at["sgd"].steps_to_min
                                       for at in swinging.values() for n in adaptive),
             "steps, AdaGrad vs SGD: " + compare("adagrad", steps) + "; RMSProp vs SGD: " + compare("rmsprop", steps),
             lecture=True, cite="000:81, 001:61, 001:63"),
        part(f"RMSProp allows a larger rate: at α = {big:.3g} SGD diverges and RMSProp settles",
             larger["sgd"].diverged and math.isfinite(larger["rmsprop"].steps_to_min),
             f"RMSProp settled in {_steps(larger['rmsprop'].steps_to_min)} steps", lecture=True, cite="002:505"),
        part(f"RMSProp's step per coordinate is bounded by α/√(1 − ρ) = {1 / math.sqrt(1 - rho):.1f} α whatever the "
             f"curvature", larger["rmsprop"].largest_step <= 1 / math.sqrt(1 - rho),
             f"largest |Δθ| of one coordinate at α = {big:.3g}: {larger['rmsprop'].largest_step:.1f} α (RMSProp), "
             f"{larger['sgd'].largest_step:.3g} α (SGD)", cite="002:505"),
    ]
    same = rates.at(SAME)
    slower = [NAMES[n] for n in adaptive
              if not all(at[n].steps_to_min < at["sgd"].steps_to_min for at in swinging.values())]
    reasons = {
        statements["raising"]: (
            f"Raising SGD's rate does speed it, in proportion, for as long as the steep direction stays stable: "
            f"from α = {grid['sgd'][oscillating[0]].lr:.3g}, where it already oscillates, to α = {fastest.lr:.3g} its "
            f"steps fall ×{speedup:.2f}. The lecture's point holds in a weaker form: between 1/λ_max and 2/λ_max α "
            f"can at most double, so the gain is under 2×, and past 2/λ_max every α diverges."),
        statements["damps"]: (
            f"Momentum does not damp the swing across the ravine at the same α: at α = {SAME:.3g} its y travels "
            f"{same['momentum'].travel:.1f} across the floor ({same['momentum'].crossings} crossings) where SGD's "
            f"travels {same['sgd'].travel:.1f} ({same['sgd'].crossings}). Opposite gradients do partly cancel in v "
            f"(its steps across are {same['momentum'].gain(1):.2f} of α|∂f/∂y|), but the steep mode of v = μv + g, "
            f"θ -= αv has the characteristic roots of z² − (1 + μ − αλ_max)z + μ, complex for any α between "
            f"(1 − √μ)²/λ_max and (1 + √μ)²/λ_max, so its swing keeps √μ = {math.sqrt(mu):.3f} of its size each "
            f"step, while SGD's keeps |1 − αλ_max| (here {abs(1 - SAME * B):.2f}); only close to SGD's limit, "
            f"where |1 − αλ_max| nears 1, does SGD swing more. Momentum wins by its speed along the ravine "
            f"(×{same['momentum'].gain(0):.1f}), not by a calmer path across it."),
        statements["faster"]: (
            f"At the same α {' and '.join(slower)} did not reach the minimum sooner than SGD at every α where SGD "
            f"oscillates." + (f" AdaGrad divides by √Σg², which the first steep gradients already made large, so "
                              f"its steps shrink like 1/√t in both directions (at α = {SAME:.3g} it ended at x = "
                              f"{same['adagrad'].points[-1, 0]:.2f} from {START[0]:g} after {STEPS} steps)."
                              if "AdaGrad" in slower else "")),
    }
    return Verdict(
        holds(parts),
        f"SGD: fastest α {fastest.lr:.3g} ({_steps(fastest.steps_to_min)} steps), diverges above {SGD_LIMIT:g}; "
        f"swing at α {SAME:.3g}: " + ", ".join(f"{n} {d.travel:.2f}" for n, d in same.items())
        + f"; at α {big:.3g}: " + ", ".join(f"{n} {'diverged' if d.diverged else _steps(d.steps_to_min)}"
                                            for n, d in larger.items()),
        f"On f = ½({A:g} x² + {B:g} y²) from {START} the Hessian is diag({A:g}, {B:g}): SGD multiplies y by "
        f"1 − αλ_max per step, so y overshoots the floor for α > 1/λ_max = {OVERSHOOT:g} (it oscillates between "
        f"the walls) and diverges for α > 2/λ_max = {SGD_LIMIT:g}, while x shrinks by αλ_min < {2 * A / B:.0%} per "
        f"step: the condition number {B / A:g} sets how slowly SGD must go. Steps to f < 10⁻⁴ f(start) over α: "
        f"{table}. The swing across the ravine is the distance y travels while off the floor (|y| above the "
        f"{ravine_rates.settle_level():.3g} at which it alone keeps f settled) beyond its net descent of the wall: "
        f"0 for a monotone descent; it is compared at every α of the grid where SGD oscillates ({OVERSHOOT:g} < α < "
        f"{SGD_LIMIT:g}). Momentum (μ = {mu:g}) is stable up to α < 2(1 + μ)/λ_max = {momentum_limit(mu):.3g}; "
        f"RMSProp (ρ = {rho:g}) divides by √r ≥ √(1 − ρ)|g|, so no coordinate moves more than α/√(1 − ρ) a step "
        f"(its first step, before r has grown, is that large). The larger rate {larger_rate(mu):.3g} is the "
        f"midpoint of SGD's and momentum's limits. All paths use the MLP's own update rules as rows of one "
        f"stacked run.",
        [figure], _differs(parts, reasons), parts=parts)


IN_MINIMUM = 0.5  # "in" a minimum: nearer to it than half the way to the barrier


@check()
def momentum_leaves_local_minimum(results: dict[str, RunResult], out: Path) -> Verdict:
    """From the same start and α plain gradient descent stops in a shallow local minimum and momentum passes into
    the deeper one; from rest at the local minimum momentum stays too."""
    with one_thread():
        rolls = local_minimum.simulate()
        points = local_minimum.critical_points()
        figure = local_minimum_figure(rolls, points, out / "local_minimum.png")
    deeper, barrier, shallow = points
    sgd, momentum, rest = rolls.sgd, rolls.momentum, rolls.at_rest
    escaped = sum(m.escaped for _, m in rolls.grid)
    stayed = sum(not s.escaped for s, _ in rolls.grid)
    grid = "; ".join(f"x₀ {s.start:g}, α {s.lr:g}: SGD ends at {s.end:.3f}, momentum at {m.end:.3f}"
                     for s, m in rolls.grid)
    parts = [
        part("plain gradient descent stops in the shallow local minimum, where the gradient is 0",
             not sgd.escaped and abs(sgd.end - shallow) < IN_MINIMUM * abs(shallow - barrier),
             f"from x₀ = {sgd.start:g} at α = {sgd.lr:g}: ends at x = {sgd.end:.4f} (the local minimum: {shallow:.4f})",
             lecture=True, cite="001:56"),
        part("momentum rushes out of it and finds the deeper minimum",
             momentum.escaped and abs(momentum.end - deeper) < IN_MINIMUM * abs(deeper - barrier),
             f"same start and α, μ = {rolls.mu:g}: ends at x = {momentum.end:.4f} (the deeper minimum: "
             f"{deeper:.4f}); over {len(rolls.grid)} starts and rates SGD stayed {stayed} times, momentum escaped "
             f"{escaped} times", lecture=True, cite="001:56"),
        part("momentum escapes with the speed it brings: started at rest in the local minimum it stays there too",
             not rest["momentum"].escaped and not rest["sgd"].escaped,
             f"from x₀ = {shallow:.4f}: momentum ends at {rest['momentum'].end:.4f}, SGD at {rest['sgd'].end:.4f}",
             cite="001:56"),
    ]
    value = local_minimum.value
    return Verdict(
        holds(parts),
        f"SGD ends at {sgd.end:.3f} (shallow minimum), momentum at {momentum.end:.3f} (deeper); momentum escaped in "
        f"{escaped} of {len(rolls.grid)} start × rate cases",
        f"f(x) = ¼x⁴ − ½x² + {local_minimum.TILT:g}x has its deeper minimum at x = {deeper:.3f} (f = "
        f"{value(deeper):.3f}), a barrier at x = {barrier:.3f} (f = {value(barrier):.3f}) and a shallow minimum at "
        f"x = {shallow:.3f} (f = {value(shallow):.3f}). From x₀ = {sgd.start:g}, on the shallow well's outer wall, "
        f"both run at α = {sgd.lr:g} with the MLP's update rules. Gradient descent only ever moves downhill, so it "
        f"settles where f′ = 0 first; momentum's velocity v = μv + g carries it through the shallow minimum and "
        f"over the barrier (it reached x = {momentum.farthest:.2f}). That speed is the whole mechanism: at rest in "
        f"the local minimum v = g = 0 and momentum stays as well, and too much of it can carry the iterate back "
        f"over the barrier. Over starts {local_minimum.GRID_STARTS} and rates {local_minimum.GRID_LRS}: {grid}.",
        [figure], parts=parts)


@check()
def non_centred_inputs_zigzag(results: dict[str, RunResult], out: Path) -> Verdict:
    """A unit fed by positive inputs gets per-sample gradients of one sign, zig-zags to a mixed-sign target and, at
    its fastest rate, needs more steps than with the inputs centred; at the same rate it does not."""
    with one_thread():
        walks = zigzag.simulate()
    fastest = {label: zigzag.fastest(runs) for label, runs in walks.items()}
    alpha = fastest["positive"].lr
    same = {label: next(w for w in runs if w.lr == alpha) for label, runs in walks.items()}
    figure = zigzag_figure({k: same[k] for k in ("positive", "centred")},
                           {k: fastest[k] for k in ("positive", "centred")}, zigzag.TARGET, out / "zigzag.png")
    target = "(" + ", ".join(f"{v:g}" for v in zigzag.TARGET) + ")"
    common = [(p, c) for p, c in zip(walks["positive"], walks["centred"])
              if math.isfinite(p.steps_to_target) and math.isfinite(c.steps_to_target)]
    pairs = ", ".join(f"α {p.lr:g}: {p.steps_to_target:.0f} vs {c.steps_to_target:.0f}" for p, c in common)
    statements = {"costs": "the zig-zag itself costs steps: at the same α the positive inputs need more steps than the "
                           "centred ones"}
    parts = [
        part("with all-positive inputs every per-sample gradient has one sign across the weights",
             same["positive"].one_sign == 1.0,
             f"share of updates of one sign at α = {alpha:g}: positive {same['positive'].one_sign:.0%}, centred "
             f"{same['centred'].one_sign:.0%}", lecture=True, cite="002:80, 003:57, 003:59"),
        part(f"so the path to w* = {target} zig-zags", same["positive"].winding > same["centred"].winding,
             f"path length / straight line at α = {alpha:g}: positive {same['positive'].winding:.2f}, centred "
             f"{same['centred'].winding:.2f}", lecture=True, cite="003:59"),
        part("and converges slowly: at its fastest rate it needs more steps than the centred inputs at theirs",
             fastest["positive"].steps_to_target > fastest["centred"].steps_to_target,
             f"positive {_steps(fastest['positive'].steps_to_target)} steps (α = {alpha:g}), centred "
             f"{_steps(fastest['centred'].steps_to_target)} (α = {fastest['centred'].lr:g})",
             lecture=True, cite="002:80, 003:59"),
        part(statements["costs"], bool(common) and all(p.steps_to_target > c.steps_to_target for p, c in common),
             f"steps, positive vs centred: {pairs}", lecture=True, cite="003:59"),
        part("mini-batches alleviate it: fewer of their gradients have one sign", same["positive, batch"].one_sign
             < same["positive"].one_sign, f"batch {zigzag.BATCH}: {same['positive, batch'].one_sign:.0%} of one sign "
             f"(per sample {same['positive'].one_sign:.0%}), {_steps(same['positive, batch'].steps_to_target)} steps "
             f"at α = {alpha:g}", lecture=True, cite="002:80"),
    ]
    x = zigzag.inputs()
    curvature = {k: np.linalg.eigvalsh(v.T @ v / len(v)) for k, v in x.items()}
    diverges = min((w.lr for w in walks["positive"] if not math.isfinite(w.steps_to_target)), default=math.inf)
    reasons = {statements["costs"]: (
        f"At the same α the zig-zag costs few steps or none: {pairs} steps (positive vs centred). The error along "
        f"w* − w's mixed-sign direction shrinks by the inputs' covariance, which centring leaves as it is; the "
        f"positive inputs' mean adds only a stiff direction along (1, 1), the zig-zag. What that direction costs "
        f"is the rate: E[xxᵀ] has curvatures {curvature['positive'][0]:.3f} and {curvature['positive'][1]:.3f} "
        f"with positive inputs, {curvature['centred'][0]:.3f} and {curvature['centred'][1]:.3f} centred: gradient "
        f"descent is stable below α = 2/λ_max = {2 / curvature['positive'][1]:.2g} and "
        f"{2 / curvature['centred'][1]:.2g}. The positive inputs never reach w* from α = {diverges:g} on, while the "
        f"centred ones are fastest at α = {fastest['centred'].lr:g}.")}
    return Verdict(
        holds(parts),
        f"one sign: {same['positive'].one_sign:.0%} (positive) vs {same['centred'].one_sign:.0%} (centred); fastest: "
        f"{_steps(fastest['positive'].steps_to_target)} vs {_steps(fastest['centred'].steps_to_target)} steps",
        f"A linear unit z = wᵀx learns an exact teacher t = w*ᵀx, w* = {target}, from w = 0 by "
        f"per-sample SGD on ½(z − t)² over {zigzag.SAMPLES} inputs x = σ(h), h ~ N(0, I) (all positive, as a sigmoid "
        f"layer's outputs), and over the same inputs centred; each at every α of {zigzag.LRS}, done when "
        f"|w − w*| < {zigzag.REACHED:.0%} |w*|. The per-sample gradient (z − t)x has the sign of z − t in every "
        f"component when x > 0: each step moves both weights up or both down, so reaching w₂ < 0 < w₁ takes a "
        f"zig-zag. Its mini-batch mean over {zigzag.BATCH} samples mixes errors of both signs.",
        [figure], _differs(parts, reasons), parts=parts)


EASY = 0.5  # an easy example: its true class holds most of the probability, p_t > ½; a hard one p_t < ½


@check()
def loss_gradients(results: dict[str, RunResult], out: Path) -> Verdict:
    """With the product's losses, through autograd: cross-entropy's gradient grows with the error, MSE's on a sigmoid
    falls where it saturates; cross-entropy is convex in the logits, the MLP's loss is not in its weights; focal
    down-weights easy examples; L1 and smooth L1 bound the gradient and resist an outlier."""
    L = loss_shapes
    with one_thread():
        outputs, ratio, gap = L.output_gradients(), L.focal_ratio(), L.focal_gamma_zero_gap()
        eigen, chord = L.cross_entropy_hessians(), L.mlp_chord()
        robust, fits = L.residual_gradients(), L.outlier_fits()
        gamma = float(preset("loss", "focal")["gamma"])
        figure = loss_gradients_figure(L.ERRORS, outputs, L.P_TRUE, ratio, gamma, L.RESIDUALS, robust, chord,
                                       L.outlier_data(), fits, out / "loss_gradients.png")
    bce, mse = outputs["bce"], outputs["sigmoid_mse"]
    peak = int(np.argmax(mse))
    errors, p = L.ERRORS, L.P_TRUE
    easy, hard = ratio[p > EASY], ratio[p < EASY]
    top = int(np.argmax(ratio))
    lowest = float(eigen.min())
    pulls = {name: L.pull(fit) for name, fit in fits.items()}
    statements = {
        "convex_weights": "so descent finds the global optimum: the loss of an MLP is convex in its weights",
        "focal_monotone": "the harder the example, the less focal reduces its gradient: its ratio to cross-entropy's "
                          "grows with the error and stays at most 1, as (1 − p_t)^γ",
    }
    parts = [
        part("cross-entropy's gradient grows with the error: bce's |∂L/∂z| rises monotonically with the error of a "
             "sigmoid output, and equals it (p − y)", bool(np.all(np.diff(bce) > 0))
             and float(np.abs(bce - errors).max()) <= ROUNDING,
             f"|∂L/∂z| {bce[0]:.3g} at error {errors[0]:g}, {bce[len(bce) // 2]:.3g} at {errors[len(bce) // 2]:g}, "
             f"{bce[-1]:.3g} at {errors[-1]:g}; largest |∂L/∂z − error| {np.abs(bce - errors).max():.1g}",
             lecture=True, cite="002:279, 002:281, 002:285"),
        part("MSE on a sigmoid output does not: its gradient 2(σ − t)σ′ falls as the output saturates wrong",
             0 < peak < len(mse) - 1 and mse[-1] < mse[peak],
             f"sigmoid_mse's |∂L/∂z| peaks at {mse[peak]:.3g} at error {errors[peak]:.3f} (theory 2/3) and falls to "
             f"{mse[-1]:.2g} at error {errors[-1]:g}", lecture=True, cite="002:279, 002:283"),
        part("cross-entropy is convex in the logits: its Hessian is positive semi-definite at every point tried",
             lowest >= -ROUNDING * float(eigen.max()),
             f"smallest Hessian eigenvalue over {L.POINTS} random logit vectors ({L.CLASSES} classes, std "
             f"{L.LOGIT_STD:g}): {lowest:.2g} (exactly 0 along (1, …, 1) in theory)", lecture=True, cite="002:275"),
        part(statements["convex_weights"], chord.middle <= chord.ends,
             f"loss at W and at W′ (two hidden units swapped, the same function) {chord.ends:.4f}, at their midpoint "
             f"{chord.middle:.4f}", lecture=True, cite="002:275"),
        part("focal loss with γ = 0 is cross-entropy", gap <= ROUNDING,
             f"largest |∂focal/∂z − ∂CE/∂z| with γ = 0: {gap:.1g}", lecture=True, cite="002:327"),
        part("focal loss focuses training on hard examples: relative to cross-entropy it keeps less of every easy "
             "example's gradient (p_t > ½) than of any hard one's (p_t < ½)", float(easy.max()) < float(hard.min()),
             f"|∂focal/∂z| / |∂CE/∂z| (γ = {gamma:g}): {ratio[-1]:.2g} at p_t {p[-1]:g}, at most {easy.max():.3f} "
             f"for p_t > ½, at least {hard.min():.3f} for p_t < ½", lecture=True, cite="002:323, 002:331"),
        part(statements["focal_monotone"], bool(np.all(np.diff(ratio[::-1]) > 0)) and float(ratio.max()) <= 1,
             f"the ratio peaks at {ratio[top]:.3f} at p_t = {p[top]:.2f} and is {ratio[0]:.3f} at p_t = {p[0]:g}",
             lecture=True, cite="002:325, 002:327"),
        part("L1's and smooth L1's gradient wrt the prediction is bounded (at most 1 per element); MSE's grows with "
             "the error", max(robust["l1"].max(), robust["smooth_l1"].max()) <= 1 + ROUNDING
             and bool(np.all(np.diff(robust["mse"][L.RESIDUALS >= 0]) > 0)),
             f"largest |∂L/∂prediction| for residuals up to {L.RESIDUALS.max():g}: l1 {robust['l1'].max():.3g}, "
             f"smooth_l1 {robust['smooth_l1'].max():.3g}, mse {robust['mse'].max():.3g}",
             lecture=True, cite="002:347, 002:353"),
        part("so L1 and smooth L1 are robust to an outlier: their fitted line moves less than MSE's",
             pulls["l1"] < pulls["mse"] and pulls["smooth_l1"] < pulls["mse"],
             "the fit's distance from the true line, |Δslope| + |Δintercept|: "
             + ", ".join(f"{k} {v:.3f}" for k, v in pulls.items()), lecture=True, cite="002:347, 002:353"),
    ]
    reasons = {
        statements["convex_weights"]: (
            f"Cross-entropy is convex in the logits, but the logits are not linear in the weights: the MLP with "
            f"two hidden units swapped computes the same function, so both weight vectors have loss "
            f"{chord.ends:.4f}, yet their midpoint, where the two units become one averaged unit, has "
            f"{chord.middle:.4f}: above the chord. Every permutation of the hidden units is another minimum, so "
            f"training the MLP has no single global optimum that descent is sure to find."),
        statements["focal_monotone"]: (
            f"Focal loss multiplies the loss by (1 − p_t)^γ, but its gradient is not cross-entropy's times that "
            f"factor: with p = p_t, ∂FL/∂z = [(1 − p)^γ + γp(1 − p)^(γ−1) ln(1/p)] ∂CE/∂z. The second term "
            f"makes the ratio exceed 1 for hard examples (up to {ratio[top]:.3f} at p_t = {p[top]:.2f}: those get a "
            f"larger gradient than under cross-entropy) and fall back toward 1 as p_t → 0. The focusing holds; "
            f"the gradient is not monotone in the error."),
    }
    return Verdict(
        holds(parts),
        f"bce |∂L/∂z| = error; sigmoid_mse peaks at error {errors[peak]:.2f}; CE Hessian min eigenvalue "
        f"{lowest:.1g}; MLP midpoint {chord.middle:.3f} vs ends {chord.ends:.3f}; focal/CE ratio "
        f"{ratio[-1]:.2g}–{ratio.max():.2f}; outlier pull " + ", ".join(f"{k} {v:.2f}" for k, v in pulls.items()),
        f"Every gradient comes from the product's losses (nets.losses) through autograd, one element's (the batch "
        f"average undone). A sigmoid output with target 1 is one logit z with label 0 of one class; bce's "
        f"gradient is σ(z) − 1, sigmoid_mse's 2(σ(z) − 1)σ′(z), whose σ′ vanishes as the output saturates at the "
        f"wrong end: 2e²(1 − e) in the error e peaks at e = 2/3. Cross-entropy's Hessian in the logits is "
        f"diag(p) − ppᵀ, positive semi-definite. The MLP is the product's 1×8 tanh net trained by gradient descent "
        f"on 60 points of 3 Gaussian classes. Focal's γ = {gamma:g} is configs/loss/focal's. A regression residual "
        f"r enters l1, smooth_l1 (β = 1) and mse as the logit r + 1 against the one-hot target 1. The outlier "
        f"fit: y = {L.LINE[0]:g}x + {L.LINE[1]:g} on 21 points of [−1, 1], the last one {L.OUTLIER:g} above the "
        f"line, fitted by full-batch gradient descent (α = {L.FIT_LR:g}, {L.FIT_STEPS} steps) with each loss: "
        + ", ".join(f"{k} {a:.3f}x + {b:.3f}" for k, (a, b) in fits.items()) + ". L1's fit hovers within about "
        f"α of the exact line, the least-absolute-deviation solution through the 20 clean points.",
        [figure], _differs(parts, reasons), parts=parts)
