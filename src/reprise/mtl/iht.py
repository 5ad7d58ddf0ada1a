"""The approximate algorithm of specs/other-papers.md §6.3: iterative hard thresholding over all
tasks at once, an active set, a swap local search, and warm starts along a tuning path.

Facts taken from the package (``gloewing/sMTL``, ``BlockComIHT_inexactAS_*_old.jl`` and
``BlockInexactLS.jl``): the step is ``0.5 / L`` with ``L`` the largest ``σ_max(X_k)²/n_k`` plus
``λ₁ + λ₂`` (recomputed on the active columns whenever the active set grows); the inner loop runs
on the active set until the relative change of the objective falls below 1e-6, then one step
over all p features lets new coordinates in, and the fit stops when none enters; the local
search swaps one in-support coordinate of one task for one out-of-support coordinate, with the
new coefficient at its univariate optimum and everything else fixed, and takes the best swap of
each task per pass while it lowers the objective; ``LocSrch_maxIter = 50`` passes; the warm-start
model has support ``min(3s, p)``, the largest ridge value, no sharing penalties, 500 iterations
and no local search.

Support selection with the z̄ penalty, in our words. On 0/1 supports
``Σ_k (z_jk − z̄_j)² = c_j − c_j²/K`` with ``c_j = Σ_k z_jk``, a concave function of z. Its
tangent at the current supports is therefore an upper bound, and together with the usual
quadratic upper bound of the smooth part (curvature ``1/η``, η the step) it gives a surrogate
whose exact minimiser keeps, per task, the s coordinates with the largest positive score

``c_jk = β̃_jk² / (2η) + (λ_z/2)(2 z̄_j − 1)``,   ``β̃ = β − η ∇f(β)``.

Coordinates used by more than half of the tasks get a bonus, the others a charge. This is the
package's score ``β̃² + n(λ_z/L)(z̄² − (z̃ − z̄)²)`` (for β̃ ≠ 0 it equals
``β̃² + n(λ_z/L)(2z̄ − 1)``) up to the factor on λ_z: the package multiplies λ_z by n in the
score but not in the objective, so the same number means about ``2n`` times more support
sharing there than in the objective it reports. Here λ_z means the same thing in the score and in
the objective, and every step (active-set, full, local search) lowers the objective or leaves it
unchanged; ``objective_trace`` records it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reprise.mtl._core import TaskData, internal_objective
from reprise.sparsity import top_k_mask

#: package defaults (``sMTL::smtl``)
MAX_ITER = 10_000
LOCAL_SEARCH_ITER = 50
TOL = 1e-6
STEP = 0.5
WARM_START_MULTIPLIER = 3
WARM_START_ITER = 500
#: IHT → local search → IHT ... rounds (the package runs one IHT and one local search; we resume
#: IHT after a local search that moved, which can only lower the objective further)
MAX_ROUNDS = 5


@dataclass(frozen=True)
class Penalties:
    lambda1: float = 0.0
    lambda2: float = 0.0
    lambda_z: float = 0.0


@dataclass
class Fit:
    """A solution on the prepared (centred / standardised) scale."""

    B: np.ndarray                 # (K, p) coefficients
    Z: np.ndarray                 # (K, p) bool supports (may hold zeros of B)
    objective: float
    trace: list[float] = field(default_factory=list)
    n_iter: int = 0
    n_swaps: int = 0
    method: str = "iht"
    lower_bound: float | None = None
    gap: float | None = None
    n_evaluated: int = 0
    time_s: float = 0.0


# --------------------------------------------------------------------------- helpers

def _top_positive(score: np.ndarray, s: int, axis: int | None) -> np.ndarray:
    """Mask of the s largest entries of ``score`` (per slice along axis) that are > 0."""
    pos = np.maximum(score, 0.0)
    return top_k_mask(pos, min(s, score.shape[-1] if axis is not None else score.size), axis=axis) & (score > 0)


def threshold(B0: np.ndarray, s: int, common: bool) -> tuple[np.ndarray, np.ndarray]:
    """Keep the s largest |β| per task (or the s rows of largest Σ_k β², with a common support)."""
    B0 = np.asarray(B0, dtype=float)
    if common:
        rows = _top_positive((B0 ** 2).sum(axis=0), s, axis=None)
        Z = np.broadcast_to(rows, B0.shape).copy()
    else:
        Z = _top_positive(np.abs(B0), s, axis=1)
    return np.where(Z, B0, 0.0), Z


def _lipschitz(G: np.ndarray, pen: Penalties) -> float:
    if G.shape[1] == 0:
        return pen.lambda1 + pen.lambda2 + 1.0
    top = float(np.linalg.eigvalsh(G)[:, -1].max())
    return max(top, 0.0) + pen.lambda1 + pen.lambda2 + 1e-12


def _smooth(G, c, yy, B, GB, pen: Penalties) -> float:
    val = 0.5 * np.einsum("ki,ki->", B, GB) - np.einsum("ki,ki->", c, B) + 0.5 * yy.sum()
    val += 0.5 * pen.lambda1 * float((B ** 2).sum())
    if pen.lambda2:
        val += 0.5 * pen.lambda2 * float(((B - B.mean(axis=0)) ** 2).sum())
    return float(val)


def _zpen(Z: np.ndarray, lambda_z: float) -> float:
    if not lambda_z:
        return 0.0
    Zf = Z.astype(float)
    return 0.5 * lambda_z * float(((Zf - Zf.mean(axis=0)) ** 2).sum())


def _mm_step(B, Z, GB, c, pen: Penalties, eta: float, s: int, common: bool):
    """One majorise-minimise step on the coordinates of B (all of them selectable)."""
    grad = GB - c + pen.lambda1 * B
    if pen.lambda2:
        grad = grad + pen.lambda2 * (B - B.mean(axis=0))
    Bt = B - eta * grad
    if common:
        sel = _top_positive((Bt ** 2).sum(axis=0), s, axis=None)
        Znew = np.broadcast_to(sel, B.shape).copy()
    else:
        score = Bt ** 2 / (2 * eta)
        if pen.lambda_z:
            score = score + 0.5 * pen.lambda_z * (2 * Z.mean(axis=0) - 1)
        Znew = _top_positive(score, s, axis=1)
    return np.where(Znew, Bt, 0.0), Znew


# --------------------------------------------------------------------------- IHT with active sets

def iht(data: TaskData, s: int, pen: Penalties, common: bool, B: np.ndarray, Z: np.ndarray, *,
        max_iter: int = MAX_ITER, tol: float = TOL, step: float = STEP):
    """IHT with the active-set strategy, from the feasible point (B, Z).

    Returns (B, Z, trace, n_steps); trace[0] is the objective at the start.
    """
    B, Z = B.copy(), Z.copy()
    K, p = B.shape
    active = Z.any(axis=0)
    L_full = _lipschitz(data.G, pen)
    GB = np.einsum("kij,kj->ki", data.G, B)
    obj = _smooth(data.G, data.c, data.yy, B, GB, pen) + _zpen(Z, pen.lambda_z)
    trace = [obj]
    budget = max_iter
    for _outer in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size and budget > 0:
            # inner loop on the active columns (B and Z are zero elsewhere, so z̄ is unchanged)
            G_A, c_A = data.G[:, idx][:, :, idx], data.c[:, idx]
            eta = step / _lipschitz(G_A, pen)
            B_A, Z_A = B[:, idx], Z[:, idx]
            GB_A = np.einsum("kij,kj->ki", G_A, B_A)
            while budget > 0:
                B_A, Z_A = _mm_step(B_A, Z_A, GB_A, c_A, pen, eta, s, common)
                budget -= 1
                GB_A = np.einsum("kij,kj->ki", G_A, B_A)
                obj_new = _smooth(G_A, c_A, data.yy, B_A, GB_A, pen) + _zpen(Z_A, pen.lambda_z)
                trace.append(obj_new)
                done = abs(obj - obj_new) <= tol * max(abs(obj), 1e-300)
                obj = obj_new
                if done:
                    break
            B = np.zeros((K, p))
            Z = np.zeros((K, p), dtype=bool)
            B[:, idx], Z[:, idx] = B_A, Z_A
            GB = np.einsum("kij,kj->ki", data.G[:, :, idx], B_A)
        elif not idx.size:
            GB = np.zeros((K, p))
        # one step over all p features lets new coordinates in
        B, Z = _mm_step(B, Z, GB, data.c, pen, step / L_full, s, common)
        budget -= 1
        GB = np.einsum("kij,kj->ki", data.G, B)
        obj = _smooth(data.G, data.c, data.yy, B, GB, pen) + _zpen(Z, pen.lambda_z)
        trace.append(obj)
        new = Z.any(axis=0) & ~active
        active |= new
        if not new.any() or budget <= 0:
            break
    return B, Z, trace, max_iter - max(budget, 0)


# --------------------------------------------------------------------------- local search

def _accept(delta: float, obj: float) -> bool:
    return delta < -1e-10 * (1.0 + abs(obj))


def local_search(data: TaskData, s: int, pen: Penalties, common: bool, B: np.ndarray, Z: np.ndarray,
                 max_iter: int = LOCAL_SEARCH_ITER):
    """Swap local search; returns (B, Z, n_moves). Each accepted move lowers the objective."""
    if common:
        return _local_search_common(data, s, pen, B, Z, max_iter)
    return _local_search_tasks(data, s, pen, B, Z, max_iter)


def _local_search_tasks(data: TaskData, s: int, pen: Penalties, B, Z, max_iter: int):
    """Per task, the best of: swap i (in) for j (out), add j (when |z_k| < s), drop i; the new
    coefficient at its univariate optimum, all other coefficients fixed; exact objective change."""
    l1, l2, lz = pen.lambda1, pen.lambda2, pen.lambda_z
    B, Z = B.copy(), Z.copy()
    K, p = B.shape
    diag = np.einsum("kii->ki", data.G)
    S = B.sum(axis=0)                       # Σ_k β_jk
    m = Z.sum(axis=0).astype(float)         # tasks using feature j
    obj = internal_objective(data, B, Z, l1, l2, lz)
    moves = 0
    for _ in range(max_iter):
        moved = False
        for k in range(K):
            q = data.c[k] - data.G[k] @ B[k]        # X_kᵀ r_k / n_k
            inn, out = np.flatnonzero(Z[k]), np.flatnonzero(~Z[k])
            best, move = 0.0, None
            if out.size:
                A = 0.5 * (diag[k, out] + l1 + l2 * (1 - 1 / K))
                dz_add = lz / (2 * K) * (K - 2 * m[out] - 1)
                safe_A = np.where(A > 0, A, 1.0)
            if inn.size:
                a = B[k, inn]
                d_rem = (0.5 * a ** 2 * diag[k, inn] + a * q[inn] - 0.5 * l1 * a ** 2
                         + 0.5 * l2 * (-a ** 2 + (2 * S[inn] * a - a ** 2) / K)
                         + lz / (2 * K) * (2 * m[inn] - K - 1))
                i = int(np.argmin(d_rem))
                if d_rem[i] < best:
                    best, move = float(d_rem[i]), (inn[i], None, 0.0)
                if out.size:
                    qp = q[out][None, :] + data.G[k][np.ix_(inn, out)] * a[:, None]
                    Bq = -qp - l2 * S[out][None, :] / K
                    gain = np.where(A > 0, -Bq ** 2 / (4 * safe_A), 0.0)
                    delta = d_rem[:, None] + gain + dz_add[None, :]
                    flat = int(np.argmin(delta))
                    ii, jj = divmod(flat, out.size)
                    if delta[ii, jj] < best:
                        t = float(np.where(A[jj] > 0, -Bq[ii, jj] / (2 * safe_A[jj]), 0.0))
                        best, move = float(delta[ii, jj]), (inn[ii], out[jj], t)
            if out.size and inn.size < s:
                Bq = -q[out] - l2 * S[out] / K
                delta = np.where(A > 0, -Bq ** 2 / (4 * safe_A), 0.0) + dz_add
                jj = int(np.argmin(delta))
                if delta[jj] < best:
                    t = float(-Bq[jj] / (2 * safe_A[jj])) if A[jj] > 0 else 0.0
                    best, move = float(delta[jj]), (None, out[jj], t)
            if move is None or not _accept(best, obj):
                continue
            i, j, t = move
            if i is not None:
                S[i] -= B[k, i]
                m[i] -= 1
                B[k, i], Z[k, i] = 0.0, False
            if j is not None:
                S[j] += t
                m[j] += 1
                B[k, j], Z[k, j] = t, True
            obj += best
            moves += 1
            moved = True
        if not moved:
            break
    return B, Z, moves


def _local_search_common(data: TaskData, s: int, pen: Penalties, B, Z, max_iter: int):
    """Common support: swap a feature row i (in) for a row j (out) in every task at once, with
    the new row at its joint optimum (a K×K system: diagonal plus the rank-one β̄ coupling,
    solved by Sherman–Morrison), or add a row while fewer than s are in."""
    l1, l2 = pen.lambda1, pen.lambda2
    B, Z = B.copy(), Z.copy()
    K, p = B.shape
    diag = np.einsum("kii->ki", data.G)          # (K, p)
    c0 = l2 / K
    obj = internal_objective(data, B, Z, l1, l2, 0.0)
    moves = 0

    def add_gain(g, d):
        """min over t of ½tᵀHt − gᵀt with H = diag(d) − c0·11ᵀ; g, d (..., K)."""
        ok = d > 0
        u = np.where(ok, g / np.where(ok, d, 1.0), 0.0)
        w = np.where(ok, 1.0 / np.where(ok, d, 1.0), 0.0)
        su, den = u.sum(-1), 1.0 - c0 * w.sum(-1)
        corr = np.where(den > 1e-12, c0 * su / np.where(den > 1e-12, den, 1.0), 0.0)
        quad = (g * u).sum(-1) + corr * su
        return -0.5 * quad, u + corr[..., None] * w

    for _ in range(max_iter):
        rows = Z[0]
        inn, out = np.flatnonzero(rows), np.flatnonzero(~rows)
        if not out.size:
            break
        Q = data.c - np.einsum("kij,kj->ki", data.G, B)        # (K, p)
        d = (diag[:, out] + l1 + l2).T                            # (|out|, K)
        best, move = 0.0, None
        if inn.size:
            a = B[:, inn]                                          # (K, |inn|)
            d_rem = ((0.5 * a ** 2 * diag[:, inn] + a * Q[:, inn]).sum(0) - 0.5 * l1 * (a ** 2).sum(0)
                     - 0.5 * l2 * ((a ** 2).sum(0) - a.sum(0) ** 2 / K))
            # g[i, j, k] = q_kj + G_k[j, i] a_ki
            Gji = data.G[:, out][:, :, inn]                        # (K, |out|, |inn|)
            g = Q[:, out].T[None, :, :] + np.transpose(Gji * a[:, None, :], (2, 1, 0))
            gain, tt = add_gain(g, d[None, :, :])
            delta = d_rem[:, None] + gain
            flat = int(np.argmin(delta))
            ii, jj = divmod(flat, out.size)
            if delta[ii, jj] < best:
                best, move = float(delta[ii, jj]), (inn[ii], out[jj], tt[ii, jj])
        if inn.size < s:
            gain, tt = add_gain(Q[:, out].T, d)
            jj = int(np.argmin(gain))
            if gain[jj] < best:
                best, move = float(gain[jj]), (None, out[jj], tt[jj])
        if move is None or not _accept(best, obj):
            break
        i, j, t = move
        if i is not None:
            B[:, i], Z[:, i] = 0.0, False
        B[:, j], Z[:, j] = t, True
        obj += best
        moves += 1
    return B, Z, moves


# --------------------------------------------------------------------------- drivers

def solve(data: TaskData, s: int, pen: Penalties, common: bool, B0: np.ndarray | None = None,
          Z0: np.ndarray | None = None, *, max_iter: int = MAX_ITER, tol: float = TOL, step: float = STEP,
          local_search_iter: int = LOCAL_SEARCH_ITER) -> Fit:
    """IHT, then local search, then IHT again while the local search moves (at most MAX_ROUNDS).

    Starts from (B0, Z0) when both are given (must be feasible), else from B0 hard-thresholded
    to s (zeros by default)."""
    K, p = data.K, data.p
    if B0 is None:
        B0 = np.zeros((K, p))
    if Z0 is None:
        B, Z = threshold(B0, s, common)
    else:
        B, Z = np.asarray(B0, dtype=float).copy(), np.asarray(Z0, dtype=bool).copy()
    trace: list[float] = []
    n_iter = n_swaps = 0
    for _ in range(MAX_ROUNDS):
        B, Z, tr, it = iht(data, s, pen, common, B, Z, max_iter=max_iter, tol=tol, step=step)
        trace.extend(tr if not trace else tr[1:])
        n_iter += it
        if local_search_iter <= 0:
            break
        B, Z, moves = local_search(data, s, pen, common, B, Z, local_search_iter)
        if not moves:
            break
        n_swaps += moves
        trace.append(internal_objective(data, B, Z, pen.lambda1, pen.lambda2, pen.lambda_z))
    obj = internal_objective(data, B, Z, pen.lambda1, pen.lambda2, pen.lambda_z)
    return Fit(B=B, Z=Z, objective=obj, trace=trace, n_iter=n_iter, n_swaps=n_swaps, method="iht")


def warm_start(data: TaskData, s: int, lambda1: float, common: bool, *, tol: float = TOL,
               step: float = STEP) -> np.ndarray:
    """The package's warm-start model: support min(3s, p), ridge λ₁ only, 500 iterations, no
    local search. Returns its coefficients (to be thresholded to s by the real fit)."""
    s_ws = min(WARM_START_MULTIPLIER * s, data.p)
    return solve(data, s_ws, Penalties(lambda1=lambda1), common, max_iter=WARM_START_ITER, tol=tol,
                 step=step, local_search_iter=0).B


def path_order(grid: list[dict]) -> list[int]:
    """Order in which a tuning path is fitted with warm starts: s increasing, then λ₂ increasing,
    λ₁ decreasing, λ_z increasing (the package's ``grid.gen`` order)."""
    return sorted(range(len(grid)), key=lambda i: (grid[i]["s"], grid[i]["lambda2"], -grid[i]["lambda1"],
                                                   grid[i]["lambda_z"]))


def fit_path(data: TaskData, grid: list[dict], common: bool, *, use_warm_start: bool = True,
             max_iter: int = MAX_ITER, tol: float = TOL, step: float = STEP,
             local_search_iter: int = LOCAL_SEARCH_ITER) -> list[Fit]:
    """Fit every point of ``grid`` (dicts with s, lambda1, lambda2, lambda_z), each warm-started
    from the previous one along :func:`path_order`; results in the grid's own order."""
    order = path_order(grid)
    out: list[Fit | None] = [None] * len(grid)
    B = None
    if use_warm_start and order:
        first = grid[order[0]]
        B = warm_start(data, first["s"], max(g["lambda1"] for g in grid), common, tol=tol, step=step)
    for i in order:
        g = grid[i]
        fit = solve(data, g["s"], Penalties(g["lambda1"], g["lambda2"], g["lambda_z"]), common, B,
                    max_iter=max_iter, tol=tol, step=step, local_search_iter=local_search_iter)
        out[i] = fit
        B = fit.B
    return out  # type: ignore[return-value]
