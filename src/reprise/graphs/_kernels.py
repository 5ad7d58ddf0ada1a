"""The compiled inner loops of GraphL0BnB: coordinate updates, CD sweeps, objective, swap search.

Everything here works on the reduced data of ``problem.GraphProblem``:

* ``Yt``  (p × m): row ``i`` is the column ``Y_i`` of ``Y`` (``Y = (X − x̄)/√n`` or a p × p factor
  with the same Gram ``S = YᵀY``); rows are contiguous, so every dot product reads one row.
* ``Rt``  (p × m): row ``i`` is ``R_i = Y θ_{·i}``, kept in step with ``Theta`` by every update.
* ``Theta`` (p × p), symmetric, positive diagonal; ``S_diag[i] = ‖Y_i‖² = S_ii``.
* ``pairs`` (k × 2, ``i < j``) the coordinates a sweep visits, in order, and ``kinds`` (k) the
  penalty each pays:

  ===== ======================================================================================
  kind  penalty of ``θ = θ_ij`` (all with the box ``|θ| ≤ M``)
  ===== ======================================================================================
  0     ``λ0·1[θ ≠ 0] + λ2 θ²`` — the ℓ0-ℓ2 penalty of the estimator (the heuristics)
  1     the perspective relaxation ``ψ(θ) = min_{z ∈ [|θ|/M, 1]} λ0 z + λ2 θ²/z`` (a free pair
        in a branch-and-bound node)
  2     ``λ0 + λ2 θ²`` — a pair whose ``z`` is fixed to one (the ``λ0`` is paid even at 0)
  3     ``θ = 0`` — a pair whose ``z`` is fixed to zero
  ===== ======================================================================================

The one-coordinate problem is ``min_θ a θ² + b θ + pen(θ)`` with (spec §2.3)
``a = S_jj/θ_ii + S_ii/θ_jj`` and ``b = 2(Y_jᵀR_i − θ_ij S_jj)/θ_ii + 2(Y_iᵀR_j − θ_ij S_ii)/θ_jj``.

numba compiles these with ``cache=True``; the cache lives where ``NUMBA_CACHE_DIR`` points (numba's
own variable), else in ``__pycache__`` beside this file, else in numba's per-user directory, so a
checkout compiles once and later processes load the machine code. Without numba the same functions
run as plain Python (correct, about a hundred times slower).
"""
from __future__ import annotations

import math

import numpy as np

try:  # pragma: no cover - exercised by whichever branch the environment has
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda fn: fn

KIND_L0L2, KIND_PERSPECTIVE, KIND_ONE, KIND_ZERO = 0, 1, 2, 3

_JIT = dict(cache=True, nogil=True)


# --------------------------------------------------------------------------- one coordinate

@njit(**_JIT)
def coord_l0l2(a, b, lam0, lam2, M):
    """argmin over ``|θ| ≤ M`` of ``a θ² + b θ + λ0·1[θ≠0] + λ2 θ²`` in the closed form of spec §2.3:
    ``β̃ = −b/(2a)``, ``λ0' = λ0/(2a)``, ``λ2' = λ2/(2a)``, ``v = |β̃|/(1+2λ2')``; inside the box keep
    ``v`` when ``v > sqrt(2λ0'/(1+2λ2'))``, outside keep ``M`` when ``v > M/2 + λ0'/(M(1+2λ2'))``."""
    beta = -b / (2.0 * a)
    l0 = lam0 / (2.0 * a)
    l2 = lam2 / (2.0 * a)
    v = abs(beta) / (1.0 + 2.0 * l2)
    sgn = 1.0 if beta >= 0 else -1.0
    if v <= M:
        if v > math.sqrt(2.0 * l0 / (1.0 + 2.0 * l2)):
            return sgn * v
        return 0.0
    if v > M / 2.0 + l0 / (M * (1.0 + 2.0 * l2)):
        return sgn * M
    return 0.0


@njit(**_JIT)
def perspective_penalty(theta, lam0, lam2, M, ratio):
    """``ψ(θ)`` of spec §2.4: ``2λ0·h(θ/ratio)`` (reverse Huber ``h``) when ``ratio = sqrt(λ0/λ2) ≤ M``,
    else ``|θ|(λ0/M + λ2 M)``; ``+inf`` outside the box."""
    t = abs(theta)
    if t > M:
        return np.inf
    if ratio <= M:
        u = t / ratio
        return 2.0 * lam0 * (u if u <= 1.0 else 0.5 * (u * u + 1.0))
    return t * (lam0 / M + lam2 * M)


