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


BARELY = 0.1  # "barely moves": under a tenth of the last layer's relative change from its initial weights
EXPLODED = 10.0  # "explodes": the backward signal grows over an order of magnitude from the last layer to the first


def _grad_ratio(result: RunResult, probe: int = 0) -> float:
    """Weight-gradient norm of layer 1 over layer 10 at probe ``probe``."""
    norms = result.stat("weight_grad_norm", probe)
    return float(norms[0] / norms[-1])


def _mean_chi(result: RunResult) -> float:
    """The theory's backward gain χ per layer at step 0, averaged over layers 2 … 10 (NaN if not recorded)."""
    values = result.theory("chi")[1:]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _moved(result: RunResult) -> np.ndarray:
    """‖W_T − W_0‖ / ‖W_0‖ per layer at the last probe."""
    return result.stat("weight_change", -1)


@check("relu_he", "sigmoid", "tanh")
def vanishing_gradient(results: dict[str, RunResult], out: Path) -> Verdict:
    """Sigmoid: weight-gradient norm layer 1/layer 10 < ``VANISHED``, the loss stalls and the first layer barely moves;
    tanh's gradient shrinks too; ReLU+He: > ``KEPT``, it learns."""
    sig, relu, tanh = results["sigmoid"], results["relu_he"], results["tanh"]
    ratio_sig, ratio_relu, ratio_tanh = _grad_ratio(sig), _grad_ratio(relu), _grad_ratio(tanh)
    chance = ln_classes(sig)
    loss_sig, loss_relu = sig.final("train_loss"), relu.final("train_loss")
    moved = _moved(sig)
    parts = [part("with sigmoid the gradient norm shrinks by orders of magnitude toward the input", ratio_sig < VANISHED,
                  f"layer 1 / layer 10: {ratio_sig:.2g} (vanished: under {VANISHED:g})", cite="000:19, 001:28"),
             over_seeds("with sigmoid training stalls", results,
                        lambda r: r["sigmoid"].final("train_loss") - STALLED * chance,
                        f"loss {loss_sig:.3f} (stalled: over {STALLED * chance:.3f}; ln C = {chance:.3f})",
                        cite="000:19, 001:28"),
             over_seeds("with sigmoid the layers near the input barely move from their initial weights", results,
                        lambda r: math.log(_moved(r["sigmoid"])[-1] / _moved(r["sigmoid"])[0]) - math.log(1 / BARELY),
                        f"‖W_T − W_0‖/‖W_0‖ layer 1 {moved[0]:.2g}, layer 10 {moved[-1]:.2g} (barely: under "
                        f"{BARELY:g} of layer 10's)", lecture=True, cite="002:250"),
             part("with tanh the gradient shrinks toward the input too", ratio_tanh < 1,
                  f"layer 1 / layer 10: {ratio_tanh:.2g}, sigmoid {ratio_sig:.2g}", lecture=True,
                  cite="000:22, 001:34, 002:92"),
             part("ReLU with He init keeps the gradient", ratio_relu > KEPT,
                  f"layer 1 / layer 10: {ratio_relu:.2g} (kept: over {KEPT:g})", cite="000:25, 001:41"),
             over_seeds("ReLU with He init trains", results,
                        lambda r: LEARNED * chance - r["relu_he"].final("train_loss"),
                        f"loss {loss_relu:.3f} (learned: under {LEARNED * chance:.3f})", cite="000:27, 001:41")]
    passed = holds(parts)
    chi, tanh_chi = (_mean_chi(r) for r in (sig, tanh))
    return Verdict(
        passed, f"grad norm layer 1/10: sigmoid {ratio_sig:.2g}, tanh {ratio_tanh:.2g}, ReLU+He {ratio_relu:.2g}; "
                f"loss {loss_sig:.3f} vs {loss_relu:.3f}",
        f"At step 0 the weight-gradient norm per layer is {fmt(sig.stat('weight_grad_norm'))} with sigmoid, "
        f"{fmt(tanh.stat('weight_grad_norm'))} with tanh and {fmt(relu.stat('weight_grad_norm'))} with ReLU + He. "
        f"Sigmoid's slope is at most 1/4, so the backward gain χ = σ_w² E[σ'(h)²] ≈ {chi:.3f} per layer: the signal "
        f"shrinks ×{chi ** 0.5:.2f} per layer. tanh's slope is at most 1 and below it wherever |h| > 0, so with Xavier "
        f"init χ ≈ {tanh_chi:.3f}: it shrinks too, far more slowly. After "
        f"{sig.summary.get('steps')} steps the sigmoid net's loss is {loss_sig:.3f} (ln C = {chance:.3f}) while "
        f"ReLU + He reaches {loss_relu:.3f}; the sigmoid net's layers moved ‖W_T − W_0‖/‖W_0‖ = {fmt(moved)} from "
        f"layer 1 to 10: the layers the gradient does not reach keep their initial weights.",
        [comparison_figure(results, "Vanishing gradient", out / "comparison.png")], theory_error=theory_error(sig),
        parts=parts)


