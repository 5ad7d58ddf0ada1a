"""The perspective relaxation of a branch-and-bound node and its dual lower bound.

A node fixes some pairs to ``z_ij = 0`` (``θ_ij = 0``) and some to ``z_ij = 1`` (penalty
``λ0 + λ2θ²``); the other pairs are free. The relaxation replaces a free pair's
``λ0·1[θ≠0] + λ2θ²`` by its convex envelope on ``|θ| ≤ M``, the perspective
``ψ(θ) = min_{z ∈ [|θ|/M, 1]} λ0 z + λ2 θ²/z`` (spec §2.4). The smooth part
``f(Θ) = Σ_i g_i(Fθ_i, θ_ii)``, ``g_i(u, t) = −log t + ‖u‖²/t``, is jointly convex (quadratic over
linear), so the relaxation is convex and solved by active-set coordinate descent.

Dual lower bound (derived here; the reference code's ``get_dual_cost`` has the same shape).
Introduce ``u_i = F θ_i`` with multipliers ``ν_i ∈ R^m``:

``L = Σ_i [−log θ_ii + ‖u_i‖²/θ_ii + ν_iᵀ(Fθ_i − u_i)] + Σ_{i<j} pen_ij(θ_ij)``.

Minimising over ``u_i`` gives ``u_i = θ_ii ν_i/2`` and ``−θ_ii‖ν_i‖²/4``; collecting the terms of
``θ_ii`` gives ``−log θ_ii + c_i θ_ii`` with ``c_i = ν_iᵀF_i − ‖ν_i‖²/4`` (minimum ``1 + log c_i`` if
``c_i > 0``, ``−∞`` otherwise); the pair ``(i, j)`` appears as ``pen_ij(θ) + w_ij θ`` with
``w_ij = ν_iᵀF_j + ν_jᵀF_i`` (minimum ``−pen*_ij(−w_ij)``). So for every ``ν``

``D(ν) = Σ_i (1 + log c_i) − Σ_{i<j} pen*_ij(|w_ij|) ≤ relaxation optimum ≤ node optimum``

(weak duality; no convergence needed). With ``h(s) = s²/(4λ2)`` for ``s ≤ 2λ2M`` and
``Ms − λ2M²`` beyond (``Ms`` when ``λ2 = 0``), i.e. ``h(s) = sup_{|φ|≤M} sφ − λ2φ²``, the
conjugates are: fixed zero ``0``; fixed one ``h(s) − λ0``; free ``sup_{z∈[0,1]} z(h(s) − λ0) =
max(0, h(s) − λ0)``. The last is also the conjugate of the ℓ0-ℓ2 penalty itself, so ``D`` with no
pair fixed bounds the original problem. We evaluate ``D`` at ``ν_i = 2R_i/θ_ii`` (``R_i = Fθ_i``),
the multiplier that the stationarity in ``u_i`` gives at the primal point, over **all** pairs (also
those outside the active set), so the bound is valid however far CD got, and it meets the primal
value at the optimum (strong duality: the problem is convex and strictly feasible).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _kernels as K
from .heuristics import initial_active_mask
from .problem import GraphProblem, mask_to_pairs, triu

FREE, ONE, ZERO = K.KIND_PERSPECTIVE, K.KIND_ONE, K.KIND_ZERO


@dataclass
class RelaxationResult:
    Theta: np.ndarray
    primal: float       # relaxation objective at Theta (≥ relaxation optimum)
    dual: float         # D(ν) ≤ relaxation optimum
    z: np.ndarray       # relaxed indicators (symmetric, diagonal 0)
    sweeps: int
    kkt_rounds: int


def _h(s: np.ndarray, lambda2: float, M: float) -> np.ndarray:
    if lambda2 > 0:
        if math.isinf(M):
            return s * s / (4 * lambda2)
        return np.where(s <= 2 * lambda2 * M, s * s / (4 * lambda2), M * s - lambda2 * M * M)
    if math.isinf(M):
        return np.where(s > 0, np.inf, 0.0)
    return M * s


def dual_bound(prob: GraphProblem, Theta: np.ndarray, Rt: np.ndarray, kinds: np.ndarray) -> float:
    """``D(ν)`` at ``ν_i = 2R_i/θ_ii`` (see the module docstring): a lower bound on the node's
    relaxation and hence on every Θ the node contains. ``kinds`` is the p × p matrix of pair kinds
    (``FREE``, ``ONE``, ``ZERO``; diagonal ignored)."""
    d = np.diag(Theta)
    G = prob.gram_products(Rt)            # G[j, i] = F_jᵀ R_i
    c = 2.0 * np.diag(G) / d - np.einsum("ij,ij->i", Rt, Rt) / (d * d)
    if np.any(c <= 0) or not np.all(np.isfinite(c)):
        return -math.inf
    V = 2.0 * G / d[None, :]              # V[j, i] = ν_iᵀ F_j
    w = np.abs(V + V.T)
    iu = triu(prob.p)
    s, kind = w[iu], kinds[iu]
    h = _h(s, prob.lambda2, prob.M) - prob.lambda0
    conj = np.where(kind == ZERO, 0.0, np.where(kind == ONE, h, np.maximum(h, 0.0)))
    if np.any(np.isnan(conj)):
        return -math.inf
    return float(np.sum(1.0 + np.log(c)) - np.sum(conj))


def relaxed_z(prob: GraphProblem, Theta: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """The indicator each pair's penalty minimises at ``Theta``: ``min(|θ|/ratio, 1)`` for a free
    pair when ``ratio ≤ M`` (else ``|θ|/M``), 1 for a fixed one, 0 for a fixed zero."""
    a = np.abs(Theta)
    ratio = prob.ratio
    z = np.minimum(a / ratio, 1.0) if ratio <= prob.M else a / prob.M
    z = np.where(kinds == ONE, 1.0, np.where(kinds == ZERO, 0.0, z))
    np.fill_diagonal(z, 0.0)
    return z


def pair_penalties(prob: GraphProblem, theta: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Vectorised ``_kernels.pair_penalty`` for the kinds FREE, ONE and ZERO."""
    t = np.abs(theta)
    if prob.ratio <= prob.M:
        u = t / prob.ratio
        free = 2 * prob.lambda0 * np.where(u <= 1, u, 0.5 * (u * u + 1))
    else:
        free = t * (prob.lambda0 / prob.M + prob.lambda2 * prob.M)
    return np.where(kinds == ZERO, 0.0, np.where(kinds == ONE, prob.lambda0 + prob.lambda2 * t * t, free))