@njit(**_JIT)
def coord_min(a, b, kind, lam0, lam2, M, ratio):
    """argmin over ``|θ| ≤ M`` of ``a θ² + b θ + pen_kind(θ)``."""
    if kind == 0:
        return coord_l0l2(a, b, lam0, lam2, M)
    if kind == 3:
        return 0.0
    sgn = -1.0 if b > 0 else 1.0
    ab = abs(b)
    if kind == 2:
        return sgn * min(ab / (2.0 * (a + lam2)), M)
    # kind 1: the perspective function is convex, linear (slope c) up to |θ| = ratio and
    # λ0 + λ2 θ² beyond; minimise on both pieces and keep the better one.
    if ratio <= M:
        c = 2.0 * math.sqrt(lam0 * lam2)
        ta = min(max(ab - c, 0.0) / (2.0 * a), ratio)
        fa = a * ta * ta - ab * ta + c * ta
        tb = min(max(ab / (2.0 * (a + lam2)), ratio), M)
        fb = (a + lam2) * tb * tb - ab * tb + lam0
        return sgn * (ta if fa <= fb else tb)
    c = lam0 / M + lam2 * M
    return sgn * min(max(ab - c, 0.0) / (2.0 * a), M)


@njit(**_JIT)
def pair_penalty(theta, kind, lam0, lam2, M, ratio):
    if kind == 0:
        return (lam0 + lam2 * theta * theta) if theta != 0.0 else 0.0
    if kind == 1:
        return perspective_penalty(theta, lam0, lam2, M, ratio)
    if kind == 2:
        return lam0 + lam2 * theta * theta
    return 0.0


# --------------------------------------------------------------------------- helpers

@njit(**_JIT)
def _dot(x, y):
    s = 0.0
    for t in range(x.shape[0]):
        s += x[t] * y[t]
    return s


@njit(**_JIT)
def _axpy(alpha, x, y):
    for t in range(x.shape[0]):
        y[t] += alpha * x[t]


@njit(**_JIT)
def coord_ab(Yt, Rt, Theta, S_diag, i, j):
    """``(a, b)`` of the one-coordinate problem in ``θ_ij`` with every other entry fixed."""
    tii, tjj, tij = Theta[i, i], Theta[j, j], Theta[i, j]
    a = S_diag[j] / tii + S_diag[i] / tjj
    b = 2.0 * (_dot(Yt[j], Rt[i]) - tij * S_diag[j]) / tii + 2.0 * (_dot(Yt[i], Rt[j]) - tij * S_diag[i]) / tjj
    return a, b


@njit(**_JIT)
def set_pair(Yt, Rt, Theta, i, j, value):
    """Set ``θ_ij = θ_ji = value`` and update ``R_i`` and ``R_j``."""
    delta = value - Theta[i, j]
    if delta != 0.0:
        _axpy(delta, Yt[j], Rt[i])
        _axpy(delta, Yt[i], Rt[j])
        Theta[i, j] = value
        Theta[j, i] = value


@njit(**_JIT)
def diagonal_update(Yt, Rt, Theta, S_diag):
    """Each ``θ_ii ← argmin −log x + S_ii x + ‖r‖²/x = (1 + sqrt(1 + 4 S_ii ‖r‖²))/(2 S_ii)``,
    ``r = R_i − θ_ii Y_i``."""
    p = Theta.shape[0]
    for i in range(p):
        old = Theta[i, i]
        r2 = 0.0
        for t in range(Yt.shape[1]):
            r = Rt[i, t] - old * Yt[i, t]
            r2 += r * r
        new = (1.0 + math.sqrt(1.0 + 4.0 * S_diag[i] * r2)) / (2.0 * S_diag[i])
        _axpy(new - old, Yt[i], Rt[i])
        Theta[i, i] = new


@njit(**_JIT)
def smooth_part(Rt, Theta):
    """``Σ_i −log θ_ii + ‖R_i‖²/θ_ii`` (the pseudo-likelihood term of spec §2.2)."""
    s = 0.0
    for i in range(Theta.shape[0]):
        s += -math.log(Theta[i, i]) + _dot(Rt[i], Rt[i]) / Theta[i, i]
    return s


@njit(**_JIT)
def penalty_part(Theta, pairs, kinds, lam0, lam2, M, ratio):
    s = 0.0
    for q in range(pairs.shape[0]):
        s += pair_penalty(Theta[pairs[q, 0], pairs[q, 1]], kinds[q], lam0, lam2, M, ratio)
    return s


@njit(**_JIT)
def objective_value(Rt, Theta, pairs, kinds, lam0, lam2, M, ratio):
    return smooth_part(Rt, Theta) + penalty_part(Theta, pairs, kinds, lam0, lam2, M, ratio)


# --------------------------------------------------------------------------- coordinate descent

