"""Chapter: activations. Saturating activations stall; SELU self-normalizes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.finite_width import DRAWS, allowed_distance, finite_width_stds
from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import CONFIDENCE_Z, MOST
from layerscope.lecture.claims.verdict import CONTRADICTS, Verdict, check, fmt, holds, over_seeds, part, theory_error
from layerscope.lecture.figures import comparison_figure, layer_stat_figure
from layerscope.nets.activations import ACTIVATIONS
from layerscope.runs.results import RunResult


def _largest(values: np.ndarray) -> float:
    """The largest finite value (0 when none is recorded)."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if len(finite) else 0.0


NO_DEAD_ZONE = ("leaky_relu", "prelu", "elu")  # the rectifiers whose slope for negative input is not 0


def _mean_offset(result: RunResult) -> float:
    """|activation mean| averaged over the layers at the last probe."""
    return float(np.nanmean(np.abs(result.stat("activation_mean", -1))))


AFFINE = 1e-4  # a trained net is affine when its midpoints miss by under 1e-4 of its outputs' size (float32: ~1e-7)


def _affine_error(result: RunResult) -> float:
    """How far the trained net is from affine on its test inputs: max |f((x+y)/2) − (f(x)+f(y))/2| / max |f|."""
    import torch

    from layerscope.api import load_model
    from layerscope.data.datasets import load_data

    cfg = result.config
    x = load_data(cfg["data"], cfg["trainer"]["seed"]).x_test
    with torch.no_grad():
        model = load_model(result.run_dir)
        a, b = x, x.roll(1, dims=0)
        miss = model((a + b) / 2) - (model(a) + model(b)) / 2
        return float(miss.abs().max() / model(a).abs().max())


@check("sigmoid", "relu", "elu", "gelu", "identity")
def activations(results: dict[str, RunResult], out: Path) -> Verdict:
    """Sigmoid ends with the highest loss of all activations; every rectifier and GELU/SiLU below it."""
    final = {label: r.final("train_loss") for label, r in results.items()}
    slowest = max(final, key=lambda k: final[k])
    saturating = [k for k in final if ACTIVATIONS.get(k).bounds]  # the variants are named by their activation
    others = [k for k in final if k not in saturating and k != "identity"]
    sigmoid_saturated = _largest(results["sigmoid"].stat("saturated_fraction", -1))
    no_dead_zone = [k for k in NO_DEAD_ZONE if k in results]
    dead = {k: _largest(results[k].stat("dead_fraction", -1)) for k in ["relu", *no_dead_zone]}
    inactive = {k: _largest(results[k].stat("inactive_fraction", -1)) for k in no_dead_zone}
    worst_other, best_saturating = max(others, key=lambda k: final[k]), min(saturating, key=lambda k: final[k])
    def losses(r: dict[str, RunResult]) -> dict[str, float]:
        return {label: run.final("train_loss") for label, run in r.items()}

    def slowest_margin(r: dict[str, RunResult]) -> float:
        loss = losses(r)
        return lower(max(v for k, v in loss.items() if k not in ("sigmoid", "identity")), loss["sigmoid"])

    def non_saturating_margin(r: dict[str, RunResult]) -> float:
        loss = losses(r)
        return lower(max(loss[k] for k in others), min(loss[k] for k in saturating))

    def none_dead(r: dict[str, RunResult]) -> float:
        return 1.0 if max(_largest(r[k].stat("dead_fraction", -1)) for k in no_dead_zone) == 0 else -1.0

    elu_mean, relu_mean = (_mean_offset(results[k]) for k in ("elu", "relu"))
    affine = {k: _affine_error(results[k]) for k in ("identity", "relu")}
    parts = [
        over_seeds("sigmoid trains slowest", results, slowest_margin, f"sigmoid loss {final['sigmoid']:.3f}, next "
                   f"{max((final[k] for k in final if k not in ('sigmoid', 'identity')), default=float('nan')):.3f}",
                   cite="000:17, 000:27"),
        over_seeds("sigmoid saturates", results,
                   lambda r: _largest(r["sigmoid"].stat("saturated_fraction", -1)) - MOST,
                   f"at most {sigmoid_saturated:.1%} of sigmoid units saturated at the last probe (most: over "
                   f"{MOST:.0%})", lecture=True, cite="001:28"),
        over_seeds("ReLU units can die: no gradient passes them for a whole batch", results,
                   lambda r: _largest(r["relu"].stat("dead_fraction", -1)),
                   f"relu: {dead['relu']:.1%} dead at most", lecture=True, cite="001:38, 002:112, 003:88"),
        over_seeds(f"{', '.join(no_dead_zone)} have no dead zone: no unit without gradient", results, none_dead,
                   ", ".join(f"{k} {dead[k]:.1%} dead, {inactive[k]:.1%} inactive (input ≤ 0 for the whole batch)"
                             for k in no_dead_zone) + " at most (effect: +1 none dead, −1 some)", lecture=True,
                   cite="000:26, 001:40, 002:122, 002:134, 003:94"),
        over_seeds("ELU's output mean is nearer 0 than ReLU's", results,
                   lambda r: lower(_mean_offset(r["elu"]), _mean_offset(r["relu"])),
                   f"|activation mean| averaged over layers at the last probe: elu {elu_mean:.3f}, relu {relu_mean:.3f}",
                   lecture=True, cite="002:134"),
        over_seeds("GELU optimizes better than ReLU", results,
                   lambda r: lower(r["gelu"].final("train_loss"), r["relu"].final("train_loss")),
                   f"loss gelu {final['gelu']:.3f}, relu {final['relu']:.3f}", lecture=True, cite="003:115"),
        over_seeds("non-saturating activations train fastest", results, non_saturating_margin,
                   f"slowest non-saturating {worst_other} {final[worst_other]:.3f} vs fastest saturating "
                   f"{best_saturating} {final[best_saturating]:.3f}", lecture=True, cite="000:27, 001:41"),
        part("without a nonlinearity the 10-layer net is one affine map", affine["identity"] < AFFINE and
             affine["relu"] > AFFINE, f"trained nets, |f(midpoint) − mean of f| / |f| at most: identity "
             f"{affine['identity']:.1e}, relu {affine['relu']:.1e} (affine: under {AFFINE:g})", lecture=True,
             cite="002:64")]
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
        + ". Fractions are the maximum over layers at the last probe. Without a nonlinearity the ten layers multiply "
        "out to one matrix: the trained net's midpoints fall on the line between its outputs to float precision. "
        "Digits are nearly linearly separable, so that linear model does not train slower here (loss "
        f"{final['identity']:.3f}); what it cannot do is bend its decision boundary. Where sigmoid does not "
        "saturate, it stalls for another reason: σ'(h) ≤ 1/4, so the backward signal shrinks at every layer "
        "(experiment 7).",
        [comparison_figure(results, "Activations", out / "comparison.png")], _differs(parts, final), parts=parts)


