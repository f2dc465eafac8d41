"""Chapter: regularization. Overfitting on a small training set; L1 sparsifies the weights; L2's λ trades overfitting
for underfitting; dropout and BN regularize."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from layerscope.lecture.claims.seeds import lower
from layerscope.lecture.claims.thresholds import LEARNED
from layerscope.lecture.claims.verdict import CONTRADICTS, Part, Verdict, check, holds, ln_classes, over_seeds
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

    parts = [over_seeds("L1 makes the weights sparse", results, sparse_margin("l1"), numbers("l1"),
                        cite="002:415, 002:417"),
             over_seeds("L2 shrinks every weight", results, lambda r: lower(_rms(r["l2"]), _rms(r["plain"])),
                        f"RMS weight {rms['l2']:.4f} with L2, {rms['plain']:.4f} without a penalty",
                        cite="002:409, 002:415"),
             over_seeds("L2 does not make them sparse", results, lambda r: -sparse_margin("l2")(r), numbers("l2"),
                        cite="002:415, 002:417")]
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


Finding = tuple[Part, str]
"""A statement and what to say where it contradicts the lecture (empty: not the lecture's words)."""


def _findings(found: list[Finding]) -> str | None:
    """The notes of the statements that contradict the lecture, each once, in order (None where none does)."""
    notes = [note for p, note in found if p.outcome == CONTRADICTS and note]
    return " ".join(dict.fromkeys(notes)) or None


def _gap(result: RunResult) -> float:
    """The final test loss less the final train loss (the train loss as recorded: with the dropout masks on)."""
    return result.final("test_loss") - result.final("train_loss")


def _late_change(values: np.ndarray) -> float:
    """How much a per-epoch curve changes over the last half of training, read off its least-squares line."""
    half = np.asarray(values[len(values) // 2:], dtype=float)
    return float(np.polyfit(np.arange(len(half)), half, 1)[0] * (len(half) - 1))


def _pass_losses(result: RunResult) -> np.ndarray:
    """The training loss of each pass over the training set (an epoch): the mean of its steps' batch losses."""
    steps, losses = result.step_curve()
    epochs = np.searchsorted([row["step"] for row in result.metrics], steps)
    return np.array([losses[epochs == e].mean() for e in range(len(result.metrics))])


def _rising(losses: np.ndarray) -> float:
    """The share of a loss curve's points that rose over the point before."""
    return float(np.mean(np.diff(losses) > 0))


def _largest_rise(result: RunResult) -> float:
    """The largest rise of the training loss from one pass to the next, as a log ratio (negative: it always fell)."""
    return float(np.max(np.diff(np.log(_pass_losses(result)))))


def _dropout_rates(results: dict[str, RunResult]) -> dict[str, float]:
    """The variants that differ from ``plain`` in their dropout rate alone (same BN and optimizer), with the rates."""
    plain = results["plain"].config
    configs = {label: r.config for label, r in results.items() if label != "plain"}
    return {label: cfg["model"]["dropout"] for label, cfg in configs.items()
            if cfg["bn"] == plain["bn"] and cfg["optimizer"] == plain["optimizer"] and cfg["model"]["dropout"] > 0}


def _dropout(results: dict[str, RunResult], rates: dict[str, float]) -> list[Finding]:
    """The net overfits without dropout; at each rate dropout narrows the gap and improves the test accuracy."""
    plain = results["plain"]
    gap = {label: _gap(results[label]) for label in ["plain", *rates]}
    final = {label: results[label].final("test_accuracy") for label in ["plain", *rates]}
    note = ("Where a dropout statement contradicts the notes, it does so on the seeds' paired differences, not on one "
            "lucky seed. Dropout's benefit is a matter of rate, depth, data size and training length: the masks slow "
            "the fit as much as they regularize it, and the recorded train loss is measured with the masks on, which "
            "widens nothing but raises the train loss itself.")
    found = [(over_seeds("without dropout the net overfits the small training set", results,
                         lambda r: r["plain"].final("test_loss") - OVERFIT * r["plain"].final("train_loss"),
                         f"test loss {plain.final('test_loss'):.3f}, train loss {plain.final('train_loss'):.4f} "
                         f"(overfit: over ×{OVERFIT:g})", cite="002:389"), "")]
    for label, p in rates.items():
        found += [(over_seeds(f"dropout p = {p:g} narrows the gap between training and test loss", results,
                              lambda r, label=label: _gap(r["plain"]) - _gap(r[label]),
                              f"test − train loss: p = {p:g} {gap[label]:.3f}, none {gap['plain']:.3f}", lecture=True,
                              cite="002:389, 002:425"), note),
                  (over_seeds(f"dropout p = {p:g} improves the test accuracy", results,
                              lambda r, label=label: (r[label].final("test_accuracy")
                                                      - r["plain"].final("test_accuracy")),
                              f"final test accuracy: p = {p:g} {final[label]:.1%}, none {final['plain']:.1%}",
                              lecture=True, cite="002:389, 002:425"), note)]
    return found


def _noisy_loss(results: dict[str, RunResult], rates: dict[str, float]) -> list[Finding]:
    """Without dropout every pass lowers the training loss; with dropout more passes raise it."""
    rising = {label: _rising(_pass_losses(results[label])) for label in ["plain", *rates]}

    def more_rises(r: dict[str, RunResult]) -> float:
        plain = _rising(_pass_losses(r["plain"]))
        return min(_rising(_pass_losses(r[label])) - plain for label in rates)
    return [(over_seeds("without dropout the training loss falls monotonically, pass by pass over the training set",
                        results, lambda r: -_largest_rise(r["plain"]),
                        f"{rising['plain']:.0%} of passes rose; the smallest fall "
                        f"{-_largest_rise(results['plain']):.2%}", cite="002:425"), ""),
            (over_seeds("with dropout it does not: the loss is noisy, more of its passes rise", results, more_rises,
                        "passes whose loss rose: " + ", ".join(f"{label} {v:.0%}" for label, v in rising.items())
                        + " (effect: the fewest of the rates' less none's)", lecture=True, cite="002:425"),
             "With dropout the training loss fell pass after pass as steadily as without.")]


def _overtraining(results: dict[str, RunResult]) -> list[Finding]:
    """``long``, the plain net trained further: its test loss rises while its training loss falls; its test error."""
    long = results["long"]
    test, train = np.log(long.test_curve()[1]), np.log(long.curve("train_loss")[1])
    error = 1 - long.test_curve("test_accuracy")[1]
    best = int(np.nanargmin(test))
    rise, error_change = np.expm1(_late_change(test)), _late_change(error) * 100
    factor = long.config["optimizer"]["lr"] / results["plain"].config["optimizer"]["lr"]
    return [(over_seeds(f"trained too long (lr ×{factor:g}, about {factor:g} times as far), the net overfits: its "
                        f"test loss rises over the last half of training", results,
                        lambda r: _late_change(np.log(r["long"].test_curve()[1])),
                        f"test loss lowest at epoch {best} ({np.exp(test[best]):.3f}), {np.exp(test[-1]):.3f} at the "
                        f"end; fitted change over the last half {rise:+.1%}", lecture=True, cite="002:389, 003:310"),
             f"Over the last half of training the test loss did not rise (fitted change {rise:+.1%}): this setting "
             f"has not trained the net past its best test loss."),
            (over_seeds("while its training loss still falls", results,
                        lambda r: -_late_change(np.log(r["long"].curve("train_loss")[1])),
                        f"train loss {np.exp(train[len(train) // 2]):.2g} halfway, {np.exp(train[-1]):.2g} at the "
                        f"end; fitted change over the last half {np.expm1(_late_change(train)):+.0%}", cite="002:389"),
             ""),
            (over_seeds("and its test error rate rises with it (what early stopping on a validation set watches)",
                        results,
                        lambda r: _late_change(1 - r["long"].test_curve("test_accuracy")[1]),
                        f"test error {error[best]:.2%} at the test loss's lowest, {error[-1]:.2%} at the end; fitted "
                        f"change over the last half {error_change:+.2f} points", lecture=True, cite="003:310"),
             f"Trained too long, the net's test loss rises ({rise:+.1%} over the last half) but it gets no more test "
             f"digits wrong (test error {error_change:+.2f} points): the rise is in how sure it is, not in how often "
             f"it errs. Early stopping on the error rate (003:310) would train on where early stopping on the test "
             f"loss stops (epoch {best}).")]


def _batch_norm(results: dict[str, RunResult], rates: dict[str, float]) -> list[Finding]:
    """BN on the small training set narrows the gap and improves the test accuracy; with BN, dropout no longer helps."""
    plain, bn, both = results["plain"], results["bn"], results["bn_dropout"]
    p = both.config["model"]["dropout"]
    accuracy = {label: results[label].final("test_accuracy") for label in ("plain", "bn", "bn_dropout")}
    same_rate = [label for label, rate in rates.items() if rate == p]
    without = (f" (without BN, p = {p:g} gained "
               f"{(results[same_rate[0]].final('test_accuracy') - accuracy['plain']) * 100:+.1f} points)"
               if same_rate else "")
    return [(over_seeds("BN regularizes: it narrows the gap between training and test loss", results,
                        lambda r: _gap(r["plain"]) - _gap(r["bn"]),
                        f"test − train loss: BN {_gap(bn):.3f}, none {_gap(plain):.3f}", lecture=True,
                        cite="002:695"),
             f"BN did not narrow the gap here (test − train loss: BN {_gap(bn):.3f}, none {_gap(plain):.3f})."),
            (over_seeds("BN improves the test accuracy", results,
                        lambda r: r["bn"].final("test_accuracy") - r["plain"].final("test_accuracy"),
                        f"final test accuracy: BN {accuracy['bn']:.1%}, none {accuracy['plain']:.1%}", lecture=True,
                        cite="002:695"),
             f"BN did not improve the test accuracy here (BN {accuracy['bn']:.1%}, none {accuracy['plain']:.1%})."),
            (over_seeds(f"with BN, dropout (p = {p:g}) can be removed: it no longer improves the test accuracy",
                        results,
                        lambda r: r["bn"].final("test_accuracy") - r["bn_dropout"].final("test_accuracy"),
                        f"final test accuracy: BN {accuracy['bn']:.1%}, BN + dropout {accuracy['bn_dropout']:.1%}",
                        lecture=True, cite="002:693"),
             f"With BN, dropout p = {p:g} still raised the test accuracy by "
             f"{(accuracy['bn_dropout'] - accuracy['bn']) * 100:+.1f} points{without}: the BN net memorizes the small "
             f"training set too (train loss {bn.final('train_loss'):.4f}, test loss {bn.final('test_loss'):.3f}), "
             f"so dropout has overfitting left to remove.")]


@check("plain", "long", "bn", "bn_dropout")
def dropout_regularizes(results: dict[str, RunResult], out: Path) -> Verdict:
    """On the small training set: without dropout the test loss ends over ``OVERFIT`` times the train loss; at each
    rate, the lecture's "dropout narrows the train/test gap, raises test accuracy and makes the loss noisy"; trained
    too long (``long``) the test loss rises; BN regularizes and makes dropout unneeded; each decided over seeds."""
    plain = results["plain"]
    rates = _dropout_rates(results)
    found = (_dropout(results, rates) + _noisy_loss(results, rates) + _overtraining(results)
             + _batch_norm(results, rates))
    parts = [p for p, _ in found]
    passed = holds(parts, *results.values())
    cfg = plain.config
    setup = (f"{cfg['model']['depth']}×{cfg['model']['width']} {cfg['activation']['name']} net, "
             f"{cfg['data']['max_train']} training digits, batch {cfg['trainer']['batch_size']}, "
             f"{plain.summary.get('steps')} steps of {cfg['optimizer']['name']} (lr {cfg['optimizer']['lr']:g})")
    gap = {label: _gap(r) for label, r in results.items()}
    final = {label: r.final("test_accuracy") for label, r in results.items()}
    steps = {label: _rising(results[label].step_curve()[1]) for label in ["plain", *rates]}
    return Verdict(
        passed, "test − train loss: " + ", ".join(f"{k} {v:.3f}" for k, v in gap.items()) + "; test accuracy: "
        + ", ".join(f"{k} {v:.1%}" for k, v in final.items()),
        f"Setup, where the notes make the claim (a net that overfits a small training set, trained long enough): "
        f"{setup}. The plain net reaches a train loss of {plain.final('train_loss'):.4f} while its test loss ends at "
        f"{plain.final('test_loss'):.3f}: it memorizes. Dropout zeroes each hidden unit with probability p at every "
        f"training step (and scales the others by 1/(1 − p)), so no unit can rely on another; at test time all "
        f"units are on. Rates p = " + ", ".join(f"{p:g}" for p in rates.values()) + ", each decided over the seeds. "
        f"The loss's noise is read pass by pass over the training set (a pass's loss: the mean of its batches'): one "
        f"batch's loss rises on about half the steps with or without dropout (" + ", ".join(
            f"{k} {v:.0%}" for k, v in steps.items()) + " of steps), since each batch holds other digits. `long` is "
        f"the plain net at lr {results['long'].config['optimizer']['lr']:g}: SGD covers that much more ground in the "
        f"same steps, training it past its best test loss. `bn` and `bn_dropout` put BN before each nonlinearity, "
        f"the latter with dropout p = {results['bn_dropout'].config['model']['dropout']:g}.",
        [comparison_figure(results, "Dropout and BN on a small training set", out / "comparison.png")],
        _findings(found), parts=parts)


def _penalties(results: dict[str, RunResult]) -> dict[str, float]:
    """The L2 variants (no L1), {label: weight decay λ}, from λ = 0 up."""
    decay = {label: r.config["trainer"]["weight_decay"] for label, r in results.items()
             if not r.config["trainer"]["l1"]}
    return dict(sorted(decay.items(), key=lambda kv: kv[1]))


def _z_size(result: RunResult) -> float:
    """The RMS of the hidden pre-activations Z at the last probe, averaged over the layers."""
    return float(np.mean(np.hypot(result.stat("preactivation_mean", -1), result.stat("preactivation_std", -1))))


def _tanh_slope(result: RunResult) -> float:
    """tanh's mean slope where the hidden units work at the last probe, 1 − E[a²] averaged over the layers: 1 on
    its linear part, 0 saturated."""
    return float(np.mean(1 - result.stat("activation_mean", -1) ** 2 - result.stat("activation_std", -1) ** 2))


Step = Callable[[dict[str, RunResult], str, str], float]
"""An effect between two λ: ``step(runs, label of the smaller λ, label of the larger)``, positive where it holds."""


def _each_larger(labels: list[str], step: Step) -> Callable[[dict[str, RunResult]], float]:
    """The effect "each larger λ does it": the smallest ``step`` over neighbouring λ."""
    return lambda r: min(step(r, a, b) for a, b in zip(labels, labels[1:]))


def _shrinks(measure: Callable[[RunResult], float]) -> Step:
    """The step "the larger λ's ``measure`` is smaller", as a log ratio."""
    return lambda r, a, b: lower(measure(r[b]), measure(r[a]))


def _weights_shrink(results: dict[str, RunResult], decay: dict[str, float]) -> list[Finding]:
    """Each larger λ: smaller weights, smaller pre-activations Z, tanh nearer its linear part."""
    labels = list(decay)
    measures = [("sets the weights nearer 0", "set", "RMS hidden weight", _rms, ".4f", _shrinks(_rms)),
                ("makes the pre-activations Z smaller", "make", "RMS of Z at the last probe", _z_size, ".3f",
                 _shrinks(_z_size)),
                ("keeps tanh nearer its linear part", "keep", "tanh's mean slope 1 − E[a²] (1: linear)", _tanh_slope,
                 ".3f", lambda r, a, b: _tanh_slope(r[b]) - _tanh_slope(r[a]))]
    found = []
    for claim, verb, name, measure, form, step in measures:
        numbers = f"{name}: " + ", ".join(f"λ {decay[k]:g} {format(measure(results[k]), form)}" for k in labels)
        found.append((over_seeds(f"each larger λ {claim}", results, _each_larger(labels, step), numbers, lecture=True,
                                 cite="002:409"),
                      f"A larger λ did not always {verb} {claim.split(' ', 1)[1]} ({numbers})."))
    return found


def _overfits_less(results: dict[str, RunResult], decay: dict[str, float]) -> list[Finding]:
    """Each larger λ, and L1, narrow the train/test gap; the smallest λ > 0 lowers the test loss."""
    labels, small = list(decay), list(decay)[1]
    gap = {k: _gap(r) for k, r in results.items()}
    loss = {k: (r.final("train_loss"), r.final("test_loss")) for k, r in results.items()}
    late = np.expm1(_late_change(np.log(results["none"].test_curve()[1])))
    held_up = ("The penalty narrows the gap by holding the training loss up, not by lowering the test loss: train / "
               "test loss " + ", ".join(f"λ {decay[k]:g} {loss[k][0]:.3f} / {loss[k][1]:.3f}" for k in labels)
               + f". The unpenalized net's test loss changed by {late:+.1%} over the last half of training"
               + (": it was still falling, so this setting does not train the net past its best test loss, leaves the "
                  "penalty no over-training to undo, and the penalty only slows the fit." if late < 0 else ".")
               + " A smaller gap is not a better net on the test digits unless the test loss falls too.")
    return [(over_seeds("each larger λ overfits less: a smaller gap between training and test loss", results,
                        _each_larger(labels, lambda r, a, b: _gap(r[a]) - _gap(r[b])),
                        "test − train loss: " + ", ".join(f"λ {decay[k]:g} {gap[k]:.3f}" for k in labels),
                        lecture=True, cite="002:409, 002:411, 002:415"), "The gap did not shrink at every step of λ."),
            (over_seeds(f"λ = {decay[small]:g} also improves the generalization: a lower test loss", results,
                        lambda r: lower(r[small].final("test_loss"), r["none"].final("test_loss")),
                        f"test loss: λ {decay[small]:g} {loss[small][1]:.3f}, none {loss['none'][1]:.3f}",
                        lecture=True, cite="002:389, 002:409"), held_up),
            (over_seeds("L1 overfits less too: a smaller gap than without a penalty", results,
                        lambda r: _gap(r["none"]) - _gap(r["l1"]),
                        f"test − train loss: L1 {gap['l1']:.3f}, none {gap['none']:.3f}", lecture=True,
                        cite="002:415"),
             f"L1 did not narrow the gap (L1 {gap['l1']:.3f}, none {gap['none']:.3f}).")]


def _underfits(results: dict[str, RunResult], decay: dict[str, float]) -> list[Finding]:
    """The largest λ underfits: its training loss stays over ``LEARNED``·ln C and its test accuracy falls."""
    largest = list(decay)[-1]
    learned = LEARNED * ln_classes(results["none"])
    train = results[largest].final("train_loss")
    accuracy = {k: results[k].final("test_accuracy") for k in ("none", largest)}
    return [(over_seeds(f"too large a λ ({decay[largest]:g}) underfits: the training loss stays high", results,
                        lambda r: r[largest].final("train_loss") - learned,
                        f"train loss {train:.3f} (not learned: over {learned:.3f}, half of ln C)", lecture=True,
                        cite="002:409"),
             f"Even λ = {decay[largest]:g} fits the training set (train loss {train:.3f})."),
            (over_seeds("and the test accuracy falls", results,
                        lambda r: r["none"].final("test_accuracy") - r[largest].final("test_accuracy"),
                        f"final test accuracy: λ {decay[largest]:g} {accuracy[largest]:.1%}, none "
                        f"{accuracy['none']:.1%}", lecture=True, cite="002:409"),
             f"λ = {decay[largest]:g} kept the test accuracy ({accuracy[largest]:.1%}, none {accuracy['none']:.1%}).")]


@check("none", "l1")
def weight_decay_tradeoff(results: dict[str, RunResult], out: Path) -> Verdict:
    """tanh on the small training set, each larger L2 λ: smaller weights, smaller Z, tanh nearer linear, a smaller
    train/test gap; the smallest λ > 0 lowers the test loss; the largest underfits (train loss over
    ``LEARNED``·ln C, test accuracy down); L1 narrows the gap; each decided over seeds, "each larger" on its
    weakest step."""
    decay = _penalties(results)
    found = _weights_shrink(results, decay) + _overfits_less(results, decay) + _underfits(results, decay)
    parts = [p for p, _ in found]
    passed = holds(parts, *results.values())
    none, cfg = results["none"], results["none"].config
    setup = (f"{cfg['data']['max_train']} training digits, tested on the {cfg['data']['test_fraction']:.0%} held out, "
             f"tanh and Xavier init, {cfg['model']['depth']}×{cfg['model']['width']}, {none.summary.get('steps')} "
             f"steps of {cfg['optimizer']['name']} (lr {cfg['optimizer']['lr']:g})")
    saturated = ", ".join(f"λ {v:g} {np.nanmean(results[k].stat('saturated_fraction', -1)):.2%}"
                          for k, v in decay.items())
    measured = {f"λ {v:g}": results[k] for k, v in decay.items()} | {"L1": results["l1"]}
    return Verdict(
        passed, "; ".join(f"{k}: gap {_gap(r):.3f}, test accuracy {r.final('test_accuracy'):.1%}"
                          for k, r in measured.items()),
        f"Setup: the dropout experiment's small training set with tanh: {setup}. The variants differ only in their "
        f"penalty and train as one stacked group. Weight decay λ adds λ·θ to every gradient (of the weights and "
        f"the biases, where the notes penalize w alone, 002:395): the gradient of (λ/2)·Σθ², the notes' L2 term "
        f"with their λ = our λ/2. L1 adds λ₁·sign(w) to the weights' gradients (λ₁ = "
        f"{results['l1'].config['trainer']['l1']:g}). Units saturated (within {cfg['probe']['saturation_margin']:.0%} "
        f"of tanh's range from ±1) at the last probe: {saturated}. The notes' \"nearer linear\" is read from tanh's "
        f"mean slope, to which every unit counts, not only those at the ends. \"Each larger λ\" is decided on its "
        f"weakest step: a seed's effect is the smallest over neighbouring λ.",
        [comparison_figure(results, "L2 weight decay λ and L1 on a small training set", out / "comparison.png")],
        _findings(found), parts=parts)
