"""A stronger node relaxation for GraphL0BnB (an addition; ``relaxation='strengthened'``).

Why. The perspective relaxation (relaxation.py) only convexifies ``λ0·1[θ≠0] + λ2θ²``; with the
small ``λ2`` of the paper's experiments it is close to an ℓ1 penalty of slope ``2sqrt(λ0λ2)`` and
its root bound leaves gaps of 5-15 % (spec §2.9). The loss itself has much more curvature along
each ``θ_ij``; this relaxation moves a provably safe part of it into the binary's convex hull.

Construction. Let ``d = λ_min(S)`` (so ``S − D_i ⪰ 0`` for ``D_i = d·diag(1[j free], j ≠ i)``) and
split column ``i``'s loss ``−log t_i + θ_iᵀSθ_i/t_i`` (``t_i = θ_ii``) into
``−log t_i + θ_iᵀ(S − D_i)θ_i/t_i`` plus ``d θ_ij²/t_i`` for every free pair. Every optimum has
``t_i ∈ [l_i, u_i]``: ``l_i = 1/S_ii`` because the best diagonal given the rest is
``(1 + sqrt(1 + 4S_ii‖r‖²))/(2S_ii)``, and ``u_i`` because each column's term is at least
``−log t_i + t_i·RSS_i^min`` (``RSS_i^min = 1/(S⁻¹)_ii``) and every other column's at least
``1 + log RSS_k^min``, so ``−log t_i + t_i RSS_i^min ≤ UB − Σ_{k≠i}(1 + log RSS_k^min)``. On
``{z ∈ {0,1}, z = 0 ⇒ θ = 0, t ∈ [l, u]}`` the convex envelope of ``dθ²/t`` is
``dθ²/min(t − (1−z)l, z u) ≥ dθ²/(t − (1−z)l)``, exact at ``z = 1``. The free pair's relaxed term is

``Φ_ij = λ0 z + λ2θ²/z + dθ²/(t_i − (1−z)l_i) + dθ²/(t_j − (1−z)l_j)``,  ``|θ| ≤ Mz``,

jointly convex in ``(θ, z, t)`` (quadratics over affine functions) and equal to the true penalty
plus the moved loss at integral points, so the relaxation is exact there and below the objective
everywhere on the box. Block coordinate descent: each ``(θ_ij, z_ij)`` jointly (θ in closed form
for fixed z, golden section on z), each ``t_i`` on ``[l_i, u_i]`` by bisection.

Dual bound. As in relaxation.py, with ``y_i = G_iθ_i`` (``G_iᵀG_i = S − D_i``) and multipliers
``ν_i = 2y_i/t_i``, plus a copy ``τ`` of ``t_i`` and ``t_j`` inside each ``Φ_ij`` with a
multiplier ``m ≥ 0`` (``m = dθ²/(t − (1−z)l)²``, the primal's value). The Lagrangian separates:

* column ``i``: ``min_{t∈[l_i,u_i]} −log t + (c_i − Σ_j m_i^{ij}) t``,
  ``c_i = 2(Sθ_i)_i/t_i − θ_iᵀ(S−D_i)θ_i/t_i²``;
* a fixed-one pair: ``−(h(|w_ij|) − λ0)`` as before; a fixed-zero pair: 0;
* a free pair: ``min_{z, θ, τ ≥ l}`` of ``Φ_ij + w_ijθ + m_iτ_i + m_jτ_j``, with
  ``w_ij = 2((S−D_i)θ_i)_j/t_i + 2((S−D_j)θ_j)_i/t_j``. For fixed (θ, z) the τ-minimum is
  closed-form (``m(1−z)l + 2|θ|sqrt(dm)`` or ``dθ²/(zl) + ml``), for fixed z the θ-minimum of the
  resulting convex piecewise quadratic is closed-form, and the z-minimum of that convex function
  is bracketed by golden section and bounded below by the secant extensions through the bracket.

Every piece is a lower bound whatever ``(Θ, Z)`` is, so ``D`` is a valid bound for any iterate; it
meets the primal value at the relaxation's optimum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _kernels as K
from .problem import GraphProblem
from .relaxation import FREE, ONE, ZERO, RelaxationResult

GOLDEN_ITERS = 60


@dataclass(frozen=True)
class DiagonalBounds:
    d: float
    lo: np.ndarray
    hi: np.ndarray


def diagonal_bounds(prob: GraphProblem, upper_bound: float) -> DiagonalBounds | None:
    """``d``, ``l`` and ``u`` (module docstring) for an incumbent value ``upper_bound``; ``None``
    when ``S`` is singular (``n ≤ p``), where nothing can be moved."""
    S = prob.S
    evals = np.linalg.eigvalsh(S)
    if evals[0] <= 1e-10 * max(1.0, evals[-1]) or not math.isfinite(upper_bound):
        return None
    d = float(evals[0]) * (1.0 - 1e-9)
    lo = 1.0 / prob.S_diag
    rss = 1.0 / np.diag(np.linalg.inv(S))
    base = 1.0 + np.log(rss)
    hi = np.empty(prob.p)
    for i in range(prob.p):
        B = upper_bound - (base.sum() - base[i])
        # larger root of −log t + t·rss_i = B (the left side is minimal, 1 + log rss_i ≤ B, at 1/rss_i)
        a, b = 1.0 / rss[i], 2.0 / rss[i]
        while -math.log(b) + b * rss[i] < B:
            b *= 2.0
        for _ in range(200):
            mid = 0.5 * (a + b)
            if -math.log(mid) + mid * rss[i] < B:
                a = mid
            else:
                b = mid
        hi[i] = max(b * (1 + 1e-12), lo[i])
    return DiagonalBounds(d=d, lo=lo, hi=hi)


def solve_strengthened(prob: GraphProblem, kinds: np.ndarray, bounds: DiagonalBounds, warm_Theta: np.ndarray,
                       warm_Z: np.ndarray | None = None, rel_tol: float = 1e-4, max_sweeps: int = 1000,
                       stop_above: float = math.inf, check_every: int = 5) -> RelaxationResult:
    """Block CD on the strengthened relaxation of the node ``kinds`` until the primal-dual gap
    ``(primal − dual)/max(1, |primal|)`` ≤ ``rel_tol``, the dual reaches ``stop_above`` or
    ``max_sweeps``; ``z`` of the result is the relaxed indicator."""
    p = prob.p
    off = ~np.eye(p, dtype=bool)
    kinds = np.ascontiguousarray(kinds, dtype=np.int8)
    Theta = np.where((kinds != ZERO) | ~off, warm_Theta, 0.0)
    np.clip(Theta, -prob.M, prob.M, out=Theta, where=off)
    diag = np.clip(np.diag(Theta), bounds.lo, bounds.hi)
    Theta[np.diag_indices(p)] = diag
    Z = np.zeros((p, p)) if warm_Z is None else np.array(warm_Z, dtype=float)
    Z = np.where(kinds == ONE, 1.0, np.where((kinds == ZERO) | (Theta == 0), 0.0, Z))
    # an indicator must cover its θ (|θ| ≤ Mz); start the others from the perspective's choice
    covered = (Z > 0) if math.isinf(prob.M) else (Z * prob.M >= np.abs(Theta))
    need = (kinds == FREE) & (Theta != 0) & ~covered
    Z[need] = np.minimum(1.0, np.abs(Theta[need]) / min(prob.M, prob.ratio))
    np.fill_diagonal(Z, 0.0)
    Rt = prob.residuals(Theta)
    primal, dual, sweeps, last = math.inf, -math.inf, 0, math.inf
    while sweeps < max_sweeps:
        for _ in range(check_every):
            K.sr_sweep(prob.Yt, Rt, Theta, Z, prob.S_diag, kinds, prob.lambda0, prob.lambda2, prob.M, prob.ratio,
                       prob.threshold, bounds.d, bounds.lo, bounds.hi, GOLDEN_ITERS)
        sweeps += check_every
        primal = float(K.sr_primal(Rt, Theta, Z, kinds, prob.lambda0, prob.lambda2, bounds.d, bounds.lo))
        stalled = abs(primal - last) <= 0.1 * rel_tol * max(1.0, abs(primal)) or sweeps >= max_sweeps
        last = primal
        dual = float(K.sr_dual(prob.Yt, Rt, Theta, Z, kinds, prob.lambda0, prob.lambda2, prob.M, bounds.d,
                               bounds.lo, bounds.hi, prob.threshold, GOLDEN_ITERS, stalled))
        if (primal - dual) / max(1.0, abs(primal)) <= rel_tol or dual >= stop_above or stalled:
            break
    z = np.where(kinds == ONE, 1.0, np.where(kinds == ZERO, 0.0, Z))
    np.fill_diagonal(z, 0.0)
    return RelaxationResult(Theta=Theta, primal=primal, dual=dual, z=z, sweeps=sweeps, kkt_rounds=0)
