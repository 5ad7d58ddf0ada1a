"""Closed-form bias/variance of GD and SAM on least squares (specs/other-papers.md §5.2). Pure numpy.

Model: ``y = Xβ* + ξ``, ``ξ ~ N(0, σ²Iₙ)``, loss ``L(β) = ‖y − Xβ‖²/(2n)``, ``H = XᵀX/n = Σᵢ λᵢ uᵢuᵢᵀ``,
``cᵢ = uᵢᵀβ*``. Started from ``β₀ = 0``:

- GD, ``β ← β − η∇L(β)``, contracts the i-th eigen-coordinate of ``β − β_OLS`` by ``aᵢ = 1 − ηλᵢ``;
- un-normalised SAM, ``β ← β − η∇L(β + ρ∇L(β)) = β − η(I + ρH)∇L(β)``, by ``aᵢ = 1 − ηλᵢ(1 + ρλᵢ)``.

The iterate's error in the eigenbasis is ``δᵢ(t) = −aᵢᵗcᵢ + (1 − aᵢᵗ)eᵢ/λᵢ`` with ``eᵢ = uᵢᵀXᵀξ/n``,
``Cov(e) = σ²Λ/n``, so

- in-sample risk ``E‖X(β_t − β*)‖²/n = Σᵢ λᵢaᵢ²ᵗcᵢ²`` (bias) ``+ (σ²/n) Σ_{λᵢ>0} (1 − aᵢᵗ)²`` (variance);
- out-of-sample risk ``E(xᵀ(β_t − β*))²`` for ``x ~ (0, Σ)``: bias ``(aᵗ⊙c)ᵀ Σ̃ (aᵗ⊙c)``, variance
  ``(σ²/n) Σ_{λᵢ>0} Σ̃ᵢᵢ(1 − aᵢᵗ)²/λᵢ`` with ``Σ̃ = UᵀΣU``.

Directions with ``λᵢ = 0`` never move (``aᵢ = 1``) and carry no noise. With ``0 ≤ aᵢ < 1`` for both methods, SAM's
``aᵢ`` is smaller term by term, so SAM's bias is ≤ GD's and its variance ≥ GD's at every t — the statement of the
paper's v1/v2; :func:`check_stability` enforces that condition. The out-of-sample variance is ordered the same way
(``Σ̃ᵢᵢ ≥ 0``); the out-of-sample bias is a quadratic form in ``aᵗ⊙c`` and is ordered termwise only when ``Σ̃`` is
diagonal (Σ and H share eigenvectors).

Kernel regression is the same recursion in function space: GD/SAM on the squared loss in the RKHS of ``k`` with
``f = Σⱼ αⱼk(xⱼ, ·)``, ``α ← α − (η/n)(I + ρK/n)(Kα − y)``, so the training predictions follow the linear recursion
with ``H → K/n`` (eigenpairs ``(λᵢ, vᵢ)`` of ``K/n``): in-sample bias ``(1/n)Σᵢ aᵢ²ᵗ(vᵢᵀf*)²`` and variance
``(σ²/n)Σ_{λᵢ>0}(1 − aᵢᵗ)²``; test predictions are ``K_test α_t`` with ``α_t = V diag((1 − aᵗ)/(nλ)) Vᵀ y``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reprise.io import ReproError

__all__ = [
    "RiskCurves", "contraction", "check_stability", "max_stable_eta", "eigen_decomposition",
    "in_sample_risk", "out_of_sample_risk", "least_squares_risk",
    "kernel_in_sample_risk", "kernel_out_of_sample_risk", "kernel_risk",
]

#: eigenvalues at or below this fraction of the largest are treated as exact zeros
ZERO_TOL = 1e-12


@dataclass(frozen=True)
class RiskCurves:
    """Risk per iteration, split into bias and variance (``total = bias + variance``)."""

    iterations: np.ndarray
    bias: np.ndarray
    variance: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.bias + self.variance


def _iterations(iterations) -> np.ndarray:
    t = np.asarray(iterations)
    if t.ndim != 1 or t.size == 0 or not np.issubdtype(t.dtype, np.integer) and not np.all(t == np.round(t)):
        raise ReproError("iterations must be a non-empty 1-D sequence of non-negative integers")
    t = t.astype(np.int64)
    if (t < 0).any():
        raise ReproError(f"iterations must be non-negative; got {int(t.min())}")
    return t


def _clean_eigvals(eigvals) -> np.ndarray:
    lam = np.asarray(eigvals, dtype=np.float64)
    if lam.ndim != 1:
        raise ReproError(f"eigvals must be 1-D, got shape {lam.shape}")
    top = float(lam.max()) if lam.size else 0.0
    if lam.size and lam.min() < -1e-8 * max(top, 1.0):
        raise ReproError(f"eigvals must be ≥ 0 (a covariance or kernel matrix); smallest is {lam.min():.3g}")
    return np.where(lam <= ZERO_TOL * max(top, 0.0), 0.0, lam)


def contraction(eigvals, eta: float, rho: float = 0.0) -> np.ndarray:
    """Per-direction contraction ``aᵢ = 1 − ηλᵢ(1 + ρλᵢ)`` (``ρ = 0`` is GD)."""
    lam = _clean_eigvals(eigvals)
    return 1.0 - eta * lam * (1.0 + rho * lam)


def max_stable_eta(eigvals, rho: float = 0.0) -> float:
    """Largest η with ``0 ≤ aᵢ`` for every i: ``1/(λ_max(1 + ρλ_max))``."""
    lam_max = float(_clean_eigvals(eigvals).max())
    return float("inf") if lam_max == 0 else 1.0 / (lam_max * (1.0 + rho * lam_max))


def check_stability(eigvals, eta: float, rho: float = 0.0) -> np.ndarray:
    """Check ``0 ≤ aᵢ < 1`` for every direction with ``λᵢ > 0`` and return ``a``.

    ``aᵢ < 1`` needs ``η > 0`` and ``ρ ≥ 0``; ``aᵢ ≥ 0`` needs ``ηλ_max(1 + ρλ_max) ≤ 1``. Both are what the termwise
    bias/variance ordering of SAM against GD rests on; a :class:`ReproError` names η, ρ and the bound otherwise.
    """
    if not np.isfinite(eta) or eta <= 0:
        raise ReproError(f"step size eta = {eta!r} must be > 0 (a_i = 1 - eta*lambda_i*(1 + rho*lambda_i) < 1)")
    if not np.isfinite(rho) or rho < 0:
        raise ReproError(f"rho = {rho!r} must be ≥ 0 (a_i = 1 - eta*lambda_i*(1 + rho*lambda_i) < 1)")
    lam = _clean_eigvals(eigvals)
    a = contraction(lam, eta, rho)
    lam_max = float(lam.max()) if lam.size else 0.0
    if lam_max > 0 and a.min() < -1e-12:
        bound = max_stable_eta(lam, rho)
        raise ReproError(
            f"unstable step: eta = {eta:g}, rho = {rho:g} give eta*lambda_max*(1 + rho*lambda_max) = "
            f"{eta * lam_max * (1 + rho * lam_max):.6g} > 1 at lambda_max = {lam_max:.6g}, so a_i < 0; the closed form "
            f"needs 0 <= a_i < 1: use eta <= {bound:.6g} for this rho"
            + (f" (or rho <= {(1 / (eta * lam_max) - 1) / lam_max:.6g} for this eta)"
               if eta * lam_max <= 1 else f" (no rho >= 0 works for eta > 1/lambda_max = {1 / lam_max:.6g})"))
    return np.maximum(a, 0.0)  # a rounding error below 0 at the bound is 0


def _powers(a: np.ndarray, lam: np.ndarray, eta: float, rho: float, t: np.ndarray):
    """``aᵗ`` and ``1 − aᵗ`` as (len(t), len(a)) arrays, accurate when ``aᵢ`` is within rounding of 1."""
    tt = t[:, None].astype(np.float64)
    s = eta * lam * (1.0 + rho * lam)  # 1 - a
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a = np.log1p(-np.minimum(s, 1.0))  # -inf where a == 0
        small = (a > 0.5)[None, :]
        one_minus = np.where(small, -np.expm1(tt * log_a[None, :]), 1.0 - np.power(a[None, :], tt))
    power = np.power(a[None, :], tt)  # 0**0 == 1
    one_minus = np.where(tt == 0, 0.0, one_minus)
    return power, one_minus


def eigen_decomposition(H) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, zeros cleaned) and eigenvectors of a symmetric PSD matrix."""
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ReproError(f"expected a square matrix, got shape {H.shape}")
    lam, U = np.linalg.eigh((H + H.T) / 2)
    order = np.argsort(lam)[::-1]
    return _clean_eigvals(np.maximum(lam[order], 0.0)), U[:, order]


