"""Exact solvers for small instances: exhaustive enumeration of supports, and outer
approximation (OA) with the master MIQP on SCIP (specs/other-papers.md §6.2, §9.2).

Given the supports z, the problem is a ridge regression on the chosen coordinates (coupled
across tasks when λ₂ > 0), so the optimum is ``min_z F(z) + (λ_z/2) Σ_k ‖z_k − z̄‖²``.

*Enumeration* evaluates F on every feasible z. With λ_z = 0 (or a common support) the loss can
only fall when a coordinate is added, so only supports of size exactly min(s, p) are needed;
with λ_z > 0 every size 0..s is, because the z̄ term can prefer a smaller support. With λ₂ = 0
the tasks decouple: every task's subsets are solved once in batches and the combinations are
scored in vectorised chunks (limit :data:`MAX_COMBINATIONS`); with λ₂ > 0 each combination is a
joint solve (limit :data:`MAX_COUPLED_COMBINATIONS`). Beyond a limit it fails with a ReproError.

*Outer approximation* (facts from ``Exact Solvers/OA.jl``): big-M constraints ``|β_jk| <= M z_jk``;
the master problem ``min Σ_k η_k + (λ_z/2) Σ_{j,k}(z_jk − z̄_j)²`` over binary z with
``Σ_j z_jk <= s``; for the master's z⁰ the subproblem (box-constrained ridge, here solved exactly
by bounded least squares) gives ``F_k(z⁰)`` and the cut
``η_k >= F_k(z⁰) + Σ_j G_jk (z_jk − z⁰_jk)``, ``G_jk = −M |∂f/∂β_jk|`` at the subproblem's
solution; stop at relative gap (UB − LB)/UB <= 0.05, 100 iterations or 180 s; master time limit
60 s. The released code has a ridge penalty and λ_z only; with λ₂ > 0 the tasks do not decouple,
so one aggregated cut on a single η is added (same derivation). The released code hands the
master's quadratic z̄ term to Gurobi (``NonConvex=2``); on binaries it equals
``(1 − 1/K) Σ_k z_jk − (2/K) Σ_{k<l} z_jk z_jl``, and with each product replaced by a variable
``w <= z_jk, w <= z_jl`` (exact, since w has a negative cost) the master is a MILP, which SCIP
solves faster than the quadratic form. SCIP's cut separation is off for the master (on these
small masters it cost about 20 times the rest of the solve).
"""
from __future__ import annotations

import time
from itertools import combinations, product
from math import comb

import numpy as np

from reprise.io import ReproError
from reprise.mtl._core import TaskData, internal_objective, zbar_penalty
from reprise.mtl.iht import Fit, Penalties
from reprise.sparsity import mip_backend

#: enumeration limits (number of support combinations evaluated)
MAX_COMBINATIONS = 2_000_000
MAX_COUPLED_COMBINATIONS = 20_000
#: OA stop rules and defaults (OA.jl; M multiplier from the 2024 simulation scripts)
OA_GAP = 0.05
OA_MAX_ITER = 100
OA_TIME_LIMIT = 180.0
OA_MASTER_TIME_LIMIT = 60.0
BIG_M_MULTIPLIER = 1.5
_CHUNK = 1 << 16


# --------------------------------------------------------------------------- sizes

def support_sizes(p: int, s: int, pen: Penalties, common: bool) -> list[int]:
    top = min(s, p)
    return [top] if (common or pen.lambda_z == 0) else list(range(top + 1))


def n_combinations(p: int, K: int, s: int, pen: Penalties, common: bool) -> int:
    """How many support combinations exhaustive enumeration evaluates."""
    per_task = sum(comb(p, t) for t in support_sizes(p, s, pen, common))
    return per_task if common else per_task ** K


def enumeration_limit(pen: Penalties, common: bool) -> int:
    return MAX_COMBINATIONS if (pen.lambda2 == 0) else MAX_COUPLED_COMBINATIONS


def check_enumerable(p: int, K: int, s: int, pen: Penalties, common: bool, limit: int | None = None) -> int:
    n = n_combinations(p, K, s, pen, common)
    limit = enumeration_limit(pen, common) if limit is None else limit
    if n > limit:
        coupled = ", and lambda2 > 0 makes each one a joint solve" if pen.lambda2 else ""
        raise ReproError(
            f"exhaustive enumeration would evaluate {n:,} support combinations (p={p}, K={K}, s={s}"
            f"{coupled}), more than the "
            f"limit of {limit:,}; use exact_method='oa' (outer approximation on SCIP), solver='iht', a smaller "
            f"instance, or raise max_enumeration")
    return n


