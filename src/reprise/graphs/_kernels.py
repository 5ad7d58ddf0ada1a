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


# --------------------------------------------------------------------------- strengthened relaxation
# (see strengthened.py for the derivation; ``d`` is the diagonal shift, ``lo``/``hi`` the bounds
# on the diagonal that every optimum satisfies, ``Z`` the relaxed indicators)

_GOLD = 0.3819660112501051


@njit(**_JIT)
def _sr_phi(z, A, absb, lam0, lam2, d, ei0, li, ej0, lj, M):
    """``φ(z) = λ0 z + min_{|θ| ≤ Mz} Q(z)θ² − |b||θ|`` with ``Q(z) = A + λ2/z + d/e_i(z) + d/e_j(z)``,
    ``e_k(z) = (t_k − l_k) + z l_k``; returns ``(φ, |θ|)``."""
    if z <= 0.0:
        return 0.0, 0.0
    Q = A + lam2 / z + d / (ei0 + z * li) + d / (ej0 + z * lj)
    t = min(absb / (2.0 * Q), M * z)
    return lam0 * z + Q * t * t - absb * t, t


@njit(**_JIT)
def sr_pair(A, b, lam0, lam2, d, ti, li, tj, lj, M, iters):
    """Minimise ``Aθ² + bθ + λ0 z + λ2θ²/z + dθ²/e_i(z) + dθ²/e_j(z)`` over ``z ∈ [0, 1]``,
    ``|θ| ≤ Mz`` (jointly convex): θ in closed form for each z, golden section on z.
    Returns ``(θ, z)``."""
    absb = abs(b)
    if absb == 0.0:
        return 0.0, 0.0
    ei0, ej0 = ti - li, tj - lj
    a, c = 0.0, 1.0
    x1 = a + _GOLD * (c - a)
    x2 = c - _GOLD * (c - a)
    f1, _ = _sr_phi(x1, A, absb, lam0, lam2, d, ei0, li, ej0, lj, M)
    f2, _ = _sr_phi(x2, A, absb, lam0, lam2, d, ei0, li, ej0, lj, M)
    for _ in range(iters):
        if f1 <= f2:
            c, x2, f2 = x2, x1, f1
            x1 = a + _GOLD * (c - a)
            f1, _ = _sr_phi(x1, A, absb, lam0, lam2, d, ei0, li, ej0, lj, M)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = c - _GOLD * (c - a)
            f2, _ = _sr_phi(x2, A, absb, lam0, lam2, d, ei0, li, ej0, lj, M)
    z = x1 if f1 <= f2 else x2
    fz, t = _sr_phi(z, A, absb, lam0, lam2, d, ei0, li, ej0, lj, M)
    f_one, t_one = _sr_phi(1.0, A, absb, lam0, lam2, d, ei0, li, ej0, lj, M)
    if f_one < fz:
        z, fz, t = 1.0, f_one, t_one
    if fz >= 0.0:
        return 0.0, 0.0
    return (-t if b > 0 else t), z


@njit(**_JIT)
def sr_diag(S_ii, K, d, li, ui, th2, zs, n_terms):
    """argmin over ``t ∈ [l, u]`` of ``−log t + S_ii t + K/t + d Σ θ_k²/(t − (1 − z_k) l)``
    (convex; bisection on the derivative)."""
    def deriv(t):
        g = -1.0 / t + S_ii - K / (t * t)
        for q in range(n_terms):
            e = t - (1.0 - zs[q]) * li
            g -= d * th2[q] / (e * e)
        return g

    if deriv(li) >= 0.0:
        return li
    if math.isfinite(ui) and deriv(ui) <= 0.0:
        return ui
    lo, hi = li, (ui if math.isfinite(ui) else 2.0 * li)
    while not math.isfinite(ui) and deriv(hi) < 0.0:
        lo, hi = hi, 2.0 * hi
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if deriv(mid) < 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