def in_sample_risk(eigvals, coef, sigma: float, n: int, eta: float, rho: float, iterations,
                   check: bool = True) -> RiskCurves:
    """In-sample risk ``E‖X(β_t − β*)‖²/n`` of GD (``rho=0``) or un-normalised SAM from ``β₀ = 0``.

    ``eigvals``: eigenvalues λᵢ of ``H = XᵀX/n``; ``coef``: ``cᵢ = uᵢᵀβ*``; ``sigma``: noise standard deviation.
    """
    lam = _clean_eigvals(eigvals)
    c = np.asarray(coef, dtype=np.float64)
    if c.shape != lam.shape:
        raise ReproError(f"coef has shape {c.shape}, eigvals {lam.shape}")
    t = _iterations(iterations)
    a = check_stability(lam, eta, rho) if check else contraction(lam, eta, rho)
    power, one_minus = _powers(a, lam, eta, rho, t)
    bias = (power ** 2 * (lam * c ** 2)[None, :]).sum(axis=1)
    variance = sigma ** 2 / n * (one_minus ** 2 * (lam > 0)[None, :]).sum(axis=1)
    return RiskCurves(t, bias, variance)


def out_of_sample_risk(eigvals, coef, sigma: float, n: int, eta: float, rho: float, iterations,
                       population_cov, check: bool = True) -> RiskCurves:
    """Out-of-sample risk ``E(xᵀ(β_t − β*))²`` for test points with covariance Σ.

    ``population_cov`` is ``Σ̃ = UᵀΣU``, the population covariance in the eigenbasis of H (p × p).
    """
    lam = _clean_eigvals(eigvals)
    c = np.asarray(coef, dtype=np.float64)
    S = np.asarray(population_cov, dtype=np.float64)
    if S.shape != (lam.size, lam.size) or c.shape != lam.shape:
        raise ReproError(f"population_cov must be {lam.size}x{lam.size} and coef of length {lam.size}; "
                         f"got {S.shape} and {c.shape}")
    t = _iterations(iterations)
    a = check_stability(lam, eta, rho) if check else contraction(lam, eta, rho)
    power, one_minus = _powers(a, lam, eta, rho, t)
    b = power * c[None, :]  # (T, p): −(bias part of δ) in the eigenbasis
    bias = np.einsum("ti,ij,tj->t", b, S, b)
    inv = np.divide(1.0, lam, out=np.zeros_like(lam), where=lam > 0)
    variance = sigma ** 2 / n * (one_minus ** 2 * (np.diag(S) * inv)[None, :]).sum(axis=1)
    return RiskCurves(t, bias, variance)


