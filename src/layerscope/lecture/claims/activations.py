"""Chapter: activations. Saturating activations stall; SELU self-normalizes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.finite_width import DRAWS, allowed_distance, finite_width_stds
from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import CONFIDENCE_Z, MOST
from layerscope.lecture.claims.verdict import Verdict, check, fmt, holds, over_seeds, part, theory_error
from layerscope.lecture.figures import comparison_figure
from layerscope.nets.activations import ACTIVATIONS
from layerscope.runs.results import RunResult


def _largest(values: np.ndarray) -> float:
    """The largest finite value (0 when none is recorded)."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if len(finite) else 0.0


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
    def losses(r: dict[str, RunResult]) -> dict[str, float]:
        return {label: run.final("train_loss") for label, run in r.items()}

    def slowest_margin(r: dict[str, RunResult]) -> float:
        loss = losses(r)
        return lower(max(v for k, v in loss.items() if k != "sigmoid"), loss["sigmoid"])

    def non_saturating_margin(r: dict[str, RunResult]) -> float:
        loss = losses(r)
        return lower(max(loss[k] for k in others), min(loss[k] for k in saturating))

    parts = [
        over_seeds("sigmoid trains slowest", results, slowest_margin, f"sigmoid loss {final['sigmoid']:.3f}, next "
                   f"{max((final[k] for k in final if k != 'sigmoid'), default=float('nan')):.3f}"),
        over_seeds("sigmoid saturates", results,
                   lambda r: _largest(r["sigmoid"].stat("saturated_fraction", -1)) - MOST,
                   f"at most {sigmoid_saturated:.1%} of sigmoid units saturated at the last probe (most: over "
                   f"{MOST:.0%})", lecture=True),
        over_seeds("rectifiers can have dead units", results,
                   lambda r: max((_largest(r[k].stat("dead_fraction", -1)) for k in rectifiers), default=0.0),
                   ", ".join(f"{k} {v:.1%}" for k, v in dead.items()) + " dead at most", lecture=True),
        over_seeds("non-saturating activations train fastest", results, non_saturating_margin,
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
