"""Chapter: regularization. L1 sparsifies the weights; dropout reduces overfitting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.verdict import CONTRADICTS, Verdict, check, holds, over_seeds, part
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


def _rms(result: RunResult) -> float:
    """The RMS of the final hidden weights."""
    return float(np.sqrt(np.mean(np.concatenate([w.ravel() ** 2 for w in result.final_weights()]))))


@check("plain", "l1", "l2")
def l1_sparsifies(results: dict[str, RunResult], out: Path) -> Verdict:
    """L1: over ``SPARSE`` times the near-zero weights of a Gaussian of the same spread; L2: smaller weights, not sparse."""
    shares = {label: _near_zero(r) for label, r in results.items()}
    rms = {label: _rms(r) for label, r in results.items()}

    def numbers(label: str) -> str:
        near, gaussian, _ = shares[label]
        return f"{label}: {near:.2%} near zero, a Gaussian of its spread {gaussian:.2%} (×{near / gaussian:.1f})"

    def sparse_margin(label: str):
        def effect(r: dict[str, RunResult]) -> float:
            near, gaussian, _ = _near_zero(r[label])
            return near / gaussian - SPARSE
        return effect

    parts = [over_seeds("L1 makes the weights sparse", results, sparse_margin("l1"), numbers("l1")),
             over_seeds("L2 shrinks every weight", results, lambda r: lower(_rms(r["l2"]), _rms(r["plain"])),
                        f"RMS weight {rms['l2']:.4f} with L2, {rms['plain']:.4f} without a penalty"),
             over_seeds("L2 does not make them sparse", results, lambda r: -sparse_margin("l2")(r), numbers("l2"))]
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


def _gap(result: RunResult) -> float:
    """The final test loss less the final train loss (the train loss as recorded: with the dropout masks on)."""
    return result.final("test_loss") - result.final("train_loss")


@check("plain")
def dropout_regularizes(results: dict[str, RunResult], out: Path) -> Verdict:
    """Without dropout the test loss ends over ``OVERFIT`` times the train loss; at each rate (the variants other than
    ``plain``), the lecture's "dropout narrows the train/test gap and raises test accuracy", over seeds."""
    plain = results["plain"]
    rates = {label: r.config["model"]["dropout"] for label, r in results.items() if label != "plain"}
    gap = {label: _gap(r) for label, r in results.items()}
    final = {label: r.final("test_accuracy") for label, r in results.items()}
    parts = [over_seeds("without dropout the net overfits the small training set", results,
                        lambda r: r["plain"].final("test_loss") - OVERFIT * r["plain"].final("train_loss"),
                        f"test loss {plain.final('test_loss'):.3f}, train loss {plain.final('train_loss'):.4f} "
                        f"(overfit: over ×{OVERFIT:g})")]
    for label, p in rates.items():
        parts += [over_seeds(f"dropout p = {p:g} narrows the gap between training and test loss", results,
                             lambda r, label=label: _gap(r["plain"]) - _gap(r[label]),
                             f"test − train loss: p = {p:g} {gap[label]:.3f}, none {gap['plain']:.3f}", lecture=True),
                  over_seeds(f"dropout p = {p:g} improves the test accuracy", results,
                             lambda r, label=label: r[label].final("test_accuracy") - r["plain"].final("test_accuracy"),
                             f"final test accuracy: p = {p:g} {final[label]:.1%}, none {final['plain']:.1%}",
                             lecture=True)]
    passed = holds(parts, *results.values())
    cfg = plain.config
    setup = (f"{cfg['model']['depth']}×{cfg['model']['width']} {cfg['activation']['name']} net, "
             f"{cfg['data']['max_train']} training digits, batch {cfg['trainer']['batch_size']}, "
             f"{plain.summary.get('steps')} steps of {cfg['optimizer']['name']} (lr {cfg['optimizer']['lr']:g})")
    differs = None
    if any(x.outcome == CONTRADICTS for x in parts):
        differs = ("Where a statement contradicts the notes, it does so on the seeds' paired differences, not on one "
                   "lucky seed. Dropout's benefit is a matter of rate, depth, data size and training length: the "
                   "masks slow the fit as much as they regularize it, and the recorded train loss is measured with "
                   "the masks on, which widens nothing but raises the train loss itself.")
    measured = ("test − train loss: " + ", ".join(f"{k} {v:.3f}" for k, v in gap.items()) + "; test accuracy: "
                + ", ".join(f"{k} {v:.1%}" for k, v in final.items()))
    return Verdict(
        passed, measured,
        f"Setup, where the notes make the claim (a net that overfits a small training set, trained long enough): "
        f"{setup}. The plain net reaches a train loss of {plain.final('train_loss'):.4f} while its test loss ends at "
        f"{plain.final('test_loss'):.3f}: it memorizes. Dropout zeroes each hidden unit with probability p at every "
        f"training step (and scales the others by 1/(1 − p)), so no unit can rely on another; at test time all "
        f"units are on. Rates p = " + ", ".join(f"{p:g}" for p in rates.values()) + ", each decided over the seeds.",
        [comparison_figure(results, "Dropout on a small training set", out / "comparison.png")], differs,
        parts=parts)
