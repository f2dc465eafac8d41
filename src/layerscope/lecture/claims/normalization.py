"""Chapter: normalization. Batch norm before the activation restores training; what it buys a healthy net (a higher
rate, speed, fewer dead ReLUs); the gradient and the init with and without it; layer norm at small batches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.finite_width import DRAWS, allowed_distance, finite_width_stds
from layerscope.lecture.claims.gradients import VANISHED
from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import COLLAPSED, CONFIDENCE_Z, KEPT, LEARNED, STALLED
from layerscope.lecture.claims.verdict import CONTRADICTS, Verdict, check, fmt, holds, ln_classes, over_seeds, part
from layerscope.lecture.figures import comparison_figure
from layerscope.runs.results import RunResult
from layerscope.theory.prediction import predict


@check("after", "before", "none")
def bn_before_restores(results: dict[str, RunResult], out: Path) -> Verdict:
    """bn=before: every layer's std is tanh(N(0,1))'s within the finite-width spread of fresh draws
    (bias + ``CONFIDENCE_Z`` deviations) and it learns; bn=none collapses and stalls; before trains better than after
    (the training outcomes over seeds)."""
    none, before, after = results["none"], results["before"], results["after"]
    std = before.config["init"]["std"]
    healthy = float(predict("tanh", None, [1.0], [0.0], 1.0).activation_std[0])
    std_before = before.stat("activation_std")
    draws = finite_width_stds(before.config)
    allowed = allowed_distance(draws, healthy)
    off = np.abs(std_before - healthy)
    chance = ln_classes(none)
    loss = {label: r.final("train_loss") for label, r in results.items()}
    worst = int(np.argmax(off - allowed))  # the layer nearest its allowance (over it, where one is)
    parts = [
        part("BN before the nonlinearity restores healthy statistics", bool(np.all(off <= allowed)),
             f"std {std_before.min():.3f}–{std_before.max():.3f} (tanh of N(0,1): {healthy:.3f}); worst margin at "
             f"layer {worst + 1}: off by {off[worst] / healthy:.2%}, allowed {allowed[worst] / healthy:.2%}",
             cite="000:168, 000:173"),
        over_seeds("BN before the nonlinearity trains", results,
                   lambda r: LEARNED * chance - r["before"].final("train_loss"),
                   f"loss {loss['before']:.3f} (learned: under {LEARNED * chance:.3f})", cite="000:173, 002:697"),
        part("without BN the net does not keep its signal", none.stat("activation_std")[-1] < COLLAPSED * healthy,
             f"std at layer 10 {none.stat('activation_std')[-1]:.2g} (collapsed: under {COLLAPSED * healthy:.2g})",
             cite="000:129"),
        over_seeds("without BN the net does not train", results,
                   lambda r: r["none"].final("train_loss") - STALLED * chance,
                   f"loss {loss['none']:.3f} (stalled: over {STALLED * chance:.3f}; ln C = {chance:.3f})",
                   cite="000:129"),
        over_seeds("BN before the nonlinearity trains better than BN after it", results,
                   lambda r: lower(r["before"].final("train_loss"), r["after"].final("train_loss")),
                   f"loss before {loss['before']:.3f}, after {loss['after']:.3f}", lecture=True,
                   cite="002:713, 002:715")]
    differs = None
    if parts[-1].outcome == CONTRADICTS:
        differs = (f"The notes put BN before the nonlinearity because a nonlinearity's output is not Gaussian (ReLU's "
                   f"is cut at 0) and shifts during training. Here the nonlinearity is tanh, odd and smooth, and the "
                   f"bad init keeps its input in the linear range (activation std "
                   f"{after.stat('activation_std')[0]:.2g} at layer 1 with BN after): tanh then passes a near-Gaussian "
                   f"input on almost unchanged, so BN after it normalizes nearly what BN before it would, and the net "
                   f"with BN after trains to "
                   f"{loss['after']:.3f} against {loss['before']:.3f} with BN before.")
    passed = holds(parts)
    return Verdict(
        passed, f"std with BN before {std_before.min():.2f}–{std_before.max():.2f} (tanh of N(0,1): {healthy:.2f}); "
                f"loss none {none.final('train_loss'):.3f}, before {before.final('train_loss'):.3f}, after "
                f"{after.final('train_loss'):.3f}",
        f"Under W ~ N(0, {std:g}²) without BN the activation std falls to {none.stat('activation_std')[-1]:.2g} by "
        f"layer 10 and the loss stays at {none.final('train_loss'):.3f}. BN before tanh rescales each unit's input "
        f"to unit variance, so every layer sees tanh of N(0, 1): std {fmt(std_before)}, and the net trains to "
        f"{before.final('train_loss'):.3f}. The allowed distance from tanh(N(0, 1))'s std ({healthy:.3f}) is derived "
        f"per layer from {DRAWS} fresh draws of this network with BN before tanh: their bias plus {CONFIDENCE_Z:g} "
        f"standard deviations. BN after tanh leaves the first tanh in its tiny linear range "
        f"(activation std {after.stat('activation_std')[0]:.2g} at layer 1) but renormalizes what reaches the next "
        f"layer (std {fmt(after.stat('activation_std')[1:3])}...); it trains too, to {after.final('train_loss'):.3f}.",
        [comparison_figure(results, f"Batch-norm placement (tanh, W ~ N(0, {std:g}²))", out / "comparison.png")],
        differs, parts=parts)


@check("bn_2", "ln_2", "bn_128", "ln_128")
def layer_norm_small_batches(results: dict[str, RunResult], out: Path) -> Verdict:
    """BN stalls at batch 2 and trains at 128; LN trains at both (train loss against ``STALLED``/``LEARNED`` · ln C)."""
    chance = ln_classes(results["bn_2"])
    loss = {label: r.final("train_loss") for label, r in results.items()}
    accuracy = {label: r.final("test_accuracy") for label, r in results.items()}

    def numbers(label: str) -> str:
        return f"{label}: loss {loss[label]:.3f} (ln C = {chance:.3f}), test accuracy {accuracy[label]:.1%}"

    def stalled(label: str):
        return lambda r: r[label].final("train_loss") - STALLED * chance

    def learned(label: str):
        return lambda r: LEARNED * chance - r[label].final("train_loss")

    parts = [over_seeds("batch norm does not train at batch 2", results, stalled("bn_2"), numbers("bn_2"),
                        cite="002:707, 002:727"),
             over_seeds("batch norm trains at batch 128", results, learned("bn_128"), numbers("bn_128"),
                        cite="002:727"),
             over_seeds("layer norm trains at batch 2", results, learned("ln_2"), numbers("ln_2"),
                        cite="002:707, 002:727"),
             over_seeds("layer norm trains at batch 128", results, learned("ln_128"), numbers("ln_128"),
                        cite="002:729")]
    passed = holds(parts, *results.values())
    binary = math.tanh(1.0)
    std = results["bn_2"].stat("activation_std")
    measured = ", ".join(f"{k} loss {v:.3f}" for k, v in loss.items())
    return Verdict(
        passed, measured,
        f"Batch norm normalizes each unit over the batch. Over two samples the normalized values are exactly "
        f"±1 (x − mean is ±d/2 and the batch std d/2), so every tanh unit outputs ±tanh(1) = ±{binary:.3f}: "
        f"the measured activation std of bn_2 at step 0 is {fmt(std)} per layer. Each layer then carries one "
        f"bit per unit, which sample is larger, and the running averages it evaluates with are far from any "
        f"one batch's. Layer norm normalizes each sample over its {results['ln_2'].config['model']['width']} "
        f"units instead, which does not depend on the batch: " + "; ".join(numbers(k) for k in results) + ".",
        [comparison_figure(results, "LayerNorm vs BatchNorm at batch 2 and 128", out / "comparison.png")],
        parts=parts)


def _rate(result: RunResult) -> float:
    return float(result.config["optimizer"]["lr"])


def _sound_probe(result: RunResult) -> int | None:
    """The index of the last probe after step 0 taken before the run diverged (None: it diverged before one)."""
    stop = result.summary.get("diverged_at_step")
    later = [i for i, p in enumerate(result.probes) if p.step > 0 and (stop is None or p.step < stop)]
    return later[-1] if later else None


def _dead(result: RunResult, probe: int | None = None) -> float:
    """The dead fraction averaged over the layers at ``probe`` (default: ``_sound_probe``; NaN where there is none)."""
    probe = _sound_probe(result) if probe is None else probe
    return math.nan if probe is None else float(np.nanmean(result.stat("dead_fraction", probe)))


def _when(result: RunResult) -> str:
    probe = _sound_probe(result)
    if probe is None:
        return f"no probe before it diverged at step {result.summary.get('diverged_at_step')}"
    return f"{_dead(result):.1%} at step {result.probes[probe].step}"


def _unit_norm2(result: RunResult) -> float:
    """The mean squared norm of a hidden unit's incoming weights at step 0, over layers 2 to 10."""
    width = result.config["model"]["width"]
    return float(np.mean(result.stat("weight_norm")[1:] ** 2) / width)