def _differs(parts: list, final: dict[str, float]) -> str | None:
    """What the activations' findings mean, for the statements that contradict the lecture."""
    found = {p.statement for p in parts if p.outcome == CONTRADICTS}
    text = []
    if "sigmoid saturates" in found:
        text.append("Sigmoid does not saturate here: with He's gain its pre-activations stay within a few units of 0, "
                    "where σ is far from 0 and 1. It stalls all the same, because σ'(h) ≤ 1/4 shrinks the backward "
                    "signal at every layer (experiment 7): the gradient vanishes without saturation.")
    if "non-saturating activations train fastest" in found:
        text.append(f"tanh (loss {final['tanh']:.3f}) trains faster than the slowest rectifier here: tanh is "
                    "zero-centred with slope 1 at 0, so with a gain that keeps its signal it is a good activation for "
                    "a short run; the lecture's ordering is about saturation under large inputs, which these runs "
                    "avoid.")
    return " ".join(text) or None


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
    worst, worst_mean = int(np.argmax(off - allowed)), int(np.argmax(mean - allowed))
    parts = [part("SELU keeps the activation std at 1 in every layer", bool(np.all(off <= allowed)),
                  f"std {fmt(std['selu'])}; worst margin at layer {worst + 1}: off by {off[worst]:.2%}, allowed "
                  f"{allowed[worst]:.2%}"),
             part("and its mean near 0", bool(np.all(mean <= allowed)),
                  f"worst margin at layer {worst_mean + 1}: |mean| {mean[worst_mean]:.3f}, allowed "
                  f"{allowed[worst_mean]:.3f}")]
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
        theory_error=theory_error(selu), parts=parts)


