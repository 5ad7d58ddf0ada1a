"""Monte-Carlo GD/SAM iterations on least squares and kernel regression (specs/other-papers.md §5.2, §5.5).

The simulators run the algorithms themselves — gradients, an ascent step, a descent step — on ``R`` replicates at
once (one column per replicate), never the eigenbasis formula of :mod:`reprise.sam.theory`, so comparing the two
checks the algebra. Each replicate draws fresh noise ``ξ`` (and, for mini-batches, its own batches) from one
generator (:func:`stream_rng` on ``[NOISE_STREAM, seed]``); the design and the truth are fixed (fixed-design risk,
as in the closed form).

Ascent variants (``ascent=``):

- ``"unnormalised"``: ``ε = ρ∇L(β)``, the variant of the closed form (``β ← β − η(I + ρH)∇L``);
- ``"normalised"``: ``ε = ρ∇L(β)/‖∇L(β)‖`` (Foret et al.), an adaptive preconditioner ``I + ρH/‖∇L‖``.

With mini-batches (``batch_size``) every step draws one batch of distinct rows per replicate and uses it for both the
ascent and the descent gradient.

Risk estimates from the replicate errors ``E_r`` (scaled so the risk is ``‖E_r‖²``), ``Ē`` their mean:
``total = mean_r ‖E_r‖²``; ``variance = Σ_r ‖E_r − Ē‖²/(R − 1)``; ``bias = ‖Ē‖² − variance/R`` (unbiased, and
``bias + variance = total`` exactly); standard errors by the delta method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from reprise.io import ReproError

__all__ = ["stream_rng", "NOISE_STREAM", "DESIGN_STREAM", "MCEstimate", "mc_components", "simulate_least_squares",
           "simulate_kernel", "rbf_kernel", "log_grid", "ASCENTS"]

ASCENTS = ("unnormalised", "normalised")
_EPS = 1e-12
#: stream tags: the simulators' noise/batch draws never share a stream with a problem built from the same integer
NOISE_STREAM, DESIGN_STREAM = 0x5A3, 0xD35


def stream_rng(seed: int, stream: int) -> np.random.Generator:
    """``numpy.random.default_rng`` on the entropy ``[stream, seed]`` (independent streams per purpose)."""
    return np.random.default_rng([int(stream), int(seed)])


@dataclass(frozen=True)
class MCEstimate:
    """Monte-Carlo estimates per recorded iteration: ``{component: (value, stderr)}`` arrays."""

    iterations: np.ndarray
    value: Mapping[str, np.ndarray]
    stderr: Mapping[str, np.ndarray]
    n_replicates: int


def log_grid(T: int, points: int = 30) -> np.ndarray:
    """About ``points`` iterations from 0 to ``T``, log-spaced (always containing 0, 1 and T)."""
    if T < 0 or points < 2:
        raise ReproError(f"log_grid needs T >= 0 and points >= 2; got T={T}, points={points}")
    if T == 0:
        return np.array([0])
    g = np.unique(np.round(np.logspace(0, np.log10(T), points - 1)).astype(np.int64))
    return np.unique(np.concatenate([[0], g, [T]]))


def mc_components(E: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """Bias/variance/total estimates and standard errors from replicate errors ``E`` (R × m, risk = row norm²)."""
    E = np.asarray(E, dtype=np.float64)
    R = E.shape[0]
    if R < 2:
        raise ReproError("Monte-Carlo bias/variance needs at least 2 replicates")
    tot = (E ** 2).sum(axis=1)
    mean = E.mean(axis=0)
    D = E - mean
    dev = (D ** 2).sum(axis=1) * R / (R - 1)
    variance = dev.mean()
    bias = float(mean @ mean) - variance / R
    s = D @ mean  # linear term of ‖Ē‖² around the true mean
    G = D @ D.T / (R - 1)
    # Var(2bᵀm̄) = 4bᵀCb/R and Var(‖m̄‖²) = 2tr(C²)/R² for m̄ ~ N(0, C/R); tr(Ĉ²) = ‖DDᵀ‖²_F/(R − 1)²
    se_bias = np.sqrt(4.0 * s.var(ddof=1) / R + 2.0 * float((G ** 2).sum()) / R ** 2)
    value = {"bias": bias, "variance": float(variance), "total": float(tot.mean())}
    stderr = {"bias": float(se_bias), "variance": float(dev.std(ddof=1) / np.sqrt(R)),
              "total": float(tot.std(ddof=1) / np.sqrt(R))}
    return value, stderr


def rbf_kernel(x: np.ndarray, z: np.ndarray, lengthscale: float) -> np.ndarray:
    """``exp(−‖x − z‖²/(2ℓ²))`` for rows of ``x`` (a × d or a) against rows of ``z``."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    d2 = (x ** 2).sum(1)[:, None] + (z ** 2).sum(1)[None, :] - 2 * x @ z.T
    return np.exp(-np.maximum(d2, 0.0) / (2 * lengthscale ** 2))