@check("plain", "bn", "plain_high", "bn_high")
def bn_benefits(results: dict[str, RunResult], out: Path) -> Verdict:
    """A healthy net (ReLU + He) with and without BN at the lecture's rate and a high one: at the high rate the plain
    net does not train and BN does, faster than the plain net at its rate; the speed at the same rate; dead units."""
    plain, bn, plain_high, bn_high = (results[k] for k in ("plain", "bn", "plain_high", "bn_high"))
    low, high = _rate(plain), _rate(plain_high)
    chance = ln_classes(plain)
    level = LEARNED * chance
    steps = {label: r.steps_to(level) for label, r in results.items()}
    loss = {label: r.final("train_loss") for label, r in results.items()}

    def trained(label: str, sign: float):
        def effect(r: dict[str, RunResult]) -> float:
            if r[label].status != "completed":
                return -sign * math.inf  # a diverged run did not train
            return sign * (level - r[label].final("train_loss"))
        return effect

    def faster(label: str, than: str):
        return lambda r: lower(r[label].steps_to(level), r[than].steps_to(level))

    def shown(label: str) -> str:
        r = results[label]
        return f"{r.status} at step {r.summary.get('diverged_at_step')}" if r.status == "diverged" else \
            f"loss {loss[label]:.3f}"

    parts = [
        over_seeds(f"at α = {high:g} the plain net does not train", results, trained("plain_high", -1.0),
                   f"{shown('plain_high')} (learned: under {level:.3f}; ln C = {chance:.3f})", cite="002:691"),
        over_seeds(f"with BN the same net trains at α = {high:g}", results, trained("bn_high", 1.0),
                   f"{shown('bn_high')} (learned: under {level:.3f})", lecture=True, cite="002:691"),
        over_seeds(f"with BN at α = {high:g} it learns in fewer steps than without BN at α = {low:g}", results,
                   faster("bn_high", "plain"),
                   f"steps to a loss of {level:.3f}: BN at α = {high:g} {steps['bn_high']:g}, plain at α = {low:g} "
                   f"{steps['plain']:g}", lecture=True, cite="002:691, 002:697"),
        over_seeds(f"at the same rate α = {low:g} BN learns in fewer steps than without", results,
                   faster("bn", "plain"),
                   f"steps to a loss of {level:.3f}: BN {steps['bn']:g}, plain {steps['plain']:g}; final loss BN "
                   f"{loss['bn']:.3f}, plain {loss['plain']:.3f}", lecture=True, cite="002:697"),
        over_seeds(f"at α = {high:g} ReLU units of the plain net die", results,
                   lambda r: _dead(r["plain_high"]) - _dead(r["plain_high"], 0),
                   f"dead fraction, mean over layers: {_dead(plain_high, 0):.1%} at step 0, {_when(plain_high)}",
                   cite="002:112, 003:88"),
        over_seeds(f"with BN fewer ReLU units die at α = {high:g}", results,
                   lambda r: _dead(r["plain_high"]) - _dead(r["bn_high"]),
                   f"dead fraction at the last probe after step 0 and before any divergence: BN {_when(bn_high)}, "
                   f"plain {_when(plain_high)}", lecture=True, cite="003:92")]
    norm2, probe = _unit_norm2(bn), _sound_probe(plain_high)
    differs = None
    if any(p.outcome == CONTRADICTS for p in parts):
        differs = (f"Where a statement contradicts the notes it does so on the seeds' paired differences. BN makes "
                   f"the loss blind to the scale of each unit's incoming weights, so their gradient is orthogonal to "
                   f"them and shrinks as 1/‖w‖: a step turns w by about α/‖w‖². Under He init ‖w‖² = "
                   f"{norm2:.2f} per unit, so at α = {low:g} the BN net's hidden layers learn at an effective rate "
                   f"α/‖w‖² = {low / norm2:.3g}, and it is not faster at the lecture's rate "
                   f"(steps to {level:.3f}: BN {steps['bn']:g}, plain {steps['plain']:g}). Its speed comes from the "
                   f"higher rate it tolerates (002:691): at α = {high:g} it needs {steps['bn_high']:g} steps.")
    cfg = plain.config
    return Verdict(
        holds(parts), f"loss α = {low:g}: plain {loss['plain']:.3f}, BN {loss['bn']:.3f}; α = {high:g}: plain "
                      f"{shown('plain_high')}, BN {shown('bn_high')}; dead at α = {high:g}: plain "
                      f"{_when(plain_high)}, BN {_when(bn_high)}",
        f"A healthy net, {cfg['model']['depth']}×{cfg['model']['width']} ReLU with He init, SGD at the lecture's "
        f"α = {low:g} and at α = {high:g}, with and without BN before each ReLU. At α = {high:g} the plain net's "
        f"steps overshoot: {shown('plain_high')}. BN rescales every unit's input to unit variance over the batch, "
        f"so a large step cannot blow up the next layer's input, and the net trains to {loss['bn_high']:.3f}. A unit "
        f"normalized over the batch gets inputs of batch mean β and std |γ| whatever its weights do: it can only die "
        f"if the learned β/|γ| falls far below zero. Dead fraction with BN at α = {high:g}: {_when(bn_high)}; "
        f"without: {_when(plain_high)}" + (f", per layer {fmt(plain_high.stat('dead_fraction', probe))}."
                                          if probe is not None else "."),
        [comparison_figure(results, "What batch norm buys a healthy net (ReLU + He)", out / "comparison.png")],
        differs, parts=parts)


