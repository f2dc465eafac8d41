"""Chapter: losses. Cross-entropy trains faster than MSE on the same network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layerscope.lecture.claims.verdict import Verdict, check, fmt, holds, over_seeds, part
from layerscope.lecture.figures import comparison_figure
from layerscope.runs.results import RunResult
from layerscope.theory.prediction import init_variances


@check("cross_entropy", "mse")
def cross_entropy_beats_mse(results: dict[str, RunResult], out: Path) -> Verdict:
    """From saturated sigmoid outputs: MSE's weight gradients are smaller than cross-entropy's at every layer at
    step 0, and after the same steps its test accuracy is lower."""
    ce, mse = results["cross_entropy"], results["mse"]
    ratio = mse.stat("weight_grad_norm") / ce.stat("weight_grad_norm")
    accuracy = {label: r.final("test_accuracy") for label, r in results.items()}
    classes = ce.summary.get("num_classes", 10)
    parts = [part("MSE's gradient is small where the outputs saturate", bool(np.all(ratio < 1)),
                  f"weight-gradient norm MSE / cross-entropy at step 0: {fmt(ratio)} per layer", cite="002:279, 002:283"),
             over_seeds("MSE learns slowly", results,
                        lambda r: r["cross_entropy"].final("test_accuracy") - r["mse"].final("test_accuracy"),
                  f"test accuracy after {mse.summary.get('steps')} steps: MSE {accuracy['mse']:.1%}, "
                  f"cross-entropy {accuracy['cross_entropy']:.1%} (chance {1 / classes:.0%})", cite="002:283, 002:285")]
    passed = holds(parts, *results.values())
    layer10 = ce.stat("activation_std")[-1]
    return Verdict(
        passed, f"gradient ratio MSE/CE {ratio.min():.2g}–{ratio.max():.2g}; test accuracy MSE "
                f"{accuracy['mse']:.1%}, cross-entropy {accuracy['cross_entropy']:.1%}",
        f"With σ_w² = {init_variances(ce.config['init'], 'relu', ce.config['activation'], [1], [1])[0][0]:.2f} the "
        f"ReLU signal grows every layer (activation std {layer10:.2g} at layer 10), so the logits start large and "
        f"most sigmoid outputs sit at 0 or 1. Per output, MSE on σ(z) has the gradient 2 (σ(z) − t) σ'(z), and "
        f"σ'(z) ≈ e^−|z| there; binary cross-entropy's is σ(z) − t, the same error without the vanishing factor. "
        f"Loss curves: " + "; ".join(f"{k} {fmt(r.curve()[1])}" for k, r in results.items()) + ".",
        [comparison_figure(results, "Cross-entropy vs MSE from saturated sigmoid outputs", out / "comparison.png")],
        parts=parts)