def least_squares_risk(X, beta_star, sigma: float, eta: float, rho: float, iterations,
                       population_cov=None, check: bool = True) -> dict[str, RiskCurves]:
    """``{"in_sample": …, "out_of_sample": …}`` for design ``X`` (n × p); out-of-sample needs ``population_cov`` (Σ)."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    lam, U = eigen_decomposition(X.T @ X / n)
    c = U.T @ np.asarray(beta_star, dtype=np.float64)
    out = {"in_sample": in_sample_risk(lam, c, sigma, n, eta, rho, iterations, check=check)}
    if population_cov is not None:
        out["out_of_sample"] = out_of_sample_risk(lam, c, sigma, n, eta, rho, iterations,
                                                  U.T @ np.asarray(population_cov, dtype=np.float64) @ U, check=check)
    return out


def kernel_in_sample_risk(K, f_star, sigma: float, eta: float, rho: float, iterations,
                          check: bool = True) -> RiskCurves:
    """In-sample risk ``E‖f_t(X) − f*(X)‖²/n`` of functional GD/SAM with kernel matrix ``K`` (n × n)."""
    K = np.asarray(K, dtype=np.float64)
    n = K.shape[0]
    lam, V = eigen_decomposition(K / n)
    proj = V.T @ np.asarray(f_star, dtype=np.float64)
    t = _iterations(iterations)
    a = check_stability(lam, eta, rho) if check else contraction(lam, eta, rho)
    power, one_minus = _powers(a, lam, eta, rho, t)
    bias = (power ** 2 * (proj ** 2)[None, :]).sum(axis=1) / n
    variance = sigma ** 2 / n * (one_minus ** 2 * (lam > 0)[None, :]).sum(axis=1)
    return RiskCurves(t, bias, variance)


def kernel_out_of_sample_risk(K, K_test, f_star, f_star_test, sigma: float, eta: float, rho: float, iterations,
                              check: bool = True) -> RiskCurves:
    """Risk on test points, ``mean_x E(f_t(x) − f*(x))²`` over the rows of ``K_test = k(X_test, X)``."""
    K = np.asarray(K, dtype=np.float64)
    Kt = np.asarray(K_test, dtype=np.float64)
    n = K.shape[0]
    lam, V = eigen_decomposition(K / n)
    t = _iterations(iterations)
    a = check_stability(lam, eta, rho) if check else contraction(lam, eta, rho)
    _, one_minus = _powers(a, lam, eta, rho, t)
    # α_t = V diag(g_t) Vᵀ y with g_t = (1 − aᵗ)/(nλ); the limit for λ = 0 is 0 (that direction never moves)
    inv = np.divide(1.0, n * lam, out=np.zeros_like(lam), where=lam > 0)
    g = one_minus * inv[None, :]
    B = Kt @ V  # (m, n)
    proj = V.T @ np.asarray(f_star, dtype=np.float64)
    fs_test = np.asarray(f_star_test, dtype=np.float64)
    m = Kt.shape[0]
    mean_pred = (g * proj[None, :]) @ B.T  # (T, m)
    bias = ((mean_pred - fs_test[None, :]) ** 2).mean(axis=1)
    variance = sigma ** 2 * (g ** 2 @ (B ** 2).sum(axis=0)) / m
    return RiskCurves(t, bias, variance)


def kernel_risk(K, f_star, sigma: float, eta: float, rho: float, iterations, K_test=None, f_star_test=None,
                check: bool = True) -> dict[str, RiskCurves]:
    """``{"in_sample": …, "out_of_sample": …}`` for kernel regression (out-of-sample when ``K_test`` is given)."""
    out = {"in_sample": kernel_in_sample_risk(K, f_star, sigma, eta, rho, iterations, check=check)}
    if K_test is not None:
        out["out_of_sample"] = kernel_out_of_sample_risk(K, K_test, f_star, f_star_test, sigma, eta, rho,
                                                         iterations, check=check)
    return out