EXPLODED = 1 / VANISHED  # "explodes by orders of magnitude": three orders gained between the last layer and the first
INITS = ("small", "large", "xavier")
INIT_NAMES = {"xavier_normal": "Xavier"}


def _backward_ratio(result: RunResult, probe: int = 0) -> float:
    """The backward signal's norm (dL/da) at layer 1 over layer 10: under 1 it shrinks toward the input."""
    norm = result.stat("backward_norm", probe)
    return float(norm[0] / norm[-1])


def _trained_ratio(result: RunResult) -> float:
    """``_backward_ratio`` at the last probe after step 0 and before any divergence (NaN where there is none)."""
    probe = _sound_probe(result)
    return math.nan if probe is None else _backward_ratio(result, probe)


def _kept(ratio: float) -> float:
    """How many decades ``ratio`` lies inside [``KEPT``, 1/``KEPT``] (negative outside, NaN for no ratio)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(min(np.log10(ratio / KEPT), np.log10(1 / (KEPT * ratio))))


def _init_name(result: RunResult) -> str:
    init = result.config["init"]
    return f"N(0, {init['std']:g}²)" if init["name"] == "normal" else INIT_NAMES.get(init["name"], init["name"])


def _spread(results: dict[str, RunResult], prefix: str, key: str) -> float:
    """The range (largest less smallest) of the final ``key`` over the three inits of one placement."""
    values = [results[prefix + label].final(key) for label in INITS]
    return float(np.max(values) - np.min(values))


@check(*INITS, *(f"bn_{label}" for label in INITS))
def bn_inits(results: dict[str, RunResult], out: Path) -> Verdict:
    """tanh under N(0, 0.01²), N(0, 1) and Xavier with and without BN: without it the backward signal vanishes or
    explodes toward the input, with it every layer keeps it (step 0 and the last probe); BN narrows the spread of the
    final losses and test accuracies over the inits."""
    names = {label: _init_name(results[label]) for label in INITS}
    ratio = {label: _backward_ratio(r) for label, r in results.items()}
    loss = {label: r.final("train_loss") for label, r in results.items()}
    accuracy = {label: r.final("test_accuracy") for label, r in results.items()}
    with_bn = [f"bn_{label}" for label in INITS]

    def kept_in_training(r: dict[str, RunResult]) -> float:
        return float(np.min([_kept(_trained_ratio(r[label])) for label in with_bn]))

    def narrower(key: str):
        return lambda r: lower(_spread(r, "bn_", key), _spread(r, "", key))

    def listed(values: dict[str, float], prefix: str, form: str) -> str:
        return ", ".join(f"{names[label]} {values[prefix + label]:{form}}" for label in INITS)

    final_bn = {label: _trained_ratio(results[label]) for label in with_bn}
    parts = [
        part(f"without BN, under {names['small']} the backward signal vanishes toward the input",
             ratio["small"] < VANISHED,
             f"dL/da norm layer 1 / layer 10 at step 0: {ratio['small']:.2g} (vanished: under {VANISHED:g})",
             cite="002:244"),
        part(f"without BN, under {names['large']} it explodes toward the input", ratio["large"] > EXPLODED,
             f"layer 1 / layer 10 at step 0: {ratio['large']:.3g} (exploded: over {EXPLODED:g})", cite="002:246"),
        part("with BN it neither vanishes nor explodes under any of the inits",
             bool(np.min([_kept(ratio[label]) for label in with_bn]) > 0),
             f"layer 1 / layer 10 at step 0: {listed(ratio, 'bn_', '.3g')} (kept: between {KEPT:g} and {1 / KEPT:g})",
             lecture=True, cite="002:252, 002:699"),
        over_seeds("with BN it stays so through training", results, kept_in_training,
                   f"layer 1 / layer 10 at the last probe: {listed(final_bn, 'bn_', '.3g')} (effect: decades inside "
                   f"[{KEPT:g}, {1 / KEPT:g}] of the worst init)", lecture=True, cite="002:699"),
        over_seeds("with BN the final loss depends less on the init", results, narrower("train_loss"),
                   f"final loss without BN: {listed(loss, '', '.3f')} (range "
                   f"{_spread(results, '', 'train_loss'):.3f}); "
                   f"with BN: {listed(loss, 'bn_', '.3f')} (range {_spread(results, 'bn_', 'train_loss'):.3f})",
                   lecture=True, cite="002:701"),
        over_seeds("with BN the test accuracy depends less on the init", results, narrower("test_accuracy"),
                   f"without BN: {listed(accuracy, '', '.1%')}; with BN: {listed(accuracy, 'bn_', '.1%')}",
                   lecture=True, cite="002:701")]
    norm2 = {label: _unit_norm2(results[label]) for label in with_bn}
    rate, grads = _rate(results["bn_xavier"]), results["small"].stat("weight_grad_norm")
    differs = None
    if any(p.outcome == CONTRADICTS for p in parts):
        differs = ("Where a statement contradicts the notes it does so on the seeds' paired differences. BN removes "
                   "the init's scale from the forward pass, not from training: a step turns a unit's incoming "
                   "weights by about α/‖w‖², and ‖w‖² per unit is " + listed(norm2, "bn_", ".3g") + ".")
    return Verdict(
        holds(parts), f"backward layer 1/10 without BN: {listed(ratio, '', '.2g')}; with BN: "
                      f"{listed(ratio, 'bn_', '.2g')}; loss range over inits {_spread(results, '', 'train_loss'):.3f} "
                      f"without BN, {_spread(results, 'bn_', 'train_loss'):.3f} with",
        f"tanh, {results['xavier'].config['model']['depth']}×{results['xavier'].config['model']['width']}, SGD "
        f"α = {rate:g}, three inits with and without BN before each tanh. Without BN the backward signal dL/da is "
        f"multiplied per layer by about √χ = σ_w·√E[tanh'(h)²]: far under 1 for {names['small']} (it falls to "
        f"{ratio['small']:.2g} of layer 10's by layer 1) and far over 1 for {names['large']} (×{ratio['large']:.3g}). "
        f"The weight gradients under {names['small']} look level (layer 1 / layer 10 {grads[0] / grads[-1]:.2g}) "
        f"only because the activations grow toward the input by the same factor; every one is about "
        f"{np.median(grads):.1g}. BN divides each unit's pre-activation by its batch std, which cancels the scale "
        f"of the weights feeding it, forward and backward: the ratio with BN is {listed(ratio, 'bn_', '.3g')}. With "
        f"BN the nets start from the same forward statistics whatever the init, but a step turns a unit's weights "
        f"by about α/‖w‖², and ‖w‖² per unit is {listed(norm2, 'bn_', '.3g')}: the init sets the pace.",
        [comparison_figure(results, "Batch norm, bad inits and the backward signal (tanh)", out / "comparison.png")],
        differs, parts=parts)
