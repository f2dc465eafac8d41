"""Chapter: gradients. The vanishing backward signal, and gradient clipping."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.thresholds import KEPT, LEARNED, STALLED
from layerscope.lecture.claims.verdict import Verdict, check, fmt, holds, ln_classes, over_seeds, part, theory_error
from layerscope.lecture.figures import comparison_figure
from layerscope.runs.results import RunResult

VANISHED = 1e-3  # "vanishes by orders of magnitude": three orders lost between the last layer and the first


@check("relu_he", "sigmoid")
def vanishing_gradient(results: dict[str, RunResult], out: Path) -> Verdict:
    """Sigmoid: weight-gradient norm layer 1/layer 10 < ``VANISHED`` and the loss stalls; ReLU+He: > ``KEPT``, it learns."""
    sig, relu = results["sigmoid"], results["relu_he"]
    ratio_sig = sig.stat("weight_grad_norm")[0] / sig.stat("weight_grad_norm")[-1]
    ratio_relu = relu.stat("weight_grad_norm")[0] / relu.stat("weight_grad_norm")[-1]
    chance = ln_classes(sig)
    loss_sig, loss_relu = sig.final("train_loss"), relu.final("train_loss")
    parts = [part("with sigmoid the gradient norm shrinks by orders of magnitude toward the input", ratio_sig < VANISHED,
                  f"layer 1 / layer 10: {ratio_sig:.2g} (vanished: under {VANISHED:g})"),
             over_seeds("with sigmoid training stalls", results,
                        lambda r: r["sigmoid"].final("train_loss") - STALLED * chance,
                        f"loss {loss_sig:.3f} (stalled: over {STALLED * chance:.3f}; ln C = {chance:.3f})"),
             part("ReLU with He init keeps the gradient", ratio_relu > KEPT,
                  f"layer 1 / layer 10: {ratio_relu:.2g} (kept: over {KEPT:g})"),
             over_seeds("ReLU with He init trains", results,
                        lambda r: LEARNED * chance - r["relu_he"].final("train_loss"),
                        f"loss {loss_relu:.3f} (learned: under {LEARNED * chance:.3f})")]
    passed = holds(parts)
    chi_values = sig.theory("chi")[1:]
    chi = float(np.nanmean(chi_values)) if np.isfinite(chi_values).any() else float("nan")
    return Verdict(
        passed, f"grad norm layer 1/10: sigmoid {ratio_sig:.2g}, ReLU+He {ratio_relu:.2g}; loss {loss_sig:.3f} vs "
                f"{loss_relu:.3f}",
        f"At step 0 the weight-gradient norm per layer is {fmt(sig.stat('weight_grad_norm'))} with sigmoid and "
        f"{fmt(relu.stat('weight_grad_norm'))} with ReLU + He. Sigmoid's slope is at most 1/4, so the backward "
        f"gain χ = σ_w² E[σ'(h)²] ≈ {chi:.3f} per layer: the signal shrinks ×{chi ** 0.5:.2f} per layer. "
        f"After {sig.summary.get('steps')} steps the sigmoid net's loss is {loss_sig:.3f} (ln C = {chance:.3f}) "
        f"while ReLU + He reaches {loss_relu:.3f}.",
        [comparison_figure(results, "Vanishing gradient", out / "comparison.png")], theory_error=theory_error(sig),
        parts=parts)


@check("clip_norm", "no_clip")
def clipping_rescues(results: dict[str, RunResult], out: Path) -> Verdict:
    """Without clipping the run is recorded as diverged at a step; with clip_grad_norm it completes and learns."""
    plain, clipped = results["no_clip"], results["clip_norm"]
    chance = ln_classes(clipped)
    parts = [over_seeds("the loss diverges (NaN/inf) without clipping", results,
                        lambda r: 1.0 if r["no_clip"].status == "diverged" else -1.0,
                        f"{plain.status} at step {plain.summary.get('diverged_at_step')} (effect: +1 diverged, −1 not)"),
             over_seeds("the same setting trains with clip_grad_norm", results,
                        lambda r: LEARNED * chance - r["clip_norm"].final("train_loss")
                        if r["clip_norm"].status == "completed" else -math.inf,  # diverged: it did not train
                        f"{clipped.status}, loss {clipped.final('train_loss'):.3f} (learned: under "
                        f"{LEARNED * chance:.3f}; ln C = {chance:.3f})")]
    passed = holds(parts)
    return Verdict(
        passed, f"no clip: {plain.status} at step {plain.summary.get('diverged_at_step')}; clip: {clipped.status}, "
                f"loss {clipped.final('train_loss'):.3f}",
        f"Without clipping the loss became NaN/inf at step {plain.summary.get('diverged_at_step')} and the run was "
        f"stopped and recorded as diverged. Clipping the total gradient norm bounds every update, and the same "
        f"setting trains to a loss of {clipped.final('train_loss'):.3f} (test accuracy "
        f"{clipped.final('test_accuracy'):.1%}).",
        [comparison_figure(results, "Exploding gradient and clipping", out / "comparison.png")], parts=parts)