def relaxation_value(prob: GraphProblem, Theta: np.ndarray, Rt: np.ndarray, kinds: np.ndarray) -> float:
    """The node relaxation's objective at ``Theta``."""
    iu = triu(prob.p)
    return float(K.smooth_part(Rt, Theta)) + float(np.sum(pair_penalties(prob, Theta[iu], kinds[iu])))


def solve_relaxation(prob: GraphProblem, kinds: np.ndarray, warm_start: np.ndarray | None = None,
                     rel_tol: float = 1e-4, cd_max_itr: int = 1000, kkt_max_itr: int = 100,
                     stop_above: float = math.inf) -> RelaxationResult:
    """Active-set CD on the node's relaxation until no free pair outside the active set violates
    its optimality condition (``|w_ij| >`` the slope of ψ at 0) and the primal-dual gap
    ``(primal − dual)/max(1, |primal|)`` is below ``rel_tol`` (the CD tolerance shrinks by 10 each
    time it is not). Stops early once the dual reaches ``stop_above`` (the node can be pruned)."""
    p = prob.p
    off = ~np.eye(p, dtype=bool)
    can = off & (kinds != ZERO)
    if warm_start is None:
        Theta, Rt = prob.trivial()
        active = initial_active_mask(prob, Theta, can)
    else:
        Theta = np.where(can | ~off, warm_start, 0.0)
        np.clip(Theta, -prob.M, prob.M, out=Theta, where=off)
        Rt = prob.residuals(Theta)
        active = (Theta != 0) & can
    active |= (kinds == ONE) & off
    threshold = prob.threshold
    cd_tol = rel_tol / 2
    sweeps = rounds = 0
    trace = np.empty(1)
    dual = -math.inf
    primal = math.inf
    viol = np.zeros((p, p), dtype=np.bool_)
    kinds = np.ascontiguousarray(kinds, dtype=np.int8)
    while True:
        pairs = mask_to_pairs(active)
        kv = np.ascontiguousarray(kinds[pairs[:, 0], pairs[:, 1]].astype(np.int64))
        _, s = K.cd_solve(prob.Yt, Rt, Theta, prob.S_diag, pairs, kv, prob.lambda0, prob.lambda2, prob.M,
                          prob.ratio, cd_tol, cd_max_itr, trace)
        sweeps += s
        rounds += 1
        viol[:] = False
        nv, primal, dual = K.relax_check(prob.Yt, Rt, Theta, kinds, active, prob.lambda0, prob.lambda2, prob.M,
                                         prob.ratio, threshold, viol)
        if nv and rounds < kkt_max_itr:
            active |= viol
            continue
        gap = (primal - dual) / max(1.0, abs(primal))
        if gap <= rel_tol or dual >= stop_above or cd_tol < 1e-12 or rounds >= kkt_max_itr:
            break
        cd_tol /= 10
    return RelaxationResult(Theta=Theta, primal=primal, dual=dual, z=relaxed_z(prob, Theta, kinds),
                            sweeps=sweeps, kkt_rounds=rounds)
