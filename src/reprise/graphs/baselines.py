"""Comparison methods of the GraphL0BnB tables (specs/other-papers.md §2.7; the reference
repository has none, so all are written here or taken from scikit-learn):

* ``exhaustive_enumeration``: the certified optimum of the ℓ0 problem for tiny p — every one of
  the ``2^{p(p−1)/2}`` supports is a convex fit (``λ0|S| + λ2θ²`` on the support, box ``M``),
  solved by CD to 1e-12 with its dual bound; ``p ≤ MAX_P_ENUMERATION``.
* ``scip_mip``: the convex MIP formulation of spec §2.2 solved by SCIP (``pyscipopt``). It stands
  in for the paper's commercial solvers (Gurobi / MOSEK), which need licences (spec §9.2);
  ``p ≤ MAX_P_SCIP``.
* ``graphical_lasso``: scikit-learn's ``GraphicalLasso`` (ℓ1-penalised Gaussian likelihood).
* ``concord``: CONCORD-ℓ1 (Khare, Oh & Rajaratnam 2015) by proximal gradient (CONCORD-ISTA):
  ``min −Σ_i log ω_ii + ½ tr(ΩSΩ) + λ Σ_{i≠j} |ω_ij|``.
* ``nodewise_lasso``: Meinshausen–Bühlmann neighbourhood selection with scikit-learn's ``Lasso``,
  the AND or OR rule, and the precision read off the regressions
  (``θ_ii = 1/σ̂_i²``, ``θ_ij = −β̂_ij/σ̂_i²``, the two estimates of a pair averaged).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from reprise.io import ReproError

from . import _kernels as K
from .problem import GraphProblem, all_pairs, check_data
from .relaxation import ONE, ZERO, dual_bound

MAX_P_ENUMERATION = 6   # 2^15 = 32768 convex fits
MAX_P_SCIP = 30         # ~1900 variables; the paper's point is that such solvers stall near p ≈ 100


@dataclass
class ExactResult:
    Theta: np.ndarray
    objective: float
    lower_bound: float
    gap: float
    seconds: float
    status: str
    n_nodes: int = 0


# --------------------------------------------------------------------------- exhaustive enumeration

def exhaustive_enumeration(X, lambda0: float, lambda2: float, M: float | None = None,
                           assume_centered: bool = False) -> ExactResult:
    """The global optimum by trying every off-diagonal support (``p ≤ MAX_P_ENUMERATION``). The
    lower bound is the smallest dual bound over the supports, so ``gap`` certifies the fits."""
    X = check_data(X)
    p = X.shape[1]
    if p > MAX_P_ENUMERATION:
        raise ReproError(f"exhaustive_enumeration: p={p} exceeds its limit of {MAX_P_ENUMERATION} "
                         f"(2^(p(p-1)/2) fits); use L0GraphicalModel(solver='bnb') instead")
    t0 = time.perf_counter()
    prob = GraphProblem.from_data(X, lambda0, lambda2, M, assume_centered=assume_centered)
    pairs = all_pairs(p)
    k = pairs.shape[0]
    best, best_Theta, lower = math.inf, None, math.inf
    buf = np.empty(1)
    for bits in range(1 << k):
        sel = np.array([(bits >> q) & 1 for q in range(k)], dtype=bool)
        sp = np.ascontiguousarray(pairs[sel])
        kinds = np.full(sp.shape[0], ONE, dtype=np.int64)
        Theta, Rt = prob.trivial()
        obj, _ = K.cd_solve(prob.Yt, Rt, Theta, prob.S_diag, sp, kinds, prob.lambda0, prob.lambda2, prob.M,
                            prob.ratio, 1e-13, 100000, buf)
        kmat = np.full((p, p), ZERO, dtype=np.int8)
        kmat[sp[:, 0], sp[:, 1]] = kmat[sp[:, 1], sp[:, 0]] = ONE
        lower = min(lower, dual_bound(prob, Theta, Rt, kmat))
        if obj < best:
            best, best_Theta = obj, Theta.copy()
    # the best fit may keep a zero on its support (it then paid λ0 for nothing): report the
    # objective of the estimate itself, which is never larger
    best = min(best, prob.objective(best_Theta))
    gap = (best - lower) / max(abs(best), 1e-12)
    return ExactResult(Theta=best_Theta, objective=best, lower_bound=lower, gap=gap,
                       seconds=time.perf_counter() - t0, status="optimal", n_nodes=1 << k)


# --------------------------------------------------------------------------- SCIP

def scip_available() -> bool:
    try:
        import pyscipopt  # noqa: F401
    except ImportError:
        return False
    return True


def scip_mip(X, lambda0: float, lambda2: float, M: float, time_limit: float = 60.0, gap_tol: float = 1e-4,
             perspective: bool = True, assume_centered: bool = False, threads: int = 1,
             polish: bool = True) -> ExactResult:
    """The convex MIP of spec §2.2 in SCIP — stands in for the paper's Gurobi/MOSEK column.

    Variables ``θ_ii > 0``, ``θ_ij ∈ [−M, M]``, ``z_ij ∈ {0, 1}``; ``|θ_ij| ≤ M z_ij``; epigraphs
    ``u_i ≥ −log θ_ii``, ``q_i θ_ii ≥ ‖v_i‖²`` with ``v_i = Fθ_i`` (``FᵀF = S``; a rotated cone) and,
    with ``perspective``,
    ``s_ij z_ij ≥ θ_ij²`` (else ``s_ij ≥ θ_ij²``); minimise ``Σ(u_i + q_i) + λ0Σz + λ2Σs``. The
    returned objective is recomputed from the returned Θ (with ``polish``, after refitting the
    continuous entries on SCIP's support by CD); ``lower_bound`` is SCIP's dual bound.
    """
    X = check_data(X)
    p = X.shape[1]
    if p > MAX_P_SCIP:
        raise ReproError(f"scip_mip: p={p} exceeds its limit of {MAX_P_SCIP}; the off-the-shelf MIP column is for "
                         f"small p (use L0GraphicalModel(solver='bnb') beyond)")
    if M is None or not math.isfinite(float(M)):
        raise ReproError("scip_mip needs a finite M (the big-M bound |θ_ij| ≤ M z_ij)")
    try:
        from pyscipopt import Model, log, quicksum
    except ImportError:
        raise ReproError("scip_mip needs pyscipopt (pip install pyscipopt==6.2.1)") from None
    t0 = time.perf_counter()
    prob = GraphProblem.from_data(X, lambda0, lambda2, M, assume_centered=assume_centered)
    F = prob.Yt.T  # m × p
    m = Model("graphl0")
    m.hideOutput()
    m.setParam("limits/time", float(time_limit))
    m.setParam("limits/gap", float(gap_tol))
    m.setParam("parallel/maxnthreads", int(threads))
    m.setParam("randomization/randomseedshift", 0)
    # valid bounds at any optimum: given the off-diagonals, the best θ_ii is
    # (1 + sqrt(1 + 4 S_ii ‖r‖²))/(2 S_ii) with ‖r‖ ≤ M Σ_{j≠i} sqrt(S_jj), and at least 1/S_ii
    root = np.sqrt(prob.S_diag)
    r_max = prob.M * (root.sum() - root)
    t_lo = 1.0 / prob.S_diag
    t_hi = (1.0 + np.sqrt(1.0 + 4.0 * prob.S_diag * r_max ** 2)) / (2.0 * prob.S_diag)
    t = [m.addVar(f"t{i}", lb=float(t_lo[i]), ub=float(t_hi[i])) for i in range(p)]
    u = [m.addVar(f"u{i}", lb=-math.log(t_hi[i]), ub=-math.log(t_lo[i])) for i in range(p)]
    q = [m.addVar(f"q{i}", lb=0.0, ub=None) for i in range(p)]
    th, z, s = {}, {}, {}
    for i, j in all_pairs(p):
        i, j = int(i), int(j)
        th[i, j] = m.addVar(f"th{i}_{j}", lb=-prob.M, ub=prob.M)
        z[i, j] = m.addVar(f"z{i}_{j}", vtype="B")
        s[i, j] = m.addVar(f"s{i}_{j}", lb=0.0, ub=prob.M ** 2)
        m.addCons(th[i, j] <= prob.M * z[i, j])
        m.addCons(-th[i, j] <= prob.M * z[i, j])
        if perspective:
            m.addCons(th[i, j] * th[i, j] <= s[i, j] * z[i, j])
        else:
            m.addCons(th[i, j] * th[i, j] <= s[i, j])

    def entry(i, j):
        return t[i] if i == j else th[min(i, j), max(i, j)]

    for i in range(p):
        m.addCons(u[i] + log(t[i]) >= 0)
        # v = F θ_i, and q_i θ_ii ≥ ‖v‖² (a rotated second-order cone SCIP recognises)
        v = [m.addVar(f"v{i}_{k}", lb=None, ub=None) for k in range(F.shape[0])]
        for k in range(F.shape[0]):
            m.addCons(v[k] == quicksum(float(F[k, a]) * entry(a, i) for a in range(p) if F[k, a] != 0))
        m.addCons(quicksum(vk * vk for vk in v) <= q[i] * t[i])
    m.setObjective(quicksum(u) + quicksum(q) + lambda0 * quicksum(z.values()) + lambda2 * quicksum(s.values()),
                   "minimize")
    m.optimize()
    status = str(m.getStatus())
    if m.getNSols() == 0:
        raise ReproError(f"scip_mip found no solution within time_limit={time_limit} s (status {status}); raise it")
    sol = m.getBestSol()
    Theta = np.zeros((p, p))
    for i in range(p):
        Theta[i, i] = m.getSolVal(sol, t[i])
    for (i, j), v in th.items():
        val = m.getSolVal(sol, v)
        if m.getSolVal(sol, z[i, j]) < 0.5 or abs(val) < 1e-9:
            val = 0.0
        Theta[i, j] = Theta[j, i] = val
    if polish:  # refit the continuous part on SCIP's support to 1e-13: removes SCIP's tolerance slack
        sp = np.ascontiguousarray(np.argwhere(np.triu(Theta != 0, 1)).astype(np.int64).reshape(-1, 2))
        P, Rt = prob.trivial()
        K.cd_solve(prob.Yt, Rt, P, prob.S_diag, sp, np.full(sp.shape[0], ONE, dtype=np.int64), prob.lambda0,
                   prob.lambda2, prob.M, prob.ratio, 1e-13, 100000, np.empty(1))
        if prob.objective(P) < prob.objective(Theta):
            Theta = P
    obj = prob.objective(Theta)
    lower = float(m.getDualbound())
    return ExactResult(Theta=Theta, objective=obj, lower_bound=lower, gap=(obj - lower) / max(abs(obj), 1e-12),
                       seconds=time.perf_counter() - t0, status=status, n_nodes=int(m.getNNodes()))


# --------------------------------------------------------------------------- graphical lasso

def graphical_lasso(X, alpha: float, max_iter: int = 200, tol: float = 1e-4):
    """scikit-learn's ``GraphicalLasso(alpha)`` fitted on ``X``."""
    from sklearn.covariance import GraphicalLasso

    X = check_data(X)
    if not alpha > 0:
        raise ReproError(f"graphical_lasso: alpha={alpha} must be > 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at tiny alpha: the caller's grid decides
        return GraphicalLasso(alpha=float(alpha), max_iter=max_iter, tol=tol, mode="cd").fit(X)


# --------------------------------------------------------------------------- CONCORD

def concord_objective(Omega: np.ndarray, S: np.ndarray, lam: float) -> float:
    d = np.diag(Omega)
    if np.any(d <= 0):
        return math.inf
    off = Omega - np.diag(d)
    return float(-np.sum(np.log(d)) + 0.5 * np.sum(Omega * (S @ Omega)) + lam * np.abs(off).sum())


def concord(X, lam: float, tol: float = 1e-6, max_iter: int = 2000) -> np.ndarray:
    """CONCORD-ℓ1 precision estimate by proximal gradient with backtracking (CONCORD-ISTA) on
    ``−Σ log ω_ii + ½ tr(ΩSΩ) + λ Σ_{i≠j}|ω_ij|``, ``S`` the maximum-likelihood covariance."""
    X = check_data(X)
    if not lam >= 0:
        raise ReproError(f"concord: lam={lam} must be ≥ 0")
    Y = (X - X.mean(axis=0)) / math.sqrt(X.shape[0])
    S = Y.T @ Y
    p = S.shape[0]
    eye = np.eye(p, dtype=bool)

    def smooth(O):
        d = np.diag(O)
        return -np.sum(np.log(d)) + 0.5 * np.sum(O * (S @ O)) if np.all(d > 0) else math.inf

    def grad(O):
        SO = S @ O
        return 0.5 * (SO + SO.T) - np.diag(1.0 / np.diag(O))

    def prox(A, step):
        out = np.sign(A) * np.maximum(np.abs(A) - step * lam, 0.0)
        out[eye] = A[eye]
        return out

    O = np.diag(1.0 / np.diag(S))
    g, h = grad(O), smooth(O)
    step = 1.0 / max(np.linalg.eigvalsh(S)[-1], 1e-12)
    for _ in range(max_iter):
        while True:
            On = prox(O - step * g, step)
            hn = smooth(On)
            D = On - O
            if math.isfinite(hn) and hn <= h + np.sum(g * D) + np.sum(D * D) / (2 * step) + 1e-15:
                break
            step /= 2
            if step < 1e-14:
                return O
        gn = grad(On)
        change = np.linalg.norm(D) / max(1.0, np.linalg.norm(O))
        dg = np.sum(D * (gn - g))
        O, g, h = On, gn, hn
        if change < tol:
            break
        step = float(np.sum(D * D) / dg) if dg > 0 else step * 2  # Barzilai–Borwein guess, then backtrack
    return 0.5 * (O + O.T)


# --------------------------------------------------------------------------- nodewise lasso

def nodewise_regressions(X, alpha: float, max_iter: int = 5000, tol: float = 1e-6):
    """``(B, var, mean)``: ``B[i, j]`` the Lasso coefficient of ``X_j`` in the regression of ``X_i``
    on the other (centred) columns, ``var[i]`` its residual variance, ``mean`` the column means."""
    from sklearn.linear_model import Lasso

    X = check_data(X)
    if not alpha > 0:
        raise ReproError(f"nodewise_lasso: alpha={alpha} must be > 0")
    p = X.shape[1]
    mean = X.mean(axis=0)
    Xc = X - mean
    B = np.zeros((p, p))
    var = np.zeros(p)
    for i in range(p):
        rest = np.delete(np.arange(p), i)
        fit = Lasso(alpha=float(alpha), fit_intercept=False, max_iter=max_iter, tol=tol).fit(Xc[:, rest], Xc[:, i])
        B[i, rest] = fit.coef_
        var[i] = max(float(np.mean((Xc[:, i] - Xc[:, rest] @ fit.coef_) ** 2)), 1e-12)
    return B, var, mean


def nodewise_precision(B: np.ndarray, var: np.ndarray, rule: str = "and") -> np.ndarray:
    """The precision estimate of the regressions under the AND / OR rule."""
    if rule not in ("and", "or"):
        raise ReproError(f"nodewise_lasso: rule={rule!r} must be 'and' or 'or'")
    sel = B != 0
    edges = (sel & sel.T) if rule == "and" else (sel | sel.T)
    est = -B / var[:, None]
    Theta = np.where(edges, 0.5 * (est + est.T), 0.0)
    np.fill_diagonal(Theta, 1.0 / var)
    return Theta


def nodewise_lasso(X, alpha: float, rule: str = "and", max_iter: int = 5000, tol: float = 1e-6) -> np.ndarray:
    """Meinshausen–Bühlmann neighbourhood selection: regress each column on the others with
    ``sklearn.linear_model.Lasso(alpha)``; pair ``(i, j)`` is an edge when both (``"and"``) or either
    (``"or"``) regression selects the other; the precision estimate on that support is
    ``θ_ii = 1/σ̂_i²``, ``θ_ij = −½(β̂_ij/σ̂_i² + β̂_ji/σ̂_j²)``."""
    if rule not in ("and", "or"):
        raise ReproError(f"nodewise_lasso: rule={rule!r} must be 'and' or 'or'")
    B, var, _ = nodewise_regressions(X, alpha, max_iter, tol)
    return nodewise_precision(B, var, rule)


def nodewise_prediction_error(X_val, B: np.ndarray, mean: np.ndarray) -> float:
    """Held-out mean squared error of the nodewise regressions ``B`` (the tuning criterion)."""
    V = check_data(X_val, "X_val") - mean
    return float(np.mean((V - V @ B.T) ** 2))