@njit(**_JIT)
def cd_sweep(Yt, Rt, Theta, S_diag, pairs, kinds, lam0, lam2, M, ratio):
    """One cyclic pass over ``pairs`` followed by the diagonal update. Returns how many pairs
    changed from zero to nonzero or back (support changes)."""
    changes = 0
    for q in range(pairs.shape[0]):
        i, j = pairs[q, 0], pairs[q, 1]
        old = Theta[i, j]
        if kinds[q] == 3:
            new = 0.0
        else:
            a, b = coord_ab(Yt, Rt, Theta, S_diag, i, j)
            new = coord_min(a, b, kinds[q], lam0, lam2, M, ratio)
        if (old == 0.0) != (new == 0.0):
            changes += 1
        set_pair(Yt, Rt, Theta, i, j, new)
    diagonal_update(Yt, Rt, Theta, S_diag)
    return changes


@njit(**_JIT)
def rel_change(old, new):
    """``|old − new| / max(|old|, |new|, 1)``, the stopping measure of the reference code."""
    if not (math.isfinite(old) and math.isfinite(new)):
        return np.inf
    return abs(old - new) / max(abs(old), abs(new), 1.0)


@njit(**_JIT)
def cd_solve(Yt, Rt, Theta, S_diag, pairs, kinds, lam0, lam2, M, ratio, rel_tol, max_sweeps, trace):
    """Sweeps until the relative objective change is below ``rel_tol`` or ``max_sweeps``.
    Writes the objective after each sweep into ``trace`` (length ≥ max_sweeps) and returns
    ``(objective, sweeps)``. The objective never increases: each coordinate step is exact."""
    obj = objective_value(Rt, Theta, pairs, kinds, lam0, lam2, M, ratio)
    sweeps = 0
    while sweeps < max_sweeps:
        cd_sweep(Yt, Rt, Theta, S_diag, pairs, kinds, lam0, lam2, M, ratio)
        new = objective_value(Rt, Theta, pairs, kinds, lam0, lam2, M, ratio)
        if sweeps < trace.shape[0]:
            trace[sweeps] = new
        sweeps += 1
        done = rel_change(obj, new) < rel_tol
        obj = new
        if done:
            break
    return obj, sweeps


@njit(**_JIT)
def cd_until_support_stable(Yt, Rt, Theta, S_diag, pairs, kinds, lam0, lam2, M, ratio, repeats, max_sweeps):
    """Sweeps until ``repeats`` consecutive sweeps leave the support unchanged (the active-set
    start of spec §2.3), at most ``max_sweeps``; returns the sweeps done."""
    same = 0
    sweeps = 0
    while same < repeats and sweeps < max_sweeps:
        if cd_sweep(Yt, Rt, Theta, S_diag, pairs, kinds, lam0, lam2, M, ratio) == 0:
            same += 1
        else:
            same = 0
        sweeps += 1
    return sweeps


# --------------------------------------------------------------------------- swap local search

@njit(**_JIT)
def _l0l2_value(a, b, theta, lam0, lam2):
    return a * theta * theta + b * theta + ((lam0 + lam2 * theta * theta) if theta != 0.0 else 0.0)


@njit(**_JIT)
def psi_pass(Yt, Rt, Theta, S_diag, S, allowed, lam0, lam2, M, tol):
    """One pass of the partial swap inspection (CDPSI, spec §2.3) over every row ``i``: for each
    nonzero ``θ_ij`` with ``allowed[i, j]``, drop it and compare the best one-coordinate objective
    of putting ``j`` back with that of every allowed zero ``k`` of the row; when some ``k`` is
    better by more than ``tol`` (relative), set ``θ_ik`` to its optimum and go to the next row.
    Returns the number of swaps. The objective never increases.

    The linear terms of all candidates come from two products per row, ``gR[k] = F_kᵀR_i`` and
    ``gY[k] = F_iᵀR_k`` over the row's allowed ``k`` (O(a·m) for ``a`` allowed), kept current
    through the Gram ``S`` when ``θ_ij`` is dropped (O(a)), so a row costs O(a·m + nnz·a) rather
    than O(nnz·a·m)."""
    p = Theta.shape[0]
    swaps = 0
    nz = np.empty(p, dtype=np.int64)
    zs = np.empty(p, dtype=np.int64)
    gR = np.empty(p)
    gY = np.empty(p)
    for i in range(p):
        n_nz = 0
        n_z = 0
        for j in range(p):
            if j == i or not allowed[i, j]:
                continue
            if Theta[i, j] != 0.0:
                nz[n_nz] = j
                n_nz += 1
            else:
                zs[n_z] = j
                n_z += 1
        if n_nz == 0 or n_z == 0:
            continue
        for r in range(n_nz):
            k = nz[r]
            gR[k] = _dot(Yt[k], Rt[i])
            gY[k] = _dot(Yt[i], Rt[k])
        for r in range(n_z):
            k = zs[r]
            gR[k] = _dot(Yt[k], Rt[i])
            gY[k] = _dot(Yt[i], Rt[k])
        tii = Theta[i, i]
        for q in range(n_nz):
            j = nz[q]
            old = Theta[i, j]
            set_pair(Yt, Rt, Theta, i, j, 0.0)
            for r in range(n_nz):
                gR[nz[r]] -= old * S[nz[r], j]
            for r in range(n_z):
                gR[zs[r]] -= old * S[zs[r], j]
            gY[j] -= old * S_diag[i]
            aj = S_diag[i] / Theta[j, j] + S_diag[j] / tii
            bj = 2.0 * gR[j] / tii + 2.0 * gY[j] / Theta[j, j]
            tj = coord_l0l2(aj, bj, lam0, lam2, M)
            fj = _l0l2_value(aj, bj, tj, lam0, lam2)
            best_f = fj
            best_k = -1
            best_t = 0.0
            for r in range(n_z):
                k = zs[r]
                ak = S_diag[i] / Theta[k, k] + S_diag[k] / tii
                bk = 2.0 * gR[k] / tii + 2.0 * gY[k] / Theta[k, k]
                tk = coord_l0l2(ak, bk, lam0, lam2, M)
                fk = _l0l2_value(ak, bk, tk, lam0, lam2)
                if fk < best_f:
                    best_f, best_k, best_t = fk, k, tk
            if best_k >= 0 and best_f < fj - tol * max(1.0, abs(fj)):
                set_pair(Yt, Rt, Theta, i, best_k, best_t)
                swaps += 1
                break
            set_pair(Yt, Rt, Theta, i, j, tj)
            for r in range(n_nz):
                gR[nz[r]] += tj * S[nz[r], j]
            for r in range(n_z):
                gR[zs[r]] += tj * S[zs[r], j]
            gY[j] += tj * S_diag[i]
    return swaps


