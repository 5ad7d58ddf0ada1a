"""Objective, robustness distances and the block proximal gradient method of sparse NMF with
archetypal regularisation (specs/other-papers.md §7.2-§7.3).

Notation (rows are data points): ``X`` is m × n and nonnegative, ``W`` is m × k with rows in the
unit simplex Δ_k, ``H`` is k × n, nonnegative with at most ``ell`` nonzeros (its rows are the
archetypes), ``W_tilde`` is k × m with rows in Δ_m (each archetype's nearest point of the data
hull is ``W_tilde @ X``). The objective is

    f(W, H, W̃) = ‖X − W H‖_F² + λ ‖H − W̃ X‖_F²

and every solver, test and experiment evaluates it through :func:`objective`. numpy only; no
RNG (callers pass generators); no I/O.
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from reprise.io import ReproError
from reprise.sparsity import hard_threshold, project_simplex

log = logging.getLogger("reprise.nmf")

# --------------------------------------------------------------------------- validation


class NMFInputError(ReproError, ValueError):
    """Bad data or parameters for sparse archetypal NMF: a ReproError (the project's user-facing
    error) that is also the ValueError scikit-learn's conventions expect."""


class NMFTypeError(ReproError, TypeError):
    """Data that is not numeric at all (a ReproError and the TypeError scikit-learn expects)."""


def check_data(X, name: str = "X", estimator: str = "ArchetypalNMF") -> np.ndarray:
    """``X`` as a finite, nonnegative, non-zero 2-D float array, or an NMFInputError naming ``name``
    and the fix (scikit-learn's ``check_array`` does the shape, dtype, sparse and finiteness part)."""
    from sklearn.utils import check_array

    try:
        arr = check_array(X, dtype=float, accept_sparse=False, ensure_2d=True, ensure_all_finite=True,
                          input_name=name, estimator=estimator)
    except TypeError as exc:
        raise NMFTypeError(f"{name}: {exc} (pass a numeric array, data points as rows)") from None
    except ValueError as exc:
        msg = str(exc)
        if "NaN" in msg or "infinity" in msg:
            fix = "non-finite entries: impute or drop them before fitting"
        elif "sparse" in msg.lower():
            fix = "pass a dense array, e.g. X.toarray()"
        elif "omplex" in msg:
            fix = "pass real-valued data"
        else:
            fix = "pass a non-empty 2-D array, m data points as rows and n features as columns"
        raise NMFInputError(f"{name}: {msg} ({fix})") from None
    if np.any(arr < 0):
        raise NMFInputError(f"Negative values in data passed to {estimator} ({name}, min {arr.min():.3g}): sparse "
                            f"archetypal NMF needs nonnegative data; clip at 0 or shift the features")
    if not np.any(arr > 0):
        raise NMFInputError(f"{name} is all zeros; there is nothing to factorise")
    return arr


def check_lam(lam, name: str = "lam") -> float:
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not math.isfinite(lam) or lam < 0:
        raise NMFInputError(f"{name}={lam!r} must be a finite number ≥ 0 (0 gives sparse simplex NMF, larger values "
                         f"pull the archetypes towards the data hull)")
    return float(lam)