@njit(**_JIT)
def sr_sweep(Yt, Rt, Theta, Z, S_diag, kinds, lam0, lam2, M, ratio, threshold, d, lo, hi, iters):
    """One block-coordinate pass of the strengthened relaxation: every non-fixed-zero pair
    ``(θ_ij, z_ij)`` jointly, then every diagonal ``t_i`` on ``[lo_i, hi_i]``."""
    p = Theta.shape[0]
    for i in range(p):
        for j in range(i + 1, p):
            kind = kinds[i, j]
            if kind == 3:
                continue
            tii, tjj, old = Theta[i, i], Theta[j, j], Theta[i, j]
            b = 2.0 * (_dot(Yt[j], Rt[i]) - old * S_diag[j]) / tii + 2.0 * (_dot(Yt[i], Rt[j]) - old * S_diag[i]) / tjj
            if kind == 2:
                a = S_diag[j] / tii + S_diag[i] / tjj
                new = -math.copysign(min(abs(b) / (2.0 * (a + lam2)), M), b) if b != 0.0 else 0.0
                z = 1.0
            else:
                # below the plain perspective's threshold zero is optimal for this block too
                if old == 0.0 and abs(b) <= threshold:
                    Z[i, j] = Z[j, i] = 0.0
                    continue
                A = (S_diag[j] - d) / tii + (S_diag[i] - d) / tjj
                new, z = sr_pair(A, b, lam0, lam2, d, tii, lo[i], tjj, lo[j], M, iters)
            set_pair(Yt, Rt, Theta, i, j, new)
            Z[i, j] = Z[j, i] = z
    th2 = np.empty(p)
    zs = np.empty(p)
    for i in range(p):
        old = Theta[i, i]
        r2 = 0.0
        for t in range(Yt.shape[1]):
            r = Rt[i, t] - old * Yt[i, t]
            r2 += r * r
        n_terms = 0
        sq = 0.0
        for j in range(p):
            if j != i and kinds[i, j] == 1 and Theta[i, j] != 0.0:
                th2[n_terms] = Theta[i, j] * Theta[i, j]
                zs[n_terms] = Z[i, j]
                sq += th2[n_terms]
                n_terms += 1
        K = max(r2 - d * sq, 0.0)
        new = sr_diag(S_diag[i], K, d, lo[i], hi[i], th2, zs, n_terms)
        _axpy(new - old, Yt[i], Rt[i])
        Theta[i, i] = new


@njit(**_JIT)
def sr_primal(Rt, Theta, Z, kinds, lam0, lam2, d, lo):
    """The strengthened relaxation's objective at ``(Θ, Z)``."""
    p = Theta.shape[0]
    val = 0.0
    for i in range(p):
        t = Theta[i, i]
        q = _dot(Rt[i], Rt[i])
        for j in range(p):
            if j != i and kinds[i, j] == 1:
                q -= d * Theta[i, j] * Theta[i, j]
        val += -math.log(t) + q / t
    for i in range(p):
        for j in range(i + 1, p):
            kind, th = kinds[i, j], Theta[i, j]
            if kind == 2:
                val += lam0 + lam2 * th * th
            elif kind == 1 and th != 0.0:
                z = Z[i, j]
                ei = Theta[i, i] - (1.0 - z) * lo[i]
                ej = Theta[j, j] - (1.0 - z) * lo[j]
                val += lam0 * z + lam2 * th * th / z + d * th * th / ei + d * th * th / ej
    return val


