"""Chapter: normalization. Batch norm before the activation restores training; layer norm at small batches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.finite_width import DRAWS, allowed_distance, finite_width_stds
from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import COLLAPSED, CONFIDENCE_Z, LEARNED, STALLED
from layerscope.lecture.claims.verdict import Verdict, check, fmt, holds, ln_classes, over_seeds, part
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
             f"layer {worst + 1}: off by {off[worst] / healthy:.2%}, allowed {allowed[worst] / healthy:.2%}"),
        over_seeds("BN before the nonlinearity trains", results,
                   lambda r: LEARNED * chance - r["before"].final("train_loss"),
                   f"loss {loss['before']:.3f} (learned: under {LEARNED * chance:.3f})"),
        part("without BN the net does not keep its signal", none.stat("activation_std")[-1] < COLLAPSED * healthy,
             f"std at layer 10 {none.stat('activation_std')[-1]:.2g} (collapsed: under {COLLAPSED * healthy:.2g})"),
        over_seeds("without BN the net does not train", results,
                   lambda r: r["none"].final("train_loss") - STALLED * chance,
                   f"loss {loss['none']:.3f} (stalled: over {STALLED * chance:.3f}; ln C = {chance:.3f})"),
        over_seeds("BN before the nonlinearity trains better than BN after it", results,
                   lambda r: lower(r["before"].final("train_loss"), r["after"].final("train_loss")),
                   f"loss before {loss['before']:.3f}, after {loss['after']:.3f}", lecture=True)]
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
        parts=parts)


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

    parts = [over_seeds("batch norm does not train at batch 2", results, stalled("bn_2"), numbers("bn_2")),
             over_seeds("batch norm trains at batch 128", results, learned("bn_128"), numbers("bn_128")),
             over_seeds("layer norm trains at batch 2", results, learned("ln_2"), numbers("ln_2")),
             over_seeds("layer norm trains at batch 128", results, learned("ln_128"), numbers("ln_128"))]
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