# --------------------------------------------------------------------------- ridge on given supports

def _subset_values(G: np.ndarray, c: np.ndarray, yy: float, subsets: np.ndarray, lambda1: float):
    """Batched ridge on every subset (rows of ``subsets``, all the same size t) of one task:
    returns (values, betas) with values = min over β of ½βᵀGβ − cᵀβ + ½yy + (λ₁/2)‖β‖²."""
    m, t = subsets.shape
    if t == 0:
        return np.full(m, 0.5 * yy), np.zeros((m, 0))
    Gs = G[subsets[:, :, None], subsets[:, None, :]] + lambda1 * np.eye(t)
    cs = c[subsets]
    if lambda1 > 0:
        beta = np.linalg.solve(Gs, cs[..., None])[..., 0]
    else:
        beta = (np.linalg.pinv(Gs, hermitian=True) @ cs[..., None])[..., 0]
    return 0.5 * yy - 0.5 * (cs * beta).sum(-1), beta


def ridge_on_support(data: TaskData, Z: np.ndarray, pen: Penalties) -> tuple[np.ndarray, float]:
    """Optimal coefficients on the supports Z (unbounded) and the smooth part of the objective."""
    K, p = Z.shape
    B = np.zeros((K, p))
    if pen.lambda2 == 0:
        total = 0.0
        for k in range(K):
            idx = np.flatnonzero(Z[k])
            val, beta = _subset_values(data.G[k], data.c[k], data.yy[k], idx[None, :], pen.lambda1)
            B[k, idx] = beta[0]
            total += float(val[0])
        return B, total
    var = [(k, j) for k in range(K) for j in np.flatnonzero(Z[k])]
    if not var:
        return B, 0.5 * float(data.yy.sum())
    ks = np.array([v[0] for v in var])
    js = np.array([v[1] for v in var])
    same_task = ks[:, None] == ks[None, :]
    H = np.where(same_task, data.G[ks[:, None], js[:, None], js[None, :]], 0.0)
    H += (pen.lambda1 + pen.lambda2) * np.eye(len(var))
    H -= (pen.lambda2 / K) * (js[:, None] == js[None, :])
    rhs = data.c[ks, js]
    try:
        sol = np.linalg.solve(H, rhs)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(H, rhs, rcond=None)[0]
    B[ks, js] = sol
    return B, 0.5 * float(data.yy.sum()) - 0.5 * float(rhs @ sol)


# --------------------------------------------------------------------------- enumeration

def enumerate_supports(data: TaskData, s: int, pen: Penalties, common: bool, *,
                       max_combinations: int | None = None) -> Fit:
    """The exact optimum by exhaustive enumeration (ties go to the first support in
    lexicographic order of the tasks' subsets, smaller sizes first)."""
    t0 = time.perf_counter()
    K, p = data.K, data.p
    n_total = check_enumerable(p, K, s, pen, common, max_combinations)
    sizes = support_sizes(p, s, pen, common)
    subsets = [np.array(list(combinations(range(p), t)), dtype=int).reshape(comb(p, t), t) for t in sizes]
    masks = np.concatenate([_masks(sub, p) for sub in subsets])            # (m, p) bool
    m = masks.shape[0]
    if pen.lambda2 == 0:
        values = np.stack([np.concatenate([_subset_values(data.G[k], data.c[k], data.yy[k], sub, pen.lambda1)[0]
                                           for sub in subsets]) for k in range(K)])   # (K, m)
        if common:
            best_flat = int(np.argmin(values.sum(axis=0)))
            Z = np.broadcast_to(masks[best_flat], (K, p)).copy()
        else:
            best_val, best_flat = np.inf, 0
            shape = (m,) * K
            counts_of = masks.astype(np.int64)
            for start in range(0, n_total, _CHUNK):
                flat = np.arange(start, min(start + _CHUNK, n_total))
                idx = np.unravel_index(flat, shape)
                tot = sum(values[k][idx[k]] for k in range(K))
                if pen.lambda_z:
                    cnt = sum(counts_of[idx[k]] for k in range(K))
                    tot = tot + 0.5 * pen.lambda_z * (cnt * (K - cnt) / K).sum(axis=1)
                j = int(np.argmin(tot))
                if tot[j] < best_val:
                    best_val, best_flat = float(tot[j]), int(flat[j])
            idx = np.unravel_index(best_flat, shape)
            Z = np.stack([masks[idx[k]] for k in range(K)])
    else:
        best_val, Z = np.inf, None
        combos = (np.broadcast_to(masks[i], (K, p)) for i in range(m)) if common else \
            (np.stack([masks[i] for i in ix]) for ix in product(range(m), repeat=K))
        for Zc in combos:
            _, val = ridge_on_support(data, Zc, pen)
            if pen.lambda_z and not common:
                val += 0.5 * pen.lambda_z * zbar_penalty(Zc)
            if val < best_val:
                best_val, Z = val, np.array(Zc)
    B, _ = ridge_on_support(data, Z, pen)
    obj = internal_objective(data, B, Z, pen.lambda1, pen.lambda2, pen.lambda_z)
    return Fit(B=B, Z=Z, objective=obj, method="enumerate", lower_bound=obj, gap=0.0, n_evaluated=n_total,
               time_s=time.perf_counter() - t0)


