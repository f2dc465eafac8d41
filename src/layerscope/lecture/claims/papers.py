"""The papers behind the lecture, each a grid or pair of runs with the figure that made its point: trainability
against depth (Schoenholz et al. 2017), the 30-layer ReLU net (He et al. 2015), saturation and initialization
(Glorot & Bengio 2010). A statement the runs do not bear out CONTRADICTS (the paper); a FAIL is the tool's own."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from layerscope.data.datasets import load_data
from layerscope.lecture import paper_figures
from layerscope.lecture.claims.finite_width import (
    allowed_distance,
    finite_width_backward,
    finite_width_stds,
    ratio_per_layer,
)
from layerscope.lecture.claims.initialization import hidden_sigma_w2
from layerscope.lecture.claims.thresholds import CONFIDENCE_Z
from layerscope.lecture.claims.verdict import Part, Verdict, check, fmt, holds, over_seeds, part
from layerscope.runs.results import STEP_WINDOW, RunResult
from layerscope.theory.meanfield import xi_c
from layerscope.theory.prediction import init_variances

SCHOENHOLZ = "Schoenholz et al. 2017, §5 and Fig. 6"
HE = "He et al. 2015, §2.2 and Fig. 3"
GLOROT_SIGMOID = "Glorot & Bengio 2010, §3.1 and Fig. 2"
GLOROT_TANH = "Glorot & Bengio 2010, §3.2 and Fig. 3"
GLOROT_GRADIENTS = "Glorot & Bengio 2010, §4.2.2 and Fig. 7"

BOUND = 6.0
"""The trainable region's depth bound in units of ξ_c (Schoenholz et al.: "about 6 ξ_c")."""


# ---------------------------------------------------------------- trainability (Schoenholz et al. 2017)

def cells(results: dict[str, RunResult]) -> list[dict]:
    """Every run of the grid as (depth, σ_w², σ_b², seed, train_accuracy, status), in the grid's order."""
    rows = []
    for result in results.values():
        for run in result.seeds or [result]:
            cfg = run.config
            width = cfg["model"]["width"]
            sigma_w2, sigma_b2 = (v[0] for v in init_variances(cfg["init"], cfg["activation"]["name"],
                                                                cfg["activation"], [width], [width]))
            rows.append({"depth": cfg["model"]["depth"], "sigma_w2": round(sigma_w2, 4), "sigma_b2": sigma_b2,
                         "seed": cfg["trainer"]["seed"], "train_accuracy": run.final("train_accuracy"),
                         "status": run.status})
    return rows


def chance(result: RunResult) -> tuple[float, float]:
    """(the best constant guess's training accuracy, the accuracy a net at chance stays under): the largest class's
    share of the training set, plus ``CONFIDENCE_Z`` binomial standard deviations of an epoch's accuracy."""
    cfg = result.config
    labels = load_data(OmegaConf.create(cfg["data"]), cfg["trainer"]["seed"]).y_train.numpy()
    share = float(np.bincount(labels).max() / len(labels))
    return share, share + CONFIDENCE_Z * math.sqrt(share * (1 - share) / len(labels))


def half_way_depth(depths: np.ndarray, accuracy: np.ndarray, level: float) -> float:
    """The depth where accuracy first falls to ``level`` going deeper, interpolated between grid depths; -inf if
    already below at the shallowest, +inf if never within the grid."""
    if accuracy[0] <= level:
        return -math.inf
    for i in range(1, len(depths)):
        if accuracy[i] <= level:
            return float(depths[i - 1] + (accuracy[i - 1] - level) / (accuracy[i - 1] - accuracy[i])
                         * (depths[i] - depths[i - 1]))
    return math.inf


def bound_holds(depth: float, xi: float, lowest: float, deepest: float) -> bool:
    """Whether a half-way depth (±inf: beyond the grid's ``lowest``/``deepest`` depth) can lie in [ξ_c, 6 ξ_c]."""
    if depth == -math.inf:
        return xi <= lowest
    if depth == math.inf:
        return BOUND * xi >= deepest
    return xi <= depth <= BOUND * xi


