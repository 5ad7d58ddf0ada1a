"""Synthetic sparse precision matrices and Gaussian samples (specs/other-papers.md §2.5).

* Banded Toeplitz: ``B_ij = ρ^{|i−j|}`` for ``0 < |i−j| ≤ s`` (half-bandwidth ``s``), else 0.
* Uniform random sparsity: ``B_ij = 0.5·Bernoulli(p0)`` on the strict lower triangle, mirrored.

Both then set the diagonal to ``δ = (κ λ_min(B) − λ_max(B))/(1 − κ)``, which makes
``cond(B + δI) = κ`` exactly, and (``normalize``, the default) rescale ``Θ ← qΘ`` with
``q = max_i Σ_ii`` so the largest variance of ``Σ = Θ⁻¹`` is 1. ``X ~ N(0, Σ)``.

Randomness only through an explicit ``rng``: an int seed (``numpy.random.default_rng``), a
``numpy.random.Generator``, or a ``numpy.random.RandomState`` (the legacy stream the reference
code draws from: with ``RandomState(seed)`` the Toeplitz samples are the reference code's own,
``standard_normal((n, p)) @ chol(Σ)ᵀ``). Never the global RNG.
"""
from __future__ import annotations

import math

import numpy as np

from reprise.io import ReproError

MODELS = ("toeplitz", "uniform")


def as_rng(rng, name: str = "rng"):
    """A Generator/RandomState from ``rng`` (int seed, Generator or RandomState); ``None`` is an
    error, so no draw ever comes from the global RNG."""
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ReproError(f"{name}={rng!r}: pass an int seed, a numpy.random.Generator or a RandomState "
                     f"(the global RNG is never used)")


def _check_kappa(kappa: float) -> float:
    kappa = float(kappa)
    if not (math.isfinite(kappa) and kappa > 1):
        raise ReproError(f"kappa={kappa} (the condition number) must be a finite number > 1")
    return kappa


def condition_precision(B: np.ndarray, kappa: float, normalize: bool = True) -> np.ndarray:
    """``B + δI`` with ``δ`` chosen so the condition number is ``kappa``, then (``normalize``)
    scaled so that ``max_i (Θ⁻¹)_ii = 1``. ReproError when the result is not positive definite
    (``B`` with no off-diagonal entries has ``λ_min = λ_max`` and no ``δ`` works)."""
    kappa = _check_kappa(kappa)
    B = np.array(B, dtype=float)
    np.fill_diagonal(B, 0.0)
    evals = np.linalg.eigvalsh(B)
    lo, hi = float(evals[0]), float(evals[-1])
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        raise ReproError("the precision has no off-diagonal entries (rho=0, half_bandwidth=0 or p0 too small for "
                         "this seed), so no diagonal shift makes it positive definite with the requested kappa; "
                         "raise rho/half_bandwidth/p0 or use another seed")
    delta = (kappa * lo - hi) / (1.0 - kappa)
    Theta = B + delta * np.eye(B.shape[0])
    if normalize:
        Theta = Theta * float(np.max(np.diag(np.linalg.inv(Theta))))
    check_positive_definite(Theta, "precision")
    return Theta


def check_positive_definite(A: np.ndarray, name: str) -> np.ndarray:
    """The Cholesky factor of the symmetric ``A``, or a ReproError naming ``name``."""
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ReproError(f"{name} must be a square matrix, got shape {A.shape}")
    if not np.all(np.isfinite(A)) or not np.allclose(A, A.T, rtol=1e-10, atol=1e-12):
        raise ReproError(f"{name} must be a finite symmetric matrix")
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        lam = float(np.linalg.eigvalsh(A)[0])
        raise ReproError(f"{name} is not positive definite (smallest eigenvalue {lam:.3g}); "
                         f"raise its diagonal or choose kappa > 1") from None


def banded_toeplitz_precision(p: int, half_bandwidth: int = 1, rho: float = 0.5, kappa: float = 2.0,
                              normalize: bool = True) -> np.ndarray:
    """The banded Toeplitz precision of spec §2.5 (deterministic)."""
    if int(p) < 2:
        raise ReproError(f"p={p} must be ≥ 2")
    s = int(half_bandwidth)
    if s < 1:
        raise ReproError(f"half_bandwidth={half_bandwidth} must be ≥ 1")
    lag = np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    B = np.where((lag > 0) & (lag <= s), float(rho) ** lag, 0.0)
    return condition_precision(B, kappa, normalize)


def uniform_precision(p: int, p0: float, kappa: float = 2.0, normalize: bool = True, *, rng) -> np.ndarray:
    """The uniform random-sparsity precision of spec §2.5: each pair is 0.5 with probability ``p0``."""
    if int(p) < 2:
        raise ReproError(f"p={p} must be ≥ 2")
    if not 0 < float(p0) <= 1:
        raise ReproError(f"p0={p0} (the edge probability) must be in (0, 1]")
    rng = as_rng(rng)
    B = 0.5 * rng.binomial(1, float(p0), (p, p)).astype(float)  # full draw, as the reference code
    B = np.tril(B, -1)
    return condition_precision(B + B.T, kappa, normalize)


def sample_gaussian(n: int, precision: np.ndarray, *, rng) -> np.ndarray:
    """``n`` draws of ``N(0, Θ⁻¹)`` as ``Z chol(Σ)ᵀ`` with ``Z`` standard normal (n × p)."""
    if int(n) < 1:
        raise ReproError(f"n={n} must be ≥ 1")
    check_positive_definite(precision, "precision")
    Sigma = np.linalg.inv(np.asarray(precision, dtype=float))
    Sigma = 0.5 * (Sigma + Sigma.T)
    L = check_positive_definite(Sigma, "covariance")
    return as_rng(rng).standard_normal((int(n), Sigma.shape[0])) @ L.T


def generate_synthetic(n: int, p: int, model: str = "toeplitz", *, rng, half_bandwidth: int = 1, rho: float = 0.5,
                       p0: float | None = None, kappa: float = 2.0, normalize: bool = True):
    """``(X, Sigma, Theta)`` for ``model`` in ``MODELS``; ``p0`` defaults to ``half_bandwidth/p``
    (the demo's ``s/p``)."""
    rng = as_rng(rng)
    if model == "toeplitz":
        Theta = banded_toeplitz_precision(p, half_bandwidth, rho, kappa, normalize)
    elif model == "uniform":
        Theta = uniform_precision(p, half_bandwidth / p if p0 is None else p0, kappa, normalize, rng=rng)
    else:
        raise ReproError(f"model={model!r} is unknown; use one of {', '.join(MODELS)}")
    X = sample_gaussian(n, Theta, rng=rng)
    return X, np.linalg.inv(Theta), Theta