def _check_common(eta, rho, ascent, n_replicates, grid):
    if not eta > 0:
        raise ReproError(f"eta = {eta!r} must be > 0")
    if not rho >= 0:
        raise ReproError(f"rho = {rho!r} must be >= 0")
    if ascent not in ASCENTS:
        raise ReproError(f"ascent = {ascent!r}; choose one of {', '.join(ASCENTS)}")
    if int(n_replicates) < 2:
        raise ReproError(f"n_replicates = {n_replicates!r} must be >= 2")
    g = np.asarray(grid, dtype=np.int64)
    if g.ndim != 1 or g.size == 0 or (g < 0).any() or (np.diff(g) <= 0).any():
        raise ReproError("iterations must be a strictly increasing sequence of non-negative integers")
    return g


def _run(step: Callable[[np.ndarray, int], np.ndarray], theta0: np.ndarray, grid: np.ndarray,
         errors: Mapping[str, Callable[[np.ndarray], np.ndarray]], n_replicates: int) -> dict[str, MCEstimate]:
    """Iterate ``theta ← step(theta, t)`` to ``grid[-1]``, recording the MC components at every grid point."""
    values = {k: {c: np.empty(grid.size) for c in ("bias", "variance", "total")} for k in errors}
    stderrs = {k: {c: np.empty(grid.size) for c in ("bias", "variance", "total")} for k in errors}
    theta = theta0
    j = 0
    for t in range(int(grid[-1]) + 1):
        if t == grid[j]:
            for k, err in errors.items():
                v, s = mc_components(err(theta))
                for c in v:
                    values[k][c][j] = v[c]
                    stderrs[k][c][j] = s[c]
            j += 1
            if j == grid.size:
                break
        theta = step(theta, t)
        if not np.isfinite(theta).all():
            raise ReproError(f"the iterates diverged at iteration {t + 1}; lower eta or rho")
    return {k: MCEstimate(grid, values[k], stderrs[k], n_replicates) for k in errors}


def _ascent(G: np.ndarray, rho: float, ascent: str, norms: np.ndarray | None = None) -> np.ndarray:
    if rho == 0:
        return np.zeros_like(G)
    if ascent == "unnormalised":
        return rho * G
    nrm = np.linalg.norm(G, axis=0, keepdims=True) if norms is None else norms
    return rho * G / (nrm + _EPS)