@njit(**_JIT)
def _sr_inner_fixed_z(z, absw, lam0, lam2, d, mi, li, mj, lj, M):
    """``ψ(z) = min_{0 ≤ θ ≤ Mz} λ0 z + λ2θ²/z − |w|θ + G_i(θ, z) + G_j(θ, z)`` exactly, with
    ``G_k = m_k(1−z)l_k + (2θ√(d m_k) if θ ≥ κ_k else dθ²/(z l_k) + m_k z l_k)``,
    ``κ_k = z l_k √(m_k/d)`` (a convex piecewise quadratic: minimise on each piece)."""
    if z <= 0.0:
        return mi * li + mj * lj
    ki = z * li * math.sqrt(mi / d) if d > 0 else 0.0
    kj = z * lj * math.sqrt(mj / d) if d > 0 else 0.0
    hi_end = M * z
    cuts = np.empty(4)
    cuts[0] = 0.0
    c1, c2 = min(ki, kj), max(ki, kj)
    cuts[1] = min(c1, hi_end)
    cuts[2] = min(c2, hi_end)
    cuts[3] = hi_end
    best = np.inf
    for s in range(3):
        a0, a1 = cuts[s], cuts[s + 1]
        if a1 < a0:
            continue
        mid = 0.5 * (a0 + a1)
        alpha = lam2 / z
        beta = -absw
        gamma = lam0 * z + mi * (1.0 - z) * li + mj * (1.0 - z) * lj
        if mid < ki:
            alpha += d / (z * li)
            gamma += mi * z * li
        else:
            beta += 2.0 * math.sqrt(d * mi)
        if mid < kj:
            alpha += d / (z * lj)
            gamma += mj * z * lj
        else:
            beta += 2.0 * math.sqrt(d * mj)
        if alpha > 0.0:
            th = min(max(-beta / (2.0 * alpha), a0), a1)
        else:
            th = a0 if beta >= 0.0 else a1
        val = alpha * th * th + beta * th + gamma
        if val < best:
            best = val
    return best


@njit(**_JIT)
def sr_inner_lower(absw, lam0, lam2, d, mi, li, mj, lj, M, iters):
    """A certified lower bound on ``min_{z∈[0,1]} ψ(z)`` (ψ convex): golden section, then the
    secant extensions through the final bracket bound ψ from below on it."""
    a, c = 0.0, 1.0
    fa = _sr_inner_fixed_z(a, absw, lam0, lam2, d, mi, li, mj, lj, M)
    fc = _sr_inner_fixed_z(c, absw, lam0, lam2, d, mi, li, mj, lj, M)
    x1 = a + _GOLD * (c - a)
    x2 = c - _GOLD * (c - a)
    f1 = _sr_inner_fixed_z(x1, absw, lam0, lam2, d, mi, li, mj, lj, M)
    f2 = _sr_inner_fixed_z(x2, absw, lam0, lam2, d, mi, li, mj, lj, M)
    for _ in range(iters):
        if f1 <= f2:
            c, fc = x2, f2
            x2, f2 = x1, f1
            x1 = a + _GOLD * (c - a)
            f1 = _sr_inner_fixed_z(x1, absw, lam0, lam2, d, mi, li, mj, lj, M)
        else:
            a, fa = x1, f1
            x1, f1 = x2, f2
            x2 = c - _GOLD * (c - a)
            f2 = _sr_inner_fixed_z(x2, absw, lam0, lam2, d, mi, li, mj, lj, M)
    # best interior point m with a < m < c and f(m) ≤ f(a), f(c) (or an end point)
    if f1 <= f2:
        xm, fm = x1, f1
    else:
        xm, fm = x2, f2
    best = min(fa, fc, fm)
    lower = best
    if xm > a:
        s1 = (fm - fa) / (xm - a)
        lower = min(lower, fm + min(0.0, s1 * (c - xm)))
    if c > xm:
        s2 = (fc - fm) / (c - xm)
        lower = min(lower, fm - max(0.0, s2) * (xm - a))
    return lower - 1e-12 * max(1.0, abs(lower))


@njit(**_JIT)
def _sr_column(gamma, lo, hi):
    """``min_{t ∈ [lo, hi]} −log t + γ t``."""
    if gamma > 0.0:
        ts = min(max(1.0 / gamma, lo), hi)
    elif math.isfinite(hi):
        ts = hi
    else:
        return -np.inf
    return -math.log(ts) + gamma * ts