def _dead_and_stuck(result: RunResult) -> tuple[int, int, int]:
    """On the run's whole training set with its final weights: ReLU units dead (input ≤ 0 for every sample),
    those of them whose incoming weights get a non-zero gradient of the training loss, and live units that get none."""
    import torch

    from layerscope.api import load_model
    from layerscope.data.datasets import load_data
    from layerscope.nets.losses import build_loss

    cfg = result.config
    model, data = load_model(result.run_dir), load_data(cfg["data"], cfg["trainer"]["seed"])
    inputs: list[torch.Tensor] = []
    hooks = [block.act.register_forward_hook(lambda _m, args, _out: inputs.append(args[0].detach()))
             for block in model.blocks]
    loss = build_loss(cfg["loss"])(model(data.x_train), data.y_train)
    for hook in hooks:
        hook.remove()
    grads = torch.autograd.grad(loss, [block.linear.weight for block in model.blocks])
    dead = [(h <= 0).all(dim=0) for h in inputs]
    moving = [g.abs().sum(dim=1) > 0 for g in grads]
    return (sum(int(d.sum()) for d in dead), sum(int((d & m).sum()) for d, m in zip(dead, moving)),
            sum(int((~d & ~m).sum()) for d, m in zip(dead, moving)))


def _dead_share(result: RunResult) -> float:
    """The dead fraction at the last probe, averaged over the layers."""
    return float(np.nanmean(result.stat("dead_fraction", -1)))


@check("relu_low", "relu_high", "leaky_high")
def dead_relu(results: dict[str, RunResult], out: Path) -> Verdict:
    """A high learning rate kills ReLU units; a dead unit's weights get no gradient; leaky ReLU at that rate has none."""
    low, high, leaky = results["relu_low"], results["relu_high"], results["leaky_high"]
    rate = {label: r.config["optimizer"]["lr"] for label, r in results.items()}
    dead, updated, idle = _dead_and_stuck(high)

    def stuck(r: dict[str, RunResult]) -> float:
        n, moving, _ = _dead_and_stuck(r["relu_high"])
        return math.nan if n == 0 else (1.0 if moving == 0 else -1.0)

    parts = [
        over_seeds("a high learning rate kills ReLU units", results,
                   lambda r: _dead_share(r["relu_high"]) - _dead_share(r["relu_low"]),
                   f"dead at the last probe, mean over layers: lr {rate['relu_high']:g} {_dead_share(high):.1%}, "
                   f"lr {rate['relu_low']:g} {_dead_share(low):.1%}", lecture=True, cite="002:112"),
        over_seeds("a dead ReLU unit's weights are no longer updated", results, stuck,
                   f"lr {rate['relu_high']:g}, whole training set: {dead} dead units, {updated} of them with a non-zero "
                   f"weight gradient; {idle} live units without one (effect: +1 none updated, −1 some)",
                   lecture=True, cite="001:38, 002:112, 003:88"),
        over_seeds("at that rate leaky ReLU has no dead units", results,
                   lambda r: 1.0 if _largest(r["leaky_high"].stat("dead_fraction", -1)) == 0 else -1.0,
                   f"leaky ReLU: {_largest(leaky.stat('dead_fraction', -1)):.1%} dead, "
                   f"{_largest(leaky.stat('inactive_fraction', -1)):.1%} inactive at most", lecture=True,
                   cite="000:26, 001:40, 003:94")]
    per_layer = ", ".join(f"{label} [{fmt(r.stat('dead_fraction', -1))}]" for label, r in results.items())
    return Verdict(
        holds(parts), f"dead: lr {rate['relu_high']:g} {_dead_share(high):.1%}, lr {rate['relu_low']:g} "
                      f"{_dead_share(low):.1%}; leaky {_largest(leaky.stat('dead_fraction', -1)):.1%}",
        f"A unit is dead when no gradient passes it for a whole batch (ReLU: its input ≤ 0 for every sample). Dead "
        f"fraction per layer at the last probe: {per_layer}. A large step can push a unit's weights and bias to "
        f"where its input is negative for every sample; from then on its weights get exactly zero gradient, so "
        f"nothing brings it back. Leaky ReLU passes a·dL/da for negative input, so its inactive units still learn.",
        [layer_stat_figure(results, {"dead_fraction": "dead fraction (no gradient)",
                                     "inactive_fraction": "inactive fraction (input ≤ 0)"},
                           "Dead ReLU units: a high learning rate kills them, leaky ReLU has none", out / "dead.png"),
         comparison_figure(results, "Dead ReLU units", out / "comparison.png")], parts=parts)