@check()
def trainability(results: dict[str, RunResult], out: Path) -> Verdict:
    """Training accuracy over (depth, σ_w²) against ξ_c: shallower than ξ_c trains beyond half-way from chance to the
    grid's best; deeper than 6 ξ_c stays at chance (binomial tolerance); each σ_w²'s half-way depth in [ξ_c, 6 ξ_c]."""
    rows = cells(results)
    first = next(iter(results.values()))
    activation = first.config["activation"]
    sigma_b2 = rows[0]["sigma_b2"]
    xi = {s: xi_c(activation["name"], activation, s, sigma_b2) for s in sorted({r["sigma_w2"] for r in rows})}
    done = [r for r in rows if r["status"] in ("completed", "diverged") and np.isfinite(r["train_accuracy"])]
    if not done:
        return Verdict(False, f"none of {len(rows)} cells trained", "No run of the grid finished an epoch: their "
                       "folders' train.log say why (a dataset that could not be read, for one).")
    share, at_chance = chance(first)
    best = max(r["train_accuracy"] for r in done)
    level = share + (best - share) / 2
    shallow = [r for r in done if r["depth"] < xi[r["sigma_w2"]]]
    deep = [r for r in done if r["depth"] > BOUND * xi[r["sigma_w2"]]]
    depths = np.array(sorted({r["depth"] for r in done}), dtype=float)
    halves = {}
    for s in xi:
        mean = [np.mean([r["train_accuracy"] for r in done if r["sigma_w2"] == s and r["depth"] == d]) for d in depths]
        halves[s] = half_way_depth(depths, np.array(mean), level)
    placed = {s: bound_holds(d, xi[s], depths[0], depths[-1]) for s, d in halves.items()}
    worst_shallow = min(shallow, key=lambda r: r["train_accuracy"], default=None)
    worst_deep = max(deep, key=lambda r: r["train_accuracy"], default=None)
    parts = [
        part("cells shallower than ξ_c train well above chance (beyond half-way from chance to the best cell)",
             bool(shallow) and all(r["train_accuracy"] >= level for r in shallow),
             f"{len(shallow)} cells; lowest {_cell(worst_shallow)}; half-way {level:.3f} (chance {share:.3f}, best "
             f"{best:.3f})", lecture=True, cite=SCHOENHOLZ),
        part("cells deeper than 6 ξ_c stay at chance",
             bool(deep) and all(r["train_accuracy"] <= at_chance for r in deep),
             f"{len(deep)} cells; highest {_cell(worst_deep)}; at chance: under {at_chance:.3f} (the largest class "
             f"{share:.3f} + {CONFIDENCE_Z:g} binomial sd)", lecture=True, cite=SCHOENHOLZ),
        part("for each σ_w² the depth where accuracy falls half-way to chance lies between ξ_c and 6 ξ_c",
             all(placed.values()),
             "; ".join(f"σ_w² {s:g}: {_depth(halves[s])} in [{xi[s]:.3g}, {BOUND * xi[s]:.3g}]"
                       + ("" if placed[s] else " NO") for s in xi), lecture=True, cite=SCHOENHOLZ)]
    figure = paper_figures.trainability_figure(rows, xi, sigma_b2, activation, halves, out / "trainability.png")
    table = paper_figures.write_cells(rows, out / "trainability.csv")
    failed = [r for r in rows if r not in done]
    passed = holds(parts) and not failed
    return Verdict(
        passed, f"{len(done)} cells trained; half-way depths " + ", ".join(
            f"{_depth(halves[s])} at σ_w² {s:g} (ξ_c {xi[s]:.3g})" for s in xi),
        f"Training accuracy of the last epoch for each (depth, σ_w²) cell ({table.name} beside the figure). ξ_c is "
        f"layerscope's own mean-field correlation depth for tanh at σ_b² = {sigma_b2:.3g} (theory/meanfield.py "
        f"xi_c); it diverges at the order-to-chaos transition, where every depth of the grid trains. The half-way "
        f"level is half-way from chance (the largest class's share, {share:.3f}) to the best cell ({best:.3f}); "
        f"a cell at chance stays under {at_chance:.3f}." + (f" {len(failed)} runs did not complete." if failed else ""),
        [figure], _contradicts(parts, _budget(first.config)), None, parts)


def _cell(row: dict | None) -> str:
    return "none" if row is None else (f"{row['train_accuracy']:.3f} at depth {row['depth']}, σ_w² "
                                       f"{row['sigma_w2']:g}")


def _depth(depth: float) -> str:
    return {math.inf: "beyond the grid", -math.inf: "above the grid"}.get(depth, f"{depth:.1f}")