def simulate_least_squares(X, beta_star, sigma: float, eta: float, rho: float, iterations: Sequence[int],
                           n_replicates: int, seed: int, ascent: str = "unnormalised", batch_size: int | None = None,
                           population_cov=None) -> dict[str, MCEstimate]:
    """GD (``rho=0``) or SAM on ``L(β) = ‖y − Xβ‖²/(2n)`` from ``β₀ = 0``, ``n_replicates`` noise draws.

    Returns ``{"in_sample": MCEstimate, "out_of_sample": …}`` (out-of-sample when ``population_cov`` Σ is given;
    its risk is ``(β − β*)ᵀΣ(β − β*)``) at the iterations of ``iterations``.
    """
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    beta_star = np.asarray(beta_star, dtype=np.float64)
    grid = _check_common(eta, rho, ascent, n_replicates, iterations)
    R = int(n_replicates)
    if batch_size is not None and not 1 <= int(batch_size) <= n:
        raise ReproError(f"batch_size = {batch_size!r} must be in 1..n = {n}")
    rng = stream_rng(seed, NOISE_STREAM)
    Y = (X @ beta_star)[:, None] + sigma * rng.standard_normal((n, R))  # (n, R)
    errors = {"in_sample": lambda B: ((X @ (B - beta_star[:, None])) / np.sqrt(n)).T}
    if population_cov is not None:
        w, V = np.linalg.eigh(np.asarray(population_cov, dtype=np.float64))
        root = (V * np.sqrt(np.maximum(w, 0.0))) @ V.T
        errors["out_of_sample"] = lambda B: (root @ (B - beta_star[:, None])).T

    if batch_size is None or int(batch_size) == n:
        H = X.T @ X / n
        q = X.T @ Y / n

        def step(B, t):
            G = H @ B - q
            if rho == 0:
                return B - eta * G
            Bt = B + _ascent(G, rho, ascent)
            return B - eta * (H @ Bt - q)
    else:
        b = int(batch_size)
        cols = np.arange(R)[:, None]

        def step(B, t):
            # one batch of b distinct rows per replicate: the first b of a random permutation
            idx = np.argsort(rng.random((R, n)), axis=1)[:, :b]  # (R, b)
            XB = X[idx]  # (R, b, p)
            YB = Y.T[cols, idx]  # (R, b)

            def grad(Bm):
                r = np.einsum("rbp,pr->rb", XB, Bm) - YB
                return np.einsum("rbp,rb->pr", XB, r) / b

            G = grad(B)
            if rho == 0:
                return B - eta * G
            return B - eta * grad(B + _ascent(G, rho, ascent))

    return _run(step, np.zeros((p, R)), grid, errors, R)


def simulate_kernel(K, f_star, sigma: float, eta: float, rho: float, iterations: Sequence[int], n_replicates: int,
                    seed: int, ascent: str = "unnormalised", K_test=None, f_star_test=None,
                    batch_size: int | None = None) -> dict[str, MCEstimate]:
    """Functional GD/SAM for kernel regression, ``f = Σⱼ αⱼ k(xⱼ, ·)``, on the squared loss ``‖y − f(X)‖²/(2n)``.

    The RKHS gradient of the loss is ``(1/n)Σⱼ rⱼ k(xⱼ, ·)`` with residuals ``r = Kα − y``, i.e. ``r/n`` in α; its
    RKHS norm, used by the normalised ascent, is ``√(rᵀKr)/n``. Mini-batches use the batch's residuals only.
    """
    K = np.asarray(K, dtype=np.float64)
    n = K.shape[0]
    f_star = np.asarray(f_star, dtype=np.float64)
    grid = _check_common(eta, rho, ascent, n_replicates, iterations)
    R = int(n_replicates)
    if batch_size is not None and not 1 <= int(batch_size) <= n:
        raise ReproError(f"batch_size = {batch_size!r} must be in 1..n = {n}")
    rng = stream_rng(seed, NOISE_STREAM)
    Y = f_star[:, None] + sigma * rng.standard_normal((n, R))
    errors = {"in_sample": lambda A: ((K @ A - f_star[:, None]) / np.sqrt(n)).T}
    if K_test is not None:
        Kt = np.asarray(K_test, dtype=np.float64)
        ft = np.asarray(f_star_test, dtype=np.float64)
        errors["out_of_sample"] = lambda A: ((Kt @ A - ft[:, None]) / np.sqrt(Kt.shape[0])).T

    def direction(A, mask):
        r = K @ A - Y
        if mask is not None:
            r = r * mask
        return r / (n if mask is None else float(batch_size))

    def rkhs_norm(G):
        return np.sqrt(np.maximum((G * (K @ G)).sum(axis=0, keepdims=True), 0.0))

    def step(A, t):
        mask = None
        if batch_size is not None and int(batch_size) < n:
            idx = np.argsort(rng.random((R, n)), axis=1)[:, : int(batch_size)]
            mask = np.zeros((n, R))
            mask[idx.T, np.arange(R)[None, :]] = 1.0
        G = direction(A, mask)
        if rho == 0:
            return A - eta * G
        At = A + _ascent(G, rho, ascent, None if ascent == "unnormalised" else rkhs_norm(G))
        return A - eta * direction(At, mask)

    return _run(step, np.zeros((n, R)), grid, errors, R)
