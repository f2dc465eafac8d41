"""The order-to-chaos picture of a wide MLP at initialization (Poole et al. 2016, Schoenholz et al. 2017): the fixed
point q*, the correlation map and its fixed point c*, the slopes χ₁ and χ_c, the depth scales ξ_q and ξ_c, and the
critical line χ₁ = 1 in the (σ_w², σ_b²) plane. q follows q_l = σ_w² · E_z[φ(√q_{l-1} z)²] + σ_b², z ~ N(0, 1).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from layerscope.nets.activations import activation_fn
from layerscope.nets.gaussian import normal_grid

# Order and chaos: Poole et al. 2016, "Exponential expressivity in deep neural networks through
# transient chaos" (P16), and Schoenholz et al. 2017, "Deep information propagation" (S17). The
# length map q ← σ_w² E_z[φ(√q z)²] + σ_b² settles at q*; there two inputs of correlation c map to
#     c ← (σ_w² E[φ(u1) φ(u2)] + σ_b²) / q*,   u1 = √q* z1,  u2 = √q* (c z1 + √(1 − c²) z2),
# whose slope at c = 1 is χ₁. χ₁ < 1: ordered, every pair of inputs ends up equal (c* = 1);
# χ₁ > 1: chaotic, nearby inputs decorrelate to c* < 1. χ₁ = 1 is the order-to-chaos boundary.

_Q_ZERO = 1e-30  # q* below this is returned as 0: the signal dies (σ_b² = 0, ordered)
_Q_BLOWUP = 1e4  # q past 1e4 · (q0 + σ_w² + σ_b²) is taken to grow without bound (ReLU-like φ, σ_w² large)
@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside: many small ops (≤ 1e6 points), where on a busy 2-core machine a second thread only
    waits (each op up to ~50x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def derivatives(phi, h: np.ndarray, order: int) -> list[np.ndarray]:
    """[φ(h), φ'(h), ..., φ^(order)(h)] by autograd (0 where a derivative is constant, as ReLU's φ'')."""
    with one_thread():
        x = torch.from_numpy(np.array(h, dtype=np.float64)).requires_grad_(order > 0)
        out = [phi(x)]
        for k in range(order):
            y = out[-1]
            d = torch.autograd.grad(y.sum(), x, create_graph=k + 1 < order)[0] if y.requires_grad else None
            out.append(torch.zeros_like(x) if d is None else d)
        return [y.detach().numpy() for y in out]


def _root(f, lo: float, hi: float, f_lo: float, f_hi: float, rtol: float = 1e-12) -> float:
    """x in [lo, hi] with f(x) = 0, given f(lo), f(hi) of opposite signs: regula falsi, Illinois variant.

    A bisection that places each cut where the secant crosses 0, so it keeps a bracket and converges
    in about ten evaluations of a smooth f.
    """
    side = 0
    for _ in range(200):
        if f_lo == 0 or f_hi == 0:
            return lo if f_lo == 0 else hi
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if not lo < x < hi or hi - lo <= rtol * max(abs(lo), abs(hi)):
            return min(max(x, lo), hi)
        fx = f(x)
        if (fx > 0) == (f_lo > 0):
            lo, f_lo = x, fx
            f_hi, side = (f_hi / 2 if side == -1 else f_hi), -1  # the same end moved twice: halve the other
        else:
            hi, f_hi = x, fx
            f_lo, side = (f_lo / 2 if side == 1 else f_lo), 1
    return (lo + hi) / 2


def _length_map(phi, sigma_w2: float, sigma_b2: float, q: float) -> float:
    h, w = normal_grid(q)
    return sigma_w2 * float(w @ derivatives(phi, h, 0)[0] ** 2) + sigma_b2


def length_map(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float,
               q: float) -> float:
    """q ← σ_w² E_z[φ(√q z)²] + σ_b², one layer of the variance recursion (P16 §2, S17 §2)."""
    return _length_map(activation_fn(activation, params), sigma_w2, sigma_b2, q)


def _q_star(phi, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    gap = lambda q: _length_map(phi, sigma_w2, sigma_b2, q) - q  # noqa: E731
    g0 = gap(q0)
    if g0 > 0:  # q grows: the fixed point lies above, past every image f(q) of a q below it
        lo, g_lo, hi = q0, g0, 2 * (q0 + g0)
        while (g_hi := gap(hi)) > 0:
            lo, g_lo, hi = hi, g_hi, 2 * (hi + g_hi)
            if hi > _Q_BLOWUP * (q0 + sigma_w2 + sigma_b2):
                return math.inf
    elif g0 < 0:  # q shrinks: the fixed point lies below, under every image f(q) of a q above it
        hi, g_hi, lo = q0, g0, (q0 + g0) / 2
        while (g_lo := gap(lo)) < 0:
            hi, g_hi, lo = lo, g_lo, (lo + g_lo) / 2
            if lo < _Q_ZERO:
                return 0.0
    else:
        return q0
    return _root(gap, lo, hi, g_lo, g_hi)


def fixed_point_q(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float,
                  q0: float = 1.0) -> float:
    """q* = σ_w² E_z[φ(√q* z)²] + σ_b²: where the length map iterated from q0 settles (P16 §2).

    The map is increasing in q (for every registered φ), so its iterates move monotonically to the
    first fixed point in their direction; that point is bracketed and solved for directly, to a
    relative 1e-12. Returns 0.0 where q falls below 1e-30 (σ_b² = 0 in the ordered phase: the signal
    dies) and inf where q passes 1e4 · (q0 + σ_w² + σ_b²): the map diverges (ReLU with σ_w² > 2, or
    σ_w² = 2 and σ_b² > 0). A bounded φ never gets that far, its q* ≤ σ_w² sup φ² + σ_b²; a finite q*
    beyond it needs a ReLU-like φ within about 1e-4 of divergence.
    """
    return _q_star(activation_fn(activation, params), sigma_w2, sigma_b2, q0)


def _chi_1(phi, sigma_w2: float, q: float) -> float:
    if math.isinf(q):  # E[φ'(√q z)²] → (φ'(+∞)² + φ'(−∞)²) / 2
        _, d = derivatives(phi, np.array([-1e6, 1e6]), 1)
        return sigma_w2 * float(np.mean(d**2))
    h, w = normal_grid(max(q, _Q_ZERO))
    return sigma_w2 * float(w @ derivatives(phi, h, 1)[1] ** 2)


def chi_1(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float,
          q: float | None = None) -> float:
    """χ₁ = σ_w² E_z[φ'(√q* z)²], the slope of the correlation map at c = 1 (P16 §3, S17 §2).

    q defaults to q*. At q* = 0 it is the limit q → 0 (σ_w²/2 for ReLU, σ_w² φ'(0)² for smooth φ); at
    q* = inf the limit σ_w² (φ'(+∞)² + φ'(−∞)²)/2, so ReLU has χ₁ = σ_w²/2 for every σ_b².
    """
    phi = activation_fn(activation, params)
    return _chi_1(phi, sigma_w2, _q_star(phi, sigma_w2, sigma_b2) if q is None else q)


def _pair(phi, q: float, c: float, order: int):
    """Weights and [φ, φ', ...] at nodes u1 (n1,), u2 (n1, n2) of (u1, u2) ~ N(0, q [[1, c], [c, 1]]).

    u2 given u1 is N(c u1, q (1 − c²)), on a grid per u1 whose panels lie on a lattice through 0, so
    both kink lines u1 = 0 and u2 = 0 are panel edges; c = 1 makes it the point mass u2 = u1. Where φ
    has a kink, E[φ(u2) | u1] bends within √(q (1 − c²)) of u1 = 0: u1's panels there are refined to that.
    """
    spread = q * (1 - c * c)
    u1, w1 = normal_grid(q, panels=200, refine=math.sqrt(spread))
    u2, w2 = normal_grid(spread, c * u1, panels=200)
    return w1, w2, derivatives(phi, u1, order), derivatives(phi, u2, order)


def _correlation(phi, sigma_w2: float, sigma_b2: float, q: float, c: float) -> tuple[float, float]:
    """The correlation map at c and its slope σ_w² E[φ'(u1) φ'(u2)] (Price's theorem: d/dc of the map)."""
    if not 0 <= q < math.inf:
        return math.nan, math.nan
    q = max(q, _Q_ZERO)
    w1, w2, (y1, d1), (y2, d2) = _pair(phi, q, c, 1)
    mean = float((w1 * y1) @ (y2 * w2).sum(1))
    slope = float((w1 * d1) @ (d2 * w2).sum(1))
    return (sigma_w2 * mean + sigma_b2) / q, sigma_w2 * slope


def correlation_map(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float,
                    c: float, q: float | None = None) -> float:
    """c ← (σ_w² E[φ(u1) φ(u2)] + σ_b²) / q*, u1 = √q* z1, u2 = √q* (c z1 + √(1 − c²) z2) (P16 §3, S17 §2).

    q defaults to q* (the limit q → 0 where q* = 0); NaN where q* = inf. The 2-D integral is a
    Gauss-Legendre grid in u1 times one in u2 given u1 (``_pair``); at c = 1 it is the 1-D one, so
    the map returns 1 there to rounding.
    """
    if not -1 <= c <= 1:
        raise ValueError(f"a correlation must lie in [-1, 1], got {c}")
    phi = activation_fn(activation, params)
    q = _q_star(phi, sigma_w2, sigma_b2) if q is None else q
    return _correlation(phi, sigma_w2, sigma_b2, q, c)[0]


def _c_star(phi, sigma_w2: float, sigma_b2: float, q: float, c0: float) -> float:
    """The limit of the correlation map iterated from c0 ∈ [0, 1].

    On [0, 1] the map is a power series in c with coefficients ≥ 0 (Mehler's formula), so it is convex
    and increasing with fixed point c = 1 of slope χ₁. χ₁ ≤ 1: it lies above the diagonal, c* = 1.
    χ₁ > 1: it crosses the diagonal once below 1, at c*, and Newton's method from a point left of c*
    climbs to it monotonically.
    """
    if math.isinf(q):
        return math.nan
    if c0 == 1 or _chi_1(phi, sigma_w2, q) <= 1:
        return 1.0
    c = c0 if _correlation(phi, sigma_w2, sigma_b2, q, c0)[0] >= c0 else 0.0
    for _ in range(200):
        mapped, slope = _correlation(phi, sigma_w2, sigma_b2, q, c)
        if slope >= 1:  # only at c* itself, within rounding
            break
        step = (mapped - c) / (1 - slope)
        c = min(c + step, 1.0)
        if abs(step) < 1e-13:
            break
    return c


def fixed_point_c(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float,
                  c0: float = 0.5, q: float | None = None) -> float:
    """c* = correlation_map(c*): where the correlation map iterated from c0 ∈ [0, 1] settles (P16 §3, S17 §2).

    c* = 1 in the ordered phase (χ₁ ≤ 1), c* < 1 in the chaotic one; NaN where q* = inf.
    """
    if not 0 <= c0 <= 1:
        raise ValueError(f"c0 must lie in [0, 1], got {c0}")
    phi = activation_fn(activation, params)
    q = _q_star(phi, sigma_w2, sigma_b2) if q is None else q
    return _c_star(phi, sigma_w2, sigma_b2, q, c0)


def _chi_c(phi, sigma_w2: float, sigma_b2: float, q: float) -> float:
    return _correlation(phi, sigma_w2, sigma_b2, q, _c_star(phi, sigma_w2, sigma_b2, q, 0.5))[1]


def chi_c(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float,
          q: float | None = None) -> float:
    """χ_c = σ_w² E[φ'(u1*) φ'(u2*)], the slope of the correlation map at c* (S17 §3); = χ₁ where c* = 1."""
    phi = activation_fn(activation, params)
    return _chi_c(phi, sigma_w2, sigma_b2, _q_star(phi, sigma_w2, sigma_b2) if q is None else q)


def _depth(slope: float) -> float:
    """−1/ln(slope): the layers over which a deviation from a fixed point shrinks by e (inf where slope ≥ 1)."""
    if math.isnan(slope):
        return math.nan
    return math.inf if slope >= 1 else 0.0 if slope <= 0 else -1.0 / math.log(slope)


def xi_q(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float) -> float:
    """ξ_q = −1/ln(χ₁ + σ_w² E_z[φ''(√q* z) φ(√q* z)]), so q^l − q* ~ e^{−l/ξ_q} (S17 §3).

    The argument of the log is the slope of the length map at q* (Stein's lemma). NaN where q* = inf.
    """
    phi = activation_fn(activation, params)
    q = _q_star(phi, sigma_w2, sigma_b2)
    if math.isinf(q):
        return math.nan
    h, w = normal_grid(max(q, _Q_ZERO))
    y, d1, d2 = derivatives(phi, h, 2)
    return _depth(sigma_w2 * float(w @ (d1**2 + y * d2)))


def xi_c(activation: str, params: Mapping[str, Any] | None, sigma_w2: float, sigma_b2: float) -> float:
    """ξ_c = −1/ln χ_c, χ_c = σ_w² E[φ'(u1*) φ'(u2*)] at c*, so c^l − c* ~ e^{−l/ξ_c} (S17 §3).

    In the ordered phase c* = 1 and ξ_c = −1/ln χ₁; ξ_c diverges on the critical line χ₁ = 1.
    """
    phi = activation_fn(activation, params)
    return _depth(_chi_c(phi, sigma_w2, sigma_b2, _q_star(phi, sigma_w2, sigma_b2)))


def _critical(phi, sigma_b2: float) -> float:
    excess = lambda w2: _chi_1(phi, w2, _q_star(phi, w2, sigma_b2)) - 1  # noqa: E731
    lo, e_lo, hi = 0.0, -1.0, 0.25  # σ_w² = 0: χ₁ = 0
    while (e_hi := excess(hi)) < 0:
        lo, e_lo, hi = hi, e_hi, 1.25 * hi
        if hi > 1e4:
            return math.nan
    return _root(excess, lo, hi, e_lo, e_hi, rtol=1e-11)


def critical_sigma_w2(activation: str, params: Mapping[str, Any] | None, sigma_b2: float) -> float:
    """The smallest σ_w² where χ₁(σ_w², σ_b²) = 1: the order-to-chaos boundary (P16 Fig. 2, S17 Fig. 1).

    σ_w² is scanned up from 0.25 in steps of 25% until χ₁ ≥ 1, then the crossing is bisected on the
    secant (``_root``). The scan matters: χ₁ need not be monotone (ELU's rises above 1 near σ_w² = 1.2
    and comes back to 1 at σ_w² = 2). NaN if χ₁ < 1 up to σ_w² = 1e4.
    """
    return _critical(activation_fn(activation, params), sigma_b2)


def phase_diagram(activation: str, params: Mapping[str, Any] | None, sigma_w2_grid: Sequence[float],
                  sigma_b2_grid: Sequence[float]) -> dict[str, np.ndarray]:
    """q* and χ₁ = σ_w² E_z[φ'(√q* z)²] on a grid, shape (len(σ_b²), len(σ_w²)); critical σ_w² per σ_b²."""
    w2, b2 = (tuple(np.asarray(grid, dtype=float).tolist()) for grid in (sigma_w2_grid, sigma_b2_grid))
    diagram = _phase_diagram(activation, tuple(sorted((params or {}).items())), w2, b2)
    return {key: value.copy() for key, value in diagram.items()}


@functools.lru_cache(maxsize=16)
def _phase_diagram(activation: str, params: tuple, sigma_w2: tuple[float, ...],
                   sigma_b2: tuple[float, ...]) -> dict[str, np.ndarray]:
    """``phase_diagram``, computed once per process for each activation and grid (~1 s of quadrature): the
    lecture's experiments draw the same diagram for several initializations."""
    phi = activation_fn(activation, dict(params))
    w2, b2 = np.array(sigma_w2), np.array(sigma_b2)
    q = np.array([[_q_star(phi, w, b) for w in w2] for b in b2])
    chi = np.array([[_chi_1(phi, w, qq) for w, qq in zip(w2, row)] for row in q])
    critical = np.array([_critical(phi, b) for b in b2])
    return {"sigma_w2": w2, "sigma_b2": b2, "q_star": q, "chi_1": chi, "critical_sigma_w2": critical}