def _masks(sub: np.ndarray, p: int) -> np.ndarray:
    mk = np.zeros((sub.shape[0], p), dtype=bool)
    if sub.shape[1]:
        np.put_along_axis(mk, sub, True, axis=1)
    return mk


# --------------------------------------------------------------------------- outer approximation

def _scip():
    try:
        mip_backend("scip")
        import pyscipopt
    except ReproError as exc:
        raise ReproError(f"outer approximation needs SCIP: {exc}; or use exact_method='enumerate' "
                         f"for small instances") from None
    except ImportError as exc:  # installed but broken (e.g. a missing shared library)
        raise ReproError(f"outer approximation needs SCIP, but importing pyscipopt failed ({exc}); reinstall "
                         f"pyscipopt or use exact_method='enumerate' for small instances") from None
    return pyscipopt


def _bounded_subproblem(data: TaskData, Z: np.ndarray, pen: Penalties, M: float):
    """min f(β) s.t. β_jk = 0 off Z and |β_jk| <= M on Z, by bounded least squares; returns
    (B, per-task values or [total], gradient of f at B)."""
    from scipy.optimize import lsq_linear

    K, p = Z.shape
    B = np.zeros((K, p))

    def solve_block(cols_X, target, extra_rows):
        if cols_X.shape[1] == 0:
            return np.zeros(0)
        A = np.vstack([cols_X] + extra_rows) if extra_rows else cols_X
        d = np.concatenate([target, np.zeros(A.shape[0] - target.shape[0])])
        res = lsq_linear(A, d, bounds=(-M, M), method="bvls", tol=1e-12)
        return res.x

    if pen.lambda2 == 0:
        values = []
        for k in range(K):
            idx = np.flatnonzero(Z[k])
            sq = np.sqrt(data.n[k])
            extra = [np.sqrt(pen.lambda1) * np.eye(idx.size)] if pen.lambda1 > 0 and idx.size else []
            B[k, idx] = solve_block(data.X[k][:, idx] / sq, data.y[k] / sq, extra)
            r = data.y[k] - data.X[k] @ B[k]
            values.append(float(r @ r) / (2 * data.n[k]) + 0.5 * pen.lambda1 * float(B[k] @ B[k]))
    else:
        var = [(k, j) for k in range(K) for j in np.flatnonzero(Z[k])]
        col = {v: i for i, v in enumerate(var)}
        nv = len(var)
        rows, targets = [], []
        for k in range(K):
            blk = np.zeros((data.n[k], nv))
            for j in np.flatnonzero(Z[k]):
                blk[:, col[(k, j)]] = data.X[k][:, j]
            rows.append(blk / np.sqrt(data.n[k]))
            targets.append(data.y[k] / np.sqrt(data.n[k]))
        extra = []
        if pen.lambda1 > 0 and nv:
            extra.append(np.sqrt(pen.lambda1) * np.eye(nv))
        P = np.eye(K) - 1.0 / K
        for j in np.flatnonzero(Z.any(axis=0)):
            blk = np.zeros((K, nv))
            for k in np.flatnonzero(Z[:, j]):
                blk[:, col[(k, j)]] = P[:, k]
            extra.append(np.sqrt(pen.lambda2) * blk)
        x = solve_block(np.vstack(rows), np.concatenate(targets), extra)
        for (k, j), v in zip(var, x):
            B[k, j] = v
        values = [internal_objective(data, B, Z, pen.lambda1, pen.lambda2, 0.0)]
    grad = np.einsum("kij,kj->ki", data.G, B) - data.c + pen.lambda1 * B
    if pen.lambda2:
        grad += pen.lambda2 * (B - B.mean(axis=0))
    return B, values, grad