def _contradicts(parts: list[Part], why: str = "") -> str | None:
    """The statements the runs do not bear out, with their numbers (and ``why``); None where none is."""
    found = [p for p in parts if p.outcome not in ("PASS", "INCONCLUSIVE")]
    return ("The runs do not bear out: " + "; ".join(f"{p.statement} ({p.numbers})" for p in found) + f".{why}"
            if found else None)


def _budget(cfg: dict) -> str:
    """Why a trainability statement may not hold here: the grid's own training budget, from its config."""
    return (f" The boundary is a property of the training budget as much as of the net: the paper measured it at its "
            f"own learning rate and training times, and this grid trains at lr {cfg['optimizer']['lr']:g} for "
            f"{cfg['trainer']['max_steps']} steps of batch {cfg['trainer']['batch_size']} (the setup's deviations); "
            f"the figure shows where the accuracy falls against ξ_c and 6 ξ_c.")


# ---------------------------------------------------------------- 30-layer ReLU (He et al. 2015)

HE_FRACTION = 0.8
"""He's training loss falls below this fraction of its start within the run's steps."""
NEAR = 0.01
"""Xavier's training loss stays within this fraction of its start: a net whose top sees no signal learns at most
the class prior, which on balanced digits is its start, ln 10."""


def _start_end(r: RunResult) -> tuple[float, float]:
    """The mean training loss of the first and of the last ``STEP_WINDOW`` steps."""
    _, losses = r.step_curve()
    return float(np.mean(losses[:STEP_WINDOW])), float(np.mean(losses[-STEP_WINDOW:]))


def _decay(r: RunResult) -> tuple[float, float, float]:
    """(measured per-layer std ratio, the theory's, the allowed distance of their logs) at step 0."""
    std, theory = r.stat("activation_std"), r.theory("activation_std")
    ratio, predicted = ratio_per_layer(std), ratio_per_layer(theory)
    logs = np.log([ratio_per_layer(row) for row in finite_width_stds(r.config)])
    return ratio, predicted, float(allowed_distance(logs, math.log(predicted)))


@check("xavier", "he")
def deep_relu(results: dict[str, RunResult], out: Path) -> Verdict:
    """30 ReLU layers: the per-layer std ratio at step 0 matches the theory's √(σ_w²/2) (1/√2 for Xavier, 1 for He)
    within the finite-width tolerance; over seeds, He's loss falls below ``HE_FRACTION`` of its start while Xavier's
    stays within ``NEAR`` of it."""
    xavier, he = results["xavier"], results["he"]
    parts = []
    for name, r in (("Xavier's Var W = 1/n", xavier), ("He's Var W = 2/n", he)):
        ratio, predicted, allowed = _decay(r)
        off = abs(math.log(ratio / predicted)) if ratio > 0 else math.inf
        depth = len(r.stat("activation_std"))
        parts.append(part(f"with {name} the signal's variance changes by the theory's σ_w²/2 per layer",
                          off <= allowed, f"std ratio per layer {ratio:.4f}, theory {predicted:.4f} (variance "
                          f"×{ratio ** (2 * depth):.2g} over {depth} layers, theory ×{predicted ** (2 * depth):.2g}); "
                          f"off by {math.exp(off) - 1:.2%}, allowed {math.exp(allowed) - 1:.2%}", cite=HE))
    (h0, h1), (x0, x1) = _start_end(he), _start_end(xavier)
    steps = int(he.summary["steps"])
    parts += [
        over_seeds(f"with He's init the loss falls below {HE_FRACTION:g} of its start in {steps} steps",
                   results, lambda s: HE_FRACTION - _ratio(s["he"]), f"{h0:.3f} → {h1:.3f} (×{h1 / h0:.2f})",
                   lecture=True, cite=HE),
        over_seeds(f"with Xavier's init the loss stays within {NEAR:.0%} of its start (it does not learn)",
                   results, lambda s: NEAR - abs(1 - _ratio(s["xavier"])),
                   f"{x0:.4f} → {x1:.4f} (×{x1 / x0:.4f})", lecture=True, cite=HE)]
    figure = paper_figures.deep_relu_figure(results, out / "deep_relu.png")
    return Verdict(
        holds(parts, *results.values()),
        f"std ratio per layer Xavier {_decay(xavier)[0]:.3f} (theory 1/√2), He {_decay(he)[0]:.3f} (theory 1); "
        f"loss over {steps} steps: He {h0:.3f} → {h1:.3f}, Xavier {x0:.4f} → {x1:.4f}",
        f"At step 0 each ReLU layer multiplies the forward variance by σ_w²/2 (the mean-field recursion for ReLU; "
        f"σ_w² = fan_in · Var W): ×1/2 a layer with Xavier's 1/n, so the top of {depth} layers receives "
        f"2^-{depth} of the variance, and ×1 with He's 2/n. The tolerance on the per-layer ratio is the theory's "
        f"bias plus {CONFIDENCE_Z:g} standard deviations over fresh draws of each net (finite width: the "
        f"fluctuations of the layers' variances multiply). Xavier's top layer sees an input of std "
        f"{xavier.stat('activation_std')[-1]:.2g}: its logits hardly depend on the image, so the loss stays at the "
        f"class prior's ln 10 and its gradients to the lower layers are as small. The two inits share each seed's "
        f"draws and ReLU is positively homogeneous, so their per-layer ratios differ by exactly √2: one "
        f"finite-width deviation shows in both.",
        [figure], _contradicts(parts), None, parts)