@check("clip_norm", "no_clip", "steep_init", "steep_init_clipped")
def clipping_rescues(results: dict[str, RunResult], out: Path) -> Verdict:
    """Too large a step (lr 1.0) or an exploding gradient (gain-2 init): recorded as diverged at a step without
    clipping; with clip_grad_norm the same setting completes and learns."""
    plain, clipped = results["no_clip"], results["clip_norm"]
    steep, steep_clipped = results["steep_init"], results["steep_init_clipped"]
    chance = ln_classes(clipped)
    growth = float(steep.stat("backward_std")[0] / steep.stat("backward_std")[-1])
    predicted = float(steep.theory("backward_std")[0] / steep.theory("backward_std")[-1])

    def diverges(label: str):
        return lambda r: 1.0 if r[label].status == "diverged" else -1.0

    def trains(label: str):
        return lambda r: (LEARNED * chance - r[label].final("train_loss") if r[label].status == "completed"
                          else -math.inf)  # diverged: it did not train

    parts = [over_seeds("too large a step diverges (NaN/inf) without clipping", results, diverges("no_clip"),
                        f"lr 1.0: {plain.status} at step {plain.summary.get('diverged_at_step')} (effect: +1 diverged, "
                        f"−1 not)", cite="000:20, 001:29"),
             over_seeds("the same setting trains with clip_grad_norm", results, trains("clip_norm"),
                        f"{clipped.status}, loss {clipped.final('train_loss'):.3f} (learned: under "
                        f"{LEARNED * chance:.3f}; ln C = {chance:.3f})", cite="000:21, 001:31"),
             part("an init with gain 2 makes the gradient explode toward the input", growth > EXPLODED,
                  f"backward signal ×{growth:.3g} from layer 10 to 1 (theory ×{predicted:.3g}; explodes: over "
                  f"×{EXPLODED:g})", cite="000:20, 001:29"),
             over_seeds("the exploding gradient keeps the net from converging", results, diverges("steep_init"),
                        f"lr {steep.config['optimizer']['lr']:g}: {steep.status} at step "
                        f"{steep.summary.get('diverged_at_step')}", cite="000:20, 001:29"),
             over_seeds("clipping the gradient norm lets it train", results, trains("steep_init_clipped"),
                        f"{steep_clipped.status}, loss {steep_clipped.final('train_loss'):.3f} (learned: under "
                        f"{LEARNED * chance:.3f})", cite="000:21, 001:31")]
    passed = holds(parts)
    return Verdict(
        passed, f"no clip: {plain.status} at step {plain.summary.get('diverged_at_step')}; clip: {clipped.status}, "
                f"loss {clipped.final('train_loss'):.3f}; gain 2: {steep.status}, clipped loss "
                f"{steep_clipped.final('train_loss'):.3f}",
        f"Two ways to a step that flies out of the region where the loss is sane. A healthy net (ReLU + He) with "
        f"lr 1.0: the loss became NaN/inf at step {plain.summary.get('diverged_at_step')} and the run was stopped "
        f"and recorded as diverged. A net whose gradient itself explodes: He init with gain 2 (σ_w² = 4, so χ = 2 "
        f"per layer and the backward signal grows ×√2 per layer toward the input, ×{growth:.3g} over the ten layers) "
        f"diverged at step {steep.summary.get('diverged_at_step')} with the ordinary lr "
        f"{steep.config['optimizer']['lr']:g}. Clipping the total gradient norm bounds every update: the first "
        f"trains to a loss of {clipped.final('train_loss'):.3f} (test accuracy {clipped.final('test_accuracy'):.1%}), "
        f"the second to {steep_clipped.final('train_loss'):.3f} (test accuracy "
        f"{steep_clipped.final('test_accuracy'):.1%}).",
        [comparison_figure(results, "Exploding gradient and clipping", out / "comparison.png")], parts=parts)