def outer_approximation(data: TaskData, s: int, pen: Penalties, common: bool, Z0: np.ndarray, *,
                        big_m: float, gap_tol: float = OA_GAP, max_iter: int = OA_MAX_ITER,
                        time_limit: float = OA_TIME_LIMIT,
                        master_time_limit: float = OA_MASTER_TIME_LIMIT) -> Fit:
    """Outer approximation from the initial supports Z0 (e.g. the IHT solution's)."""
    scip = _scip()
    t0 = time.perf_counter()
    K, p = data.K, data.p
    if not (np.isfinite(big_m) and big_m > 0):
        raise ReproError(f"big_m={big_m!r} must be a finite number > 0")
    Z0 = np.asarray(Z0, dtype=bool)
    if common:
        Z0 = np.broadcast_to(Z0.any(axis=0) if Z0.ndim == 2 else Z0, (K, p)).copy()
    model = scip.Model("smtl-oa-master")
    model.hideOutput()
    # SCIP's cutting planes cost ~20x the whole solve on these small masters (measured); off
    model.setSeparating(scip.SCIP_PARAMSETTING.OFF)
    if common:
        zc = [model.addVar(vtype="B", name=f"z_{j}") for j in range(p)]
        zv = [[zc[j] for j in range(p)] for _ in range(K)]
        model.addCons(scip.quicksum(zc) <= min(s, p))
    else:
        zv = [[model.addVar(vtype="B", name=f"z_{j}_{k}") for j in range(p)] for k in range(K)]
        for k in range(K):
            model.addCons(scip.quicksum(zv[k]) <= min(s, p))
    per_task = pen.lambda2 == 0
    etas = [model.addVar(lb=0.0, name=f"eta_{k}") for k in range(K if per_task else 1)]
    obj_expr = scip.quicksum(etas)
    if pen.lambda_z and not common:
        # On binaries Σ_k (z_jk − z̄_j)² = (1 − 1/K) Σ_k z_jk − (2/K) Σ_{k<l} z_jk z_jl; each product
        # becomes w_jkl <= z_jk, w_jkl <= z_jl (exact here: w has a negative cost, so it sits at
        # min(z_jk, z_jl)), which keeps the master a MILP.
        terms = []
        for j in range(p):
            terms.append((1 - 1 / K) * scip.quicksum(zv[k][j] for k in range(K)))
            for k in range(K):
                for l in range(k + 1, K):
                    w = model.addVar(lb=0.0, ub=1.0, name=f"w_{j}_{k}_{l}")
                    model.addCons(w <= zv[k][j])
                    model.addCons(w <= zv[l][j])
                    terms.append(-(2 / K) * w)
        obj_expr = obj_expr + 0.5 * pen.lambda_z * scip.quicksum(terms)
    model.setObjective(obj_expr, "minimize")

    best_ub, best_B, best_Z = np.inf, None, None
    lb, gap, it = -np.inf, np.inf, 0
    while it < max_iter:
        it += 1
        B, values, grad = _bounded_subproblem(data, Z0, pen, big_m)
        ub = float(sum(values)) + (0.5 * pen.lambda_z * zbar_penalty(Z0) if not common else 0.0)
        if ub < best_ub:
            best_ub, best_B, best_Z = ub, B, Z0.copy()
        Gcut = -big_m * np.abs(grad)                                   # (K, p)
        model.freeTransform()
        if per_task:
            for k in range(K):
                model.addCons(etas[k] >= values[k] + scip.quicksum(
                    float(Gcut[k, j]) * (zv[k][j] - float(Z0[k, j])) for j in range(p) if Gcut[k, j] != 0))
        else:
            model.addCons(etas[0] >= values[0] + scip.quicksum(
                float(Gcut[k, j]) * (zv[k][j] - float(Z0[k, j])) for k in range(K) for j in range(p)
                if Gcut[k, j] != 0))
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0:
            break
        model.setParam("limits/time", max(1.0, min(master_time_limit, left)))
        model.optimize()
        if model.getNSols() == 0:
            break
        lb = max(lb, float(model.getDualbound()))
        sol = model.getBestSol()
        Z0 = np.array([[model.getSolVal(sol, zv[k][j]) > 0.5 for j in range(p)] for k in range(K)])
        gap = (best_ub - lb) / best_ub if best_ub > 0 else 0.0
        if gap <= gap_tol or time.perf_counter() - t0 > time_limit:
            break
    obj = internal_objective(data, best_B, best_Z, pen.lambda1, pen.lambda2, pen.lambda_z)
    return Fit(B=best_B, Z=best_Z, objective=obj, method="oa", lower_bound=lb, gap=max(gap, 0.0), n_iter=it,
               time_s=time.perf_counter() - t0)