def _ratio(r: RunResult) -> float:
    start, end = _start_end(r)
    return end / start


# ---------------------------------------------------------------- Glorot & Bengio 2010

NEAR_HALF = 0.25
"""Sigmoid: a layer's mean is "near 0.5" within this distance, "driven toward 0" below it: half-way between σ(0)
and the saturation value 0."""
ONSET = 0.02
"""tanh: a layer has started to saturate once this share of its values lies within ``probe.saturation_margin`` of
±1 (at the standard init it starts near 0)."""
FLAT = 0.5
"""Normalized init: "nearly constant" is at most this share of the standard init's change across the layers, in
e-folds of the backward signal's std."""


def top_mean_early(r: RunResult) -> float:
    """Sigmoid: the top hidden layer's mean activation at the probe nearest a quarter of the run's steps."""
    steps, means = r.series("activation_mean")
    return float(means[int(np.argmin(np.abs(steps - steps[-1] / 4))), -1])


def lower_drift(r: RunResult) -> float:
    """Sigmoid: the largest distance from 0.5 of a lower layer's mean activation over every probe."""
    return float(np.nanmax(np.abs(r.series("activation_mean")[1][:, :-1] - 0.5)))


def onsets(r: RunResult) -> np.ndarray:
    """tanh: each layer's first probe step with ``ONSET`` of its values saturated (inf: never)."""
    steps, saturated = r.series("saturated_fraction")
    return np.array([steps[np.argmax(column >= ONSET)] if (column >= ONSET).any() else math.inf
                     for column in saturated.T])


def spreads_from_bottom(r: RunResult) -> bool:
    """tanh: layer 1 saturates first and the onsets come layer after layer upward (at least two layers saturate)."""
    at = onsets(r)
    return bool(np.isfinite(at[:2]).all() and np.all(at[1:] >= at[:-1]))  # never after never is in order


def efolds(r: RunResult) -> float:
    """ln(top layer's / first layer's backward-signal std) at step 0: how much the gradient shrinks toward the
    input."""
    backward = r.stat("backward_std")
    return float(math.log(backward[-1] / backward[0]))


def _backward_decay(r: RunResult) -> tuple[float, float, float]:
    """(measured per-layer backward std ratio, the theory's, the allowed distance of their logs) at step 0."""
    backward, theory = r.stat("backward_std"), r.theory("backward_std")
    ratio, predicted = ratio_per_layer(backward), ratio_per_layer(theory)
    logs = np.log([ratio_per_layer(row) for row in finite_width_backward(r.config)])
    return ratio, predicted, float(allowed_distance(logs, math.log(predicted)))