def check_int(value, name: str, low: int, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int in ``[low, high]`` (``high`` None: no upper limit), else a ReproError."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok:
        value = int(value)
        ok = value >= low and (high is None or value <= high)
    if not ok:
        span = f"[{low}, {high}]" if high is not None else f"≥ {low}"
        raise NMFInputError(f"{name}={value!r} must be an integer {span}{'; ' + hint if hint else ''}")
    return value


def check_budget(ell, k: int, n: int, name: str = "l0_budget") -> int:
    """The ℓ0 budget: None means dense (k·n); otherwise an integer in (0, k·n]."""
    if ell is None:
        return k * n
    return check_int(ell, name, 1, k * n,
                     hint=f"it counts nonzeros of H (k×n = {k}×{n}); use e.g. round(0.5*k*n), or None for dense")


# --------------------------------------------------------------------------- objective and distances


def objective(X, W, H, W_tilde, lam: float) -> float:
    """``‖X − W H‖_F² + lam · ‖H − W̃ X‖_F²`` (§7.2). ``W_tilde`` may be None when ``lam`` is 0."""
    X, W, H = np.asarray(X, dtype=float), np.asarray(W, dtype=float), np.asarray(H, dtype=float)
    value = float(np.sum((X - W @ H) ** 2))
    if lam != 0:
        if W_tilde is None:
            raise NMFInputError("objective: W_tilde is needed when lam > 0")
        value += float(lam) * float(np.sum((H - np.asarray(W_tilde, dtype=float) @ X) ** 2))
    return value


def archetype_distance(H1, H2) -> float:
    """``L(H1, H2) = Σ_i min_j ‖H1[i] − H2[j]‖²``: how far each row of ``H1`` is from its nearest row
    of ``H2`` (§7.3, ``L.jl``). Not symmetric; see :func:`weak_robustness`/:func:`strong_robustness`."""
    H1, H2 = np.atleast_2d(np.asarray(H1, dtype=float)), np.atleast_2d(np.asarray(H2, dtype=float))
    if H1.shape[1] != H2.shape[1]:
        raise NMFInputError(f"archetype_distance: H1 has {H1.shape[1]} features, H2 {H2.shape[1]}; they must match")
    sq = (np.sum(H1 ** 2, axis=1)[:, None] + np.sum(H2 ** 2, axis=1)[None, :] - 2.0 * H1 @ H2.T)
    return float(np.sum(np.maximum(sq, 0.0).min(axis=1)))


def weak_robustness(H_true, H_hat) -> float:
    """The demo's "weak robustness" ``L(H0, Ĥ)``: every true archetype is near some estimate."""
    return archetype_distance(H_true, H_hat)


def strong_robustness(H_true, H_hat) -> float:
    """The demo's "strong robustness" ``L(Ĥ, H0)``: every estimated archetype is near a true one."""
    return archetype_distance(H_hat, H_true)


# --------------------------------------------------------------------------- projections


def spectral_norm(A) -> float:
    """Largest singular value (0 for an all-zero matrix)."""
    A = np.asarray(A, dtype=float)
    return float(np.linalg.norm(A, 2)) if A.size else 0.0


def hull_weights(P, V, init=None, tol: float = 1e-9, max_iter: int = 1000) -> np.ndarray:
    """Weights ``A`` (rows in the simplex) with ``A @ V`` the projection of each row of ``P`` onto
    the convex hull of the rows of ``V``: ``argmin ‖P − A V‖_F²`` by accelerated projected gradient
    (step ``1/(2σ_max(V)²)``, gradient restart), started at ``init`` (default: first vertex).
    Rows where the result is worse than ``init`` keep ``init``, so a warm start never gets worse."""
    P, V = np.atleast_2d(np.asarray(P, dtype=float)), np.atleast_2d(np.asarray(V, dtype=float))
    p, q = P.shape[0], V.shape[0]
    if init is None:
        A0 = np.zeros((p, q))
        A0[:, 0] = 1.0
    else:
        A0 = project_simplex(np.array(init, dtype=float).reshape(p, q), axis=1)
    G, B = V @ V.T, P @ V.T
    lip = 2.0 * float(np.linalg.eigvalsh(G)[-1]) if q else 0.0
    if lip <= 0:  # all vertices are zero: every weight vector gives the same point
        return A0

    def row_obj(A):  # ‖P_r − A_r V‖² up to the constant ‖P_r‖²
        return np.sum((A @ G) * A, axis=1) - 2.0 * np.sum(A * B, axis=1)

    A, Y, t = A0.copy(), A0.copy(), 1.0
    for _ in range(max_iter):
        A_new = project_simplex(Y - (2.0 / lip) * (Y @ G - B), axis=1)
        step = A_new - A
        if np.sum((Y - A_new) * step) > 0:  # momentum points uphill: restart
            t = 1.0
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        Y = A_new + ((t - 1.0) / t_new) * step
        A, t = A_new, t_new
        if np.max(np.abs(step)) <= tol:
            break
    worse = row_obj(A) > row_obj(A0)
    A[worse] = A0[worse]
    return A


# --------------------------------------------------------------------------- block proximal gradient


def h_step(X, W, H, W_tilde, lam: float, ell: int) -> np.ndarray:
    """One projected gradient step on H with step ``1/(2σ_max(W)² + 2λ)``, then ``H ≥ 0`` and the
    ``ell`` largest entries kept (the exact projection onto ``{H ≥ 0, ‖H‖₀ ≤ ell}``)."""
    lip = 2.0 * spectral_norm(W) ** 2 + 2.0 * lam
    if lip <= 0:
        return H
    grad = -2.0 * W.T @ (X - W @ H)
    if lam != 0:
        grad += 2.0 * lam * (H - W_tilde @ X)
    H_new = np.maximum(H - grad / lip, 0.0)
    if ell < H_new.size:
        H_new = hard_threshold(H_new, ell)
    return H_new


def w_step(X, W, H) -> np.ndarray:
    """One projected gradient step on W (step ``1/(2σ_max(H)²)``), rows projected onto Δ_k."""
    s2 = spectral_norm(H) ** 2
    if s2 <= 0:
        return W
    return project_simplex(W + (X - W @ H) @ H.T / s2, axis=1)


def w_tilde_step(X, H, W_tilde, lam: float, sigma_x: float | None = None) -> np.ndarray:
    """One projected gradient step on W̃ (step ``1/(2λσ_max(X)²)``), rows projected onto Δ_m; a
    no-op when ``lam`` is 0 (W̃ does not enter the objective)."""
    if lam == 0:
        return W_tilde
    s2 = (spectral_norm(X) if sigma_x is None else sigma_x) ** 2
    if s2 <= 0:
        return W_tilde
    return project_simplex(W_tilde + (H - W_tilde @ X) @ X.T / s2, axis=1)


@dataclass
class BlockResult:
    H: np.ndarray
    W: np.ndarray
    W_tilde: np.ndarray
    trace: list[float] = field(default_factory=list)  # objective at the start and after each iteration

    @property
    def n_iter(self) -> int:
        return len(self.trace) - 1


def block_prox(X, H, W, W_tilde, lam: float, ell: int, max_iter: int = 150, tol: float = 1e-4) -> BlockResult:
    """Block proximal gradient (``AAproxblock``): H-, W- then W̃-step per iteration; stops when an
    iteration lowers the objective by less than ``tol · f₀`` (f₀ the starting objective) or after
    ``max_iter`` iterations. Each step is a projected gradient step with step 1/Lipschitz on a
    block, so no iteration increases the objective (up to rounding). ``max_iter`` counts
    iterations (the Julia loop's counter includes f₀, so it runs one fewer)."""
    H, W, W_tilde = (np.array(a, dtype=float) for a in (H, W, W_tilde))
    sigma_x = spectral_norm(X)
    f0 = objective(X, W, H, W_tilde, lam)
    trace = [f0]
    for _ in range(max_iter):
        H = h_step(X, W, H, W_tilde, lam, ell)
        W = w_step(X, W, H)
        W_tilde = w_tilde_step(X, H, W_tilde, lam, sigma_x)
        trace.append(objective(X, W, H, W_tilde, lam))
        if trace[-2] - trace[-1] < tol * f0 or trace[-1] == 0:
            break
    return BlockResult(H, W, W_tilde, trace)


def lambda_grid(lam: float, lambda_max: float, n_lambdas: int) -> list[float]:
    """The continuation path of ``SAA``: ``n_lambdas`` values log-spaced from ``lambda_max`` down to
    the target ``lam`` (which is always the last value). ``lam = 0`` has no log grid: the path is
    ``[0]`` (λ = 0 is plain sparse simplex NMF, solved directly)."""
    lam = check_lam(lam)
    n_lambdas = check_int(n_lambdas, "n_lambdas", 1, hint="the continuation grid needs at least the target λ")
    if lam == 0 or n_lambdas == 1:
        return [lam]
    if isinstance(lambda_max, bool) or not isinstance(lambda_max, numbers.Real) or not lambda_max > 0 \
            or not math.isfinite(lambda_max):
        raise NMFInputError(f"lambda_max={lambda_max!r} must be a finite number > 0 (the demo uses 30)")
    grid = [float(v) for v in np.logspace(math.log10(lambda_max), math.log10(lam), n_lambdas)]
    grid[-1] = lam  # exactly the target, not its round trip through log10
    return grid


@dataclass
class PathResult:
    H: np.ndarray
    W: np.ndarray
    W_tilde: np.ndarray
    lambdas: list[float]
    stages: list[BlockResult]

    @property
    def trace(self) -> list[float]:
        """The objective trace of the last stage (at the target λ)."""
        return self.stages[-1].trace


def continuation(X, H, W, W_tilde, lambdas, ell: int, max_iter: int = 150, tol: float = 1e-4) -> PathResult:
    """Solve :func:`block_prox` at each λ of ``lambdas`` in order, warm-starting each stage from the
    previous one (``SAA``). ``lambdas`` is usually :func:`lambda_grid`; its last value is the target."""
    lambdas = [check_lam(v, "lambdas[]") for v in lambdas]
    if not lambdas:
        raise NMFInputError("continuation: the λ grid is empty; pass at least the target λ (n_lambdas ≥ 1)")
    stages = []
    for lam in lambdas:
        res = block_prox(X, H, W, W_tilde, lam, ell, max_iter, tol)
        stages.append(res)
        log.info("continuation stage %d/%d: λ = %.4g, %d iterations, objective %.6g -> %.6g", len(stages),
                 len(lambdas), lam, res.n_iter, res.trace[0], res.trace[-1])
        H, W, W_tilde = res.H, res.W, res.W_tilde
    return PathResult(H, W, W_tilde, lambdas, stages)
