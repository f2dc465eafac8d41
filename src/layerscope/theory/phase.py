"""The order-to-chaos phase diagram of a wide MLP at initialization (Poole et al. 2016, Fig. 2).

The (σ_w², σ_b²) plane colored by ln χ₁, χ₁ = σ_w² E_z[φ'(√q* z)²]: blue is ordered (χ₁ < 1, nearby
inputs converge), red chaotic (χ₁ > 1, they decorrelate), and the black line χ₁ = 1 between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from layerscope.files import replacing
from layerscope.theory.meanfield import chi_1, phase_diagram

# 29 x 13 points take about 0.5 s of quadrature for tanh on a 2-core CPU; ln χ₁ is smooth in both
# variances, so Gouraud shading between the points shows no grid. σ_b² is spaced quadratically: the
# critical line turns fastest near σ_b² = 0 (for tanh it leaves σ_w² = 1 there with slope ∞ in σ_w²).
_POINTS_W2, _POINTS_B2 = 29, 13


def _ranges(point: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """σ_w² over [0.5, 4] and σ_b² over [0, 0.3], widened to take in ``point``."""
    w, b = point
    sigma_w2 = np.linspace(min(0.5, 0.9 * w), max(4.0, 1.1 * w), _POINTS_W2)
    sigma_b2 = max(0.3, 1.1 * b) * np.linspace(0.0, 1.0, _POINTS_B2) ** 2
    return sigma_w2, sigma_b2


def _name(activation: str, params: Mapping[str, Any] | None) -> str:
    """'leaky_relu (negative_slope=0.2)': the activation with its parameters."""
    extra = ", ".join(f"{k}={v}" for k, v in (params or {}).items() if k != "name")
    return f"{activation} ({extra})" if extra else activation


def _critical_label(critical: np.ndarray, sigma_w2: np.ndarray) -> str:
    """The legend entry of the critical line, saying where it is when it lies off the plot."""
    if np.any((critical >= sigma_w2[0]) & (critical <= sigma_w2[-1])):
        return "critical line χ₁ = 1"
    finite = critical[np.isfinite(critical)]
    where = f"σ_w² ≈ {finite[0]:.3g}" if finite.size else "σ_w² > 1e4"
    return f"critical line χ₁ = 1 at {where}: off this plot"


CRITICAL = 1e-3  # |χ₁ − 1| below this is on the critical line (He + ReLU: χ₁ = 1 to rounding)


def phase_name(chi: float) -> str:
    """critical (χ₁ = 1 within ``CRITICAL``), ordered (χ₁ < 1) or chaotic (χ₁ > 1)."""
    return "critical" if abs(chi - 1) < CRITICAL else ("ordered" if chi < 1 else "chaotic")


def phase_figure(activation: str, params: Mapping[str, Any] | None, point: tuple[float, float],
                 path: Path | str) -> Path:
    """Draw ln χ₁ over (σ_w², σ_b²) with the critical line and ``point`` = (σ_w², σ_b²); save a 150 dpi PNG."""
    sigma_w2, sigma_b2 = _ranges(point)
    diagram = phase_diagram(activation, params, sigma_w2, sigma_b2)
    log_chi = np.log(diagram["chi_1"])
    low, high = float(np.nanmin(log_chi)), float(np.nanmax(log_chi))
    norm = TwoSlopeNorm(0.0, low, high) if low < 0 < high else Normalize(-max(-low, high), max(-low, high))
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(sigma_w2, sigma_b2, log_chi, shading="gouraud", cmap="RdBu_r", norm=norm)
    bar = fig.colorbar(mesh, ax=ax)
    bar.set_label("ln χ₁   (< 0 ordered, > 0 chaotic)", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    critical = diagram["critical_sigma_w2"]
    ax.plot(critical, sigma_b2, "k-", lw=2, label=_critical_label(critical, sigma_w2))
    chi = chi_1(activation, params, *point)
    ax.plot(*point, marker="*", ms=15, color="gold", mec="black", ls="none",
            label=f"(σ_w², σ_b²) = ({point[0]:g}, {point[1]:g})")
    ax.annotate(f"χ₁ = {chi:.3g}\n{phase_name(chi)}", point, xytext=(9, 6),
                textcoords="offset points", fontsize=9, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    ax.set_xlim(sigma_w2[0], sigma_w2[-1])
    ax.set_ylim(sigma_b2[0], sigma_b2[-1])
    ax.set_xlabel("σ_w²   (weight variance × fan_in)", fontsize=10)
    ax.set_ylabel("σ_b²   (bias variance)", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    ax.set_title(f"Order-to-chaos phase diagram: {_name(activation, params)}", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    return path