@check("sigmoid_standard", "tanh_standard", "softsign_standard", "tanh_normalized")
def glorot_bengio(results: dict[str, RunResult], out: Path) -> Verdict:
    """Glorot & Bengio's three observations: sigmoid's top layer driven to 0 early while the lower ones stay near 0.5,
    tanh's saturation spreading from layer 1 up (softsign saturating less), and at step 0 the gradient shrinking
    toward the input with the standard init (by the theory's factor) but not with the normalized one."""
    sigmoid, tanh, softsign, normalized = (results[k] for k in ("sigmoid_standard", "tanh_standard",
                                                                "softsign_standard", "tanh_normalized"))
    ratio, predicted, allowed = _backward_decay(tanh)
    off = abs(math.log(ratio / predicted)) if ratio > 0 else math.inf
    standard_e, normalized_e = efolds(tanh), efolds(normalized)
    steps = int(sigmoid.summary["steps"])
    at = onsets(tanh)
    parts = [
        over_seeds(f"sigmoid, standard init: the top hidden layer's mean is driven toward 0 early (below "
                   f"{0.5 - NEAR_HALF:g} by step {steps // 4})", results,
                   lambda s: (0.5 - NEAR_HALF) - top_mean_early(s["sigmoid_standard"]),
                   f"top layer's mean {top_mean_early(sigmoid):.3f}; at the end {sigmoid.stat('activation_mean', -1)[-1]:.3f}",
                   lecture=True, cite=GLOROT_SIGMOID),
        over_seeds(f"sigmoid, standard init: the lower layers' means stay near 0.5 (within {NEAR_HALF:g})", results,
                   lambda s: NEAR_HALF - lower_drift(s["sigmoid_standard"]),
                   f"largest distance {lower_drift(sigmoid):.3f}; means at the end "
                   f"{fmt(sigmoid.stat('activation_mean', -1))}", lecture=True, cite=GLOROT_SIGMOID),
        over_seeds("tanh, standard init: saturation starts in layer 1 and spreads up layer by layer", results,
                   lambda s: 1.0 if spreads_from_bottom(s["tanh_standard"]) else -1.0,
                   "onset step per layer (" + f"{ONSET:.0%} saturated): " + ", ".join(
                       "never" if math.isinf(a) else f"{a:.0f}" for a in at), lecture=True, cite=GLOROT_TANH),
        over_seeds("softsign saturates less than tanh (standard init, mean over layers at the end)", results,
                   lambda s: float(np.nanmean(s["tanh_standard"].stat("saturated_fraction", -1))
                                   - np.nanmean(s["softsign_standard"].stat("saturated_fraction", -1))),
                   f"tanh {fmt(tanh.stat('saturated_fraction', -1))}; softsign "
                   f"{fmt(softsign.stat('saturated_fraction', -1))}", lecture=True, cite=GLOROT_TANH),
        part("standard init: at step 0 the back-propagated gradient shrinks toward the input, by the theory's "
             "factor per layer", ratio > 1 and off <= allowed,
             f"backward std {fmt(tanh.stat('backward_std'))}: ×{ratio:.3f} a layer upward, theory ×{predicted:.3f}; "
             f"off by {math.exp(off) - 1:.1%}, allowed {math.exp(allowed) - 1:.1%}", lecture=True,
             cite=GLOROT_GRADIENTS),
        part(f"normalized init: its spread stays nearly constant (at most {FLAT:g} of the standard init's change)",
             abs(normalized_e) <= FLAT * abs(standard_e),
             f"{normalized_e:.2f} e-folds from layer 1 to the top, standard {standard_e:.2f}", lecture=True,
             cite=GLOROT_GRADIENTS)]
    figure = paper_figures.glorot_bengio_figure(results, out / "glorot_bengio.png")
    return Verdict(
        holds(parts, *results.values()),
        f"sigmoid's top layer mean {top_mean_early(sigmoid):.2f} at step {steps // 4}; tanh onsets "
        + ", ".join("never" if math.isinf(a) else f"{a:.0f}" for a in at)
        + f"; backward e-folds standard {standard_e:.2f}, normalized {normalized_e:.2f}",
        f"The standard init's σ_w² = 1/3 makes each tanh layer multiply the backward signal by about √(σ_w² E[φ'²]) "
        f"≈ {1 / predicted:.2f} going down (the mean-field theory's χ; the tolerance is its finite-width spread "
        f"over fresh draws, bias plus {CONFIDENCE_Z:g} sd). The normalized init's σ_w² = 2 n/(n_in + n_out) = 1 for "
        f"square layers keeps χ near 1. Sigmoid's top layer goes to 0 because the output layer learns first and "
        f"pushes it there (the paper's explanation: a saturated top layer makes the output rely on its biases).",
        [figure], _contradicts(parts), None, parts)