@njit(**_JIT)
def sr_dual(Yt, Rt, Theta, Z, kinds, lam0, lam2, M, d, lo, hi, threshold, iters, refine):
    """The dual bound of the strengthened relaxation (strengthened.py) at the multipliers the primal
    point gives: a valid lower bound on the node for any (Θ, Z) and any multipliers. With
    ``refine``, the multipliers of the copies of ``t`` held by pairs at zero whose gradient exceeds
    the perspective's threshold (the ones the primal point cannot price) are raised one at a time
    by golden section on the (concave) dual."""
    p = Theta.shape[0]
    G = Yt @ Rt.T
    W = np.zeros((p, p))
    Mi = np.zeros((p, p))
    Mj = np.zeros((p, p))
    inner = np.zeros((p, p))
    msum = np.zeros(p)
    c0 = np.zeros(p)
    total = 0.0
    for i in range(p):
        for j in range(i + 1, p):
            kind, th = kinds[i, j], Theta[i, j]
            if kind == 3:
                continue
            shift = d * th if kind == 1 else 0.0
            W[i, j] = abs(2.0 * (G[j, i] - shift) / Theta[i, i] + 2.0 * (G[i, j] - shift) / Theta[j, j])
            if kind == 2:
                total -= _h_conj(W[i, j], lam2, M) - lam0
                continue
            if th != 0.0:
                z = Z[i, j]
                ei = Theta[i, i] - (1.0 - z) * lo[i]
                ej = Theta[j, j] - (1.0 - z) * lo[j]
                Mi[i, j] = d * th * th / (ei * ei)
                Mj[i, j] = d * th * th / (ej * ej)
                msum[i] += Mi[i, j]
                msum[j] += Mj[i, j]
            inner[i, j] = sr_inner_lower(W[i, j], lam0, lam2, d, Mi[i, j], lo[i], Mj[i, j], lo[j], M, iters)
    for i in range(p):
        t = Theta[i, i]
        q = _dot(Rt[i], Rt[i])
        for j in range(p):
            if j != i and kinds[i, j] == 1:
                q -= d * Theta[i, j] * Theta[i, j]
        c0[i] = 2.0 * G[i, i] / t - q / (t * t)
    if refine and d > 0.0:
        for i in range(p):
            for j in range(i + 1, p):
                if kinds[i, j] != 1 or Theta[i, j] != 0.0 or W[i, j] <= threshold:
                    continue
                for side in range(2):
                    col = i if side == 0 else j
                    cur = Mi[i, j] if side == 0 else Mj[i, j]
                    base_col = msum[col] - cur
                    vmax = 4.0 * max(c0[col], 1.0 / lo[col])
                    a, c = 0.0, vmax
                    fa_best = -np.inf
                    v_best = cur
                    for _ in range(40):
                        x1 = a + _GOLD * (c - a)
                        x2 = c - _GOLD * (c - a)
                        if side == 0:
                            g1 = sr_inner_lower(W[i, j], lam0, lam2, d, x1, lo[i], Mj[i, j], lo[j], M, iters)
                            g2 = sr_inner_lower(W[i, j], lam0, lam2, d, x2, lo[i], Mj[i, j], lo[j], M, iters)
                        else:
                            g1 = sr_inner_lower(W[i, j], lam0, lam2, d, Mi[i, j], lo[i], x1, lo[j], M, iters)
                            g2 = sr_inner_lower(W[i, j], lam0, lam2, d, Mi[i, j], lo[i], x2, lo[j], M, iters)
                        f1 = g1 + _sr_column(c0[col] - base_col - x1, lo[col], hi[col])
                        f2 = g2 + _sr_column(c0[col] - base_col - x2, lo[col], hi[col])
                        if f1 >= f2:
                            c = x2
                            if f1 > fa_best:
                                fa_best, v_best = f1, x1
                        else:
                            a = x1
                            if f2 > fa_best:
                                fa_best, v_best = f2, x2
                    now = inner[i, j] + _sr_column(c0[col] - msum[col], lo[col], hi[col])
                    if fa_best > now:
                        if side == 0:
                            Mi[i, j] = v_best
                        else:
                            Mj[i, j] = v_best
                        msum[col] = base_col + v_best
                        inner[i, j] = sr_inner_lower(W[i, j], lam0, lam2, d, Mi[i, j], lo[i], Mj[i, j], lo[j], M,
                                                     iters)
    for i in range(p):
        for j in range(i + 1, p):
            if kinds[i, j] == 1:
                total += inner[i, j]
    for i in range(p):
        total += _sr_column(c0[i] - msum[i], lo[i], hi[i])
    return total
