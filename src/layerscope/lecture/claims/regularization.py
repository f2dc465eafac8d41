"""Chapter: regularization. L1 sparsifies the weights; dropout reduces overfitting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.verdict import CONTRADICTS, Verdict, check, holds, part
from layerscope.lecture.figures import comparison_figure, weight_magnitude_figure
from layerscope.runs.results import RunResult
from layerscope.theory.prediction import init_variances

NEAR_ZERO = 0.01  # a weight "near zero": within 1% of its layer's initial weight std of 0


OVERFIT = 10.0  # "overfits": the test loss ends over ten times the train loss (memorized, not learned)


SPARSE = 2.0  # "sparse": over twice the near-zero weights that a Gaussian of the same spread holds


def _near_zero(result: RunResult) -> tuple[float, float, float]:
    """Share of the final hidden weights within ``NEAR_ZERO`` initial stds of 0, the share a Gaussian of each
    layer's final spread would hold there, and the near-zero threshold of the first layer."""
    cfg, weights = result.config, result.final_weights()
    sigma_w2, _ = init_variances(cfg["init"], cfg["activation"]["name"], cfg["activation"],
                                 [w.shape[1] for w in weights], [w.shape[0] for w in weights])
    near = gaussian = 0.0
    thresholds = [NEAR_ZERO * math.sqrt(s2 / w.shape[1]) for w, s2 in zip(weights, sigma_w2)]
    for w, eps in zip(weights, thresholds):
        near += np.count_nonzero(np.abs(w) < eps)
        gaussian += w.size * math.erf(eps / (float(w.std()) * math.sqrt(2)))
    total = sum(w.size for w in weights)
    return near / total, gaussian / total, thresholds[-1]


@check("plain", "l1", "l2")
def l1_sparsifies(results: dict[str, RunResult], out: Path) -> Verdict:
    """L1: over ``SPARSE`` times the near-zero weights of a Gaussian of the same spread; L2: smaller weights, not sparse."""
    shares = {label: _near_zero(r) for label, r in results.items()}
    rms = {label: float(np.sqrt(np.mean(np.concatenate([w.ravel() ** 2 for w in r.final_weights()]))))
           for label, r in results.items()}

    def numbers(label: str) -> str:
        near, gaussian, _ = shares[label]
        return f"{label}: {near:.2%} near zero, a Gaussian of its spread {gaussian:.2%} (×{near / gaussian:.1f})"

    parts = [part("L1 makes the weights sparse", shares["l1"][0] > SPARSE * shares["l1"][1], numbers("l1")),
             part("L2 shrinks every weight", rms["l2"] < rms["plain"],
                  f"RMS weight {rms['l2']:.4f} with L2, {rms['plain']:.4f} without a penalty"),
             part("L2 does not make them sparse", shares["l2"][0] < SPARSE * shares["l2"][1], numbers("l2"))]
    passed = holds(parts, *results.values())
    l1 = results["l1"].config["trainer"]["l1"]
    weight_decay = results["l2"].config["trainer"]["weight_decay"]
    lr = results["l1"].config["optimizer"]["lr"]
    figure = weight_magnitude_figure({k: np.concatenate([w.ravel() for w in r.final_weights()])
                                      for k, r in results.items()}, {k: v[2] for k, v in shares.items()},
                                     "L1 vs L2: magnitudes of the hidden weights", out / "weights.png")
    return Verdict(
        passed, "; ".join(numbers(k) for k in results),
        f"A weight counts as near zero within {NEAR_ZERO:.0%} of its layer's initial std of 0. L1 (λ = {l1:g}) adds "
        f"λ·sign(w) to every gradient: a weight the data does not hold up is pulled to 0 at a constant rate "
        f"and then hops across it by α·λ = {lr * l1:.1e} per step, so it stays near zero. L2 (weight decay "
        f"{weight_decay:g}) adds λ·w: the pull fades as w shrinks, so every weight shrinks in proportion and "
        f"none is singled out. RMS weight: " + ", ".join(f"{k} {v:.4f}" for k, v in rms.items()) + ".",
        [figure, comparison_figure(results, "L1 vs L2 regularization", out / "comparison.png")], parts=parts)


@check("dropout", "plain")
def dropout_regularizes(results: dict[str, RunResult], out: Path) -> Verdict:
    """Without dropout the test loss ends over ``OVERFIT`` times the train loss; the lecture's "dropout narrows the
    train/test gap and raises test accuracy" is measured as it stands."""
    plain, dropped = results["plain"], results["dropout"]
    test = {label: r.curve("test_loss")[1] for label, r in results.items()}
    gap = {label: r.final("test_loss") - r.final("train_loss") for label, r in results.items()}
    best = {label: float(np.max(r.curve("test_accuracy")[1])) for label, r in results.items()}
    final = {label: r.final("test_accuracy") for label, r in results.items()}
    parts = [part("without dropout the net overfits the small training set",
                  plain.final("test_loss") > OVERFIT * plain.final("train_loss"),
                  f"test loss {plain.final('test_loss'):.3f}, train loss {plain.final('train_loss'):.4f} (overfit: "
                  f"over ×{OVERFIT:g})"),
             part("dropout narrows the gap between training and test loss", gap["dropout"] < gap["plain"],
                  f"test − train loss: dropout {gap['dropout']:.3f}, none {gap['plain']:.3f}", lecture=True),
             part("dropout improves the test accuracy", final["dropout"] > final["plain"],
                  f"final test accuracy: dropout {final['dropout']:.1%}, none {final['plain']:.1%}", lecture=True)]
    passed = holds(parts, *results.values())
    p = dropped.config["model"]["dropout"]
    n = plain.config["data"]["max_train"]
    differs = None
    if any(x.outcome == CONTRADICTS for x in parts):
        differs = (f"Here dropout (p = {p:g} after each of the {plain.config['model']['depth']} hidden layers, "
                   f"{n} training examples) did not deliver what the notes promise: the gap is "
                   f"{gap['dropout']:.3f} with it and {gap['plain']:.3f} without, and the final test accuracy "
                   f"{final['dropout']:.1%} against {final['plain']:.1%} (best over the run {best['dropout']:.1%} "
                   f"and {best['plain']:.1%}). In a 10-layer net the masks of every layer compound, so the noise "
                   f"slows the fit as much as it regularizes it; the recorded train loss is also measured with "
                   f"the masks on. Dropout's benefit is a matter of rate, depth and data size, not a rule.")
    measured = (f"test − train loss: none {gap['plain']:.3f}, dropout {gap['dropout']:.3f}; test accuracy "
                f"{final['plain']:.1%} vs {final['dropout']:.1%}")
    return Verdict(
        passed, measured,
        f"On {n} training examples the plain net reaches a train loss of {plain.final('train_loss'):.4f} while its "
        f"test loss bottoms out at {test['plain'].min():.3f} and ends at {test['plain'][-1]:.3f}: it memorizes. "
        f"Dropout zeroes each hidden unit with probability p = {p:g} at every training step (and scales the "
        f"others by 1/(1 − p)), so no unit can rely on another; at test time all units are on.",
        [comparison_figure(results, "Dropout on a small training set", out / "comparison.png")], differs,
        parts=parts)