# --------------------------------------------------------------------------- node relaxation bookkeeping

@njit(**_JIT)
def _h_conj(s, lam2, M):
    """``h(s) = sup_{|φ| ≤ M} sφ − λ2φ²`` (see relaxation.py)."""
    if lam2 > 0:
        if s <= 2.0 * lam2 * M:
            return s * s / (4.0 * lam2)
        return M * s - lam2 * M * M
    if math.isinf(M):
        return np.inf if s > 0 else 0.0
    return M * s


@njit(**_JIT)
def relax_check(Yt, Rt, Theta, kinds, active, lam0, lam2, M, ratio, threshold, viol):
    """One pass over every pair of a node's relaxation at ``Theta``: marks in ``viol`` the free
    pairs outside ``active`` whose gradient at zero exceeds the slope of ψ (KKT violators) and
    returns ``(n_violators, primal, dual)`` — the relaxation objective and the dual bound ``D(ν)``
    at ``ν_i = 2R_i/θ_ii`` (relaxation.py derives it)."""
    p = Theta.shape[0]
    G = Yt @ Rt.T                       # G[j, i] = F_jᵀ R_i
    primal = 0.0
    dual = 0.0
    ok = True
    for i in range(p):
        t = Theta[i, i]
        r2 = _dot(Rt[i], Rt[i])
        primal += -math.log(t) + r2 / t
        c = 2.0 * G[i, i] / t - r2 / (t * t)
        if c > 0:
            dual += 1.0 + math.log(c)
        else:
            ok = False
    nv = 0
    for i in range(p):
        for j in range(i + 1, p):
            kind = kinds[i, j]
            th = Theta[i, j]
            if kind == 3:
                continue
            primal += pair_penalty(th, kind, lam0, lam2, M, ratio)
            w = abs(2.0 * G[j, i] / Theta[i, i] + 2.0 * G[i, j] / Theta[j, j])
            conj = _h_conj(w, lam2, M) - lam0
            if kind == 1:
                if conj > 0:
                    dual -= conj
                if not active[i, j]:
                    # gradient at zero of the pair (θ_ij = 0 outside the active set)
                    if w > threshold * (1.0 + 1e-9) + 1e-12:
                        viol[i, j] = True
                        viol[j, i] = True
                        nv += 1
            else:
                dual -= conj
    if not ok:
        dual = -np.inf
    return nv, primal, dual


@njit(**_JIT)
def l0l2_objective(Rt, Theta, lam0, lam2, M):
    """The estimator's objective (spec §2.2) from the residuals: ``+inf`` outside the domain."""
    p = Theta.shape[0]
    val = 0.0
    for i in range(p):
        if not Theta[i, i] > 0:
            return np.inf
        val += -math.log(Theta[i, i]) + _dot(Rt[i], Rt[i]) / Theta[i, i]
        for j in range(i + 1, p):
            th = Theta[i, j]
            if th != 0.0:
                if abs(th) > M * (1.0 + 1e-12):
                    return np.inf
                val += lam0 + lam2 * th * th
    return val
