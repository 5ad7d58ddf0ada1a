"""The GraphL0 problem (specs/other-papers.md §2.2): data checks, the reduced data and the objective.

``min_Θ Σ_i [−log θ_ii + (1/θ_ii)‖Y θ_{·i}‖²] + λ0 Σ_{i<j} 1[θ_ij ≠ 0] + λ2 Σ_{i<j} θ_ij²``
over symmetric ``Θ`` with ``θ_ii > 0`` and ``|θ_ij| ≤ M``, where ``Y = (X − x̄)/√n`` (so ``YᵀY = S``,
the maximum-likelihood covariance). ``(1/θ_ii)‖Yθ_{·i}‖² = θ_ii‖Y_i − Σ_{j≠i} β_ij Y_j‖²`` with
``β_ij = −θ_ij/θ_ii``: symmetric nodewise regressions with residual variance ``1/θ_ii``. Each
unordered pair pays its penalty once.

The objective depends on the data only through ``S``, so every solver works on a factor ``F`` with
``FᵀF = S``: ``Y`` itself when ``n ≤ p`` and the p × p Cholesky factor otherwise, which makes a
coordinate step cost ``O(min(n, p))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from reprise.io import ReproError

from . import _kernels as K


def check_data(X, name: str = "X") -> np.ndarray:
    """``X`` as a float64 (n × p) array, or a ReproError naming what is wrong and the fix."""
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ReproError(f"{name} must be a numeric (n_samples, n_features) array: {exc}") from None
    if X.ndim != 2:
        raise ReproError(f"{name} must be a 2-D (n_samples, n_features) array, got {X.ndim} dimension(s); "
                         f"reshape it (one row per sample)")
    n, p = X.shape
    if n < 2:
        raise ReproError(f"{name} has n={n} sample(s); at least 2 are needed to estimate a covariance")
    if p < 2:
        raise ReproError(f"{name} has p={p} feature(s); a graphical model needs at least 2")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ReproError(f"{name} has non-finite values (first at row {bad[0]}, column {bad[1]}); "
                         f"impute or drop those samples")
    return X


def check_penalties(lambda0: float, lambda2: float, M: float | None) -> tuple[float, float, float]:
    lambda0, lambda2 = float(lambda0), float(lambda2)
    M = np.inf if M is None else float(M)
    if not (math.isfinite(lambda0) and lambda0 >= 0):
        raise ReproError(f"lambda0={lambda0} must be a finite number ≥ 0")
    if not (math.isfinite(lambda2) and lambda2 >= 0):
        raise ReproError(f"lambda2={lambda2} must be a finite number ≥ 0")
    if not M > 0:
        raise ReproError(f"M={M} (the bound |θ_ij| ≤ M) must be > 0; use None for no bound")
    return lambda0, lambda2, M


def ratio_threshold(lambda0: float, lambda2: float, M: float) -> tuple[float, float]:
    """``ratio = sqrt(λ0/λ2)`` (∞ when λ2 = 0) and the slope of ``ψ`` at 0, i.e. the KKT threshold
    ``2 sqrt(λ0 λ2)`` when ``ratio ≤ M``, else ``λ0/M + λ2 M``."""
    ratio = math.sqrt(lambda0 / lambda2) if lambda2 > 0 else math.inf
    if ratio <= M:
        return ratio, 2.0 * math.sqrt(lambda0 * lambda2)
    return ratio, (lambda0 / M + lambda2 * M) if math.isfinite(M) else math.inf


@dataclass
class GraphProblem:
    """The reduced data of one instance and its penalty parameters."""

    Yt: np.ndarray          # (p, m) C-contiguous: row i is the i-th column of the factor F
    S_diag: np.ndarray      # (p,)
    n: int
    location: np.ndarray    # (p,) the mean that was subtracted
    lambda0: float
    lambda2: float
    M: float

    @property
    def p(self) -> int:
        return self.Yt.shape[0]

    @property
    def S(self) -> np.ndarray:
        """The Gram ``FᵀF`` (p × p, computed once)."""
        if getattr(self, "_S", None) is None:
            self._S = np.ascontiguousarray(self.Yt @ self.Yt.T)
        return self._S

    @property
    def ratio(self) -> float:
        return ratio_threshold(self.lambda0, self.lambda2, self.M)[0]

    @property
    def threshold(self) -> float:
        return ratio_threshold(self.lambda0, self.lambda2, self.M)[1]

    @classmethod
    def from_data(cls, X, lambda0: float, lambda2: float, M: float | None = None,
                  assume_centered: bool = False, reduce: bool = True) -> "GraphProblem":
        X = check_data(X)
        lambda0, lambda2, M = check_penalties(lambda0, lambda2, M)
        n, p = X.shape
        location = np.zeros(p) if assume_centered else X.mean(axis=0)
        Y = (X - location) / math.sqrt(n)
        S_diag = np.einsum("ij,ij->j", Y, Y)
        flat = np.flatnonzero(S_diag <= 1e-14 * max(1.0, float(S_diag.max())))
        if flat.size:
            raise ReproError(f"X column {int(flat[0])} is constant (zero variance); drop constant columns first")
        F = Y
        if reduce and n > p:
            try:
                F = np.linalg.cholesky(Y.T @ Y).T  # FᵀF = S, upper triangular
            except np.linalg.LinAlgError:
                F = Y  # S singular to working precision: keep the n × p data
        return cls(Yt=np.ascontiguousarray(F.T), S_diag=np.einsum("ij,ij->j", F, F), n=n, location=location,
                   lambda0=lambda0, lambda2=lambda2, M=M)

    def residuals(self, Theta: np.ndarray) -> np.ndarray:
        """``Rt`` (p × m): row ``i`` is ``F θ_{·i}``."""
        return np.ascontiguousarray(Theta @ self.Yt)  # Θ symmetric: (FΘ)ᵀ = Θ Fᵀ

    def trivial(self) -> tuple[np.ndarray, np.ndarray]:
        """The starting point ``Θ = diag(1/S_ii)`` and its residuals."""
        Theta = np.diag(1.0 / self.S_diag)
        return Theta, self.residuals(Theta)

    def gram_products(self, Rt: np.ndarray) -> np.ndarray:
        """``G`` with ``G[j, i] = F_jᵀ R_i`` (= ``(SΘ)_ji``)."""
        return self.Yt @ Rt.T

    def gradient_at_zero(self, Theta: np.ndarray, Rt: np.ndarray) -> np.ndarray:
        """The linear coefficient ``b`` of every pair's one-coordinate problem (as if ``θ_ij = 0``):
        ``w_ij = 2(F_jᵀR_i − θ_ij S_jj)/θ_ii + 2(F_iᵀR_j − θ_ij S_ii)/θ_jj``, symmetric."""
        d = np.diag(Theta)
        G = self.gram_products(Rt) - Theta * self.S_diag[:, None]  # G[j,i] − θ_ij S_jj
        W = 2.0 * G / d[None, :]
        return W + W.T

    def curvature(self, Theta: np.ndarray) -> np.ndarray:
        """``a_ij = S_jj/θ_ii + S_ii/θ_jj`` of every pair."""
        d = np.diag(Theta)
        return self.S_diag[None, :] / d[:, None] + self.S_diag[:, None] / d[None, :]

    def smooth(self, Theta: np.ndarray) -> float:
        return float(K.smooth_part(self.residuals(Theta), Theta))

    def objective(self, Theta: np.ndarray, Rt: np.ndarray | None = None) -> float:
        """The ℓ0-ℓ2 objective of spec §2.2 (``+inf`` when a diagonal entry is ≤ 0 or an
        off-diagonal one exceeds ``M``); ``Rt`` saves recomputing the residuals."""
        if Rt is None:
            return objective_from_factor(Theta, self.Yt, self.lambda0, self.lambda2, self.M)
        return float(K.l0l2_objective(Rt, Theta, self.lambda0, self.lambda2, self.M))


def objective_from_factor(Theta, Yt, lambda0, lambda2, M=np.inf, Rt=None) -> float:
    """The objective on the factor ``Yt``; ``Rt`` (= Θ Yt) when the caller already has it."""
    Theta = np.asarray(Theta, dtype=float)
    d = np.diag(Theta)
    if np.any(d <= 0):
        return math.inf
    iu = triu(Theta.shape[0])
    off = Theta[iu]
    if np.any(np.abs(off) > M * (1 + 1e-12)):
        return math.inf
    R = Theta @ Yt if Rt is None else Rt  # row i = F θ_i
    smooth = float(np.sum(-np.log(d) + np.einsum("ij,ij->i", R, R) / d))
    return smooth + lambda0 * float(np.count_nonzero(off)) + lambda2 * float(off @ off)


def objective(theta, X, lambda0: float, lambda2: float) -> float:
    """The GraphL0 objective of specs/other-papers.md §2.2 at ``theta`` on data ``X`` (n × p):

    ``Σ_i [−log θ_ii + (1/θ_ii)‖Y θ_{·i}‖²] + λ0 #{i<j : θ_ij ≠ 0} + λ2 Σ_{i<j} θ_ij²`` with
    ``Y = (X − x̄)/√n``. ``theta`` must be a symmetric p × p matrix; the value is ``+inf`` when a
    diagonal entry is ≤ 0. Every solver in this package reports this same number.
    """
    X = check_data(X)
    theta = np.asarray(theta, dtype=float)
    p = X.shape[1]
    if theta.shape != (p, p):
        raise ReproError(f"theta has shape {theta.shape}; it must be ({p}, {p}) for X with {p} columns")
    if not np.all(np.isfinite(theta)):
        raise ReproError("theta has non-finite entries")
    if not np.allclose(theta, theta.T, rtol=1e-10, atol=1e-12):
        raise ReproError("theta is not symmetric; the objective is defined on symmetric matrices (use (Θ+Θᵀ)/2)")
    lambda0, lambda2, _ = check_penalties(lambda0, lambda2, None)
    Y = (X - X.mean(axis=0)) / math.sqrt(X.shape[0])
    return objective_from_factor(theta, np.ascontiguousarray(Y.T), lambda0, lambda2)


def pseudo_likelihood(theta, X, location=None) -> float:
    """Pseudo-log-likelihood ``Σ_i [log θ_ii − (1/θ_ii)‖Y θ_{·i}‖²]`` of data ``X`` at ``theta``,
    with ``Y = (X − location)/√n`` (``location`` defaults to the mean of ``X``); higher is better.
    The held-out criterion for choosing λ (the reference code's ``compute_likelihood``)."""
    X = check_data(X)
    theta = np.asarray(theta, dtype=float)
    d = np.diag(theta)
    if np.any(d <= 0):
        return -math.inf
    loc = X.mean(axis=0) if location is None else np.asarray(location, dtype=float)
    Y = (X - loc) / math.sqrt(X.shape[0])
    R = Y @ theta
    return float(np.sum(np.log(d) - np.einsum("ij,ij->j", R, R) / d))


@lru_cache(maxsize=16)
def triu(p: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(p, 1)``, computed once per p (read-only)."""
    i, j = np.triu_indices(p, 1)
    i.flags.writeable = False
    j.flags.writeable = False
    return i, j


@lru_cache(maxsize=16)
def _pairs(p: int) -> np.ndarray:
    out = np.ascontiguousarray(np.stack(triu(p), axis=1).astype(np.int64))
    out.flags.writeable = False
    return out


def all_pairs(p: int) -> np.ndarray:
    """Every ``(i, j)``, ``i < j``, in row-major order (the reference code's sorted active set)."""
    return _pairs(p).copy()


def mask_to_pairs(mask: np.ndarray) -> np.ndarray:
    """The pairs ``i < j`` where the symmetric boolean ``mask`` is set, row-major."""
    i, j = triu(mask.shape[0])
    return np.ascontiguousarray(_pairs(mask.shape[0])[mask[i, j]])
