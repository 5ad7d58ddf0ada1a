"""Data of the sparse NMF paper: the synthetic generator of the demo (specs/other-papers.md §7.4)
and the real-image substitute, scikit-learn's bundled ``load_digits`` (§9.2: the paper's real
data sets are unverified; digits ships with the wheel, so it works offline)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reprise.nmf.core import NMFInputError, check_int

#: side of a digits image (8 × 8 pixels, row-major in the 64 features)
DIGITS_SIDE = 8


@dataclass(frozen=True)
class Synthetic:
    X: np.ndarray  # m × n observed data, noise added and clipped at 0
    X_clean: np.ndarray  # W0 @ H0
    W0: np.ndarray  # m × k, rows in the simplex
    H0: np.ndarray  # k × n true archetypes
    sigma: float


def make_synthetic(m: int = 40, n: int = 500, k: int = 20, sigma: float = 0.5, ell_true: int | None = None,
                   random_state=None) -> Synthetic:
    """The demo's instance: ``H0 ~ Uniform(0, 1)`` (dense unless ``ell_true < k·n``, then
    ``k·n − ell_true`` random entries are zero), rows of ``W0`` uniform then normalised to sum 1,
    ``X = max(W0 H0 + N(0, σ²), 0)``. ``random_state`` is an int or a ``numpy.random.Generator``."""
    m = check_int(m, "m", 1)
    n = check_int(n, "n", 1)
    k = check_int(k, "k", 1)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise NMFInputError(f"sigma={sigma!r} must be a noise standard deviation ≥ 0 (the demo uses 0.5)")
    ell_true = k * n if ell_true is None else check_int(ell_true, "ell_true", 1, k * n,
                                                         hint="the number of nonzeros of the true H0")
    rng = np.random.default_rng(random_state)
    H0 = rng.uniform(size=(k, n))
    if ell_true < k * n:
        H0.reshape(-1)[rng.choice(k * n, k * n - ell_true, replace=False)] = 0.0
    W0 = rng.uniform(size=(m, k))
    W0 /= W0.sum(axis=1, keepdims=True)
    X_clean = W0 @ H0
    X = np.maximum(X_clean + float(sigma) * rng.standard_normal((m, n)), 0.0)
    return Synthetic(X, X_clean, W0, H0, float(sigma))


def load_digits_matrix(n_images: int | None = None, random_state=None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, labels)`` from scikit-learn's bundled digits (1797 images of 8 × 8 pixels with values
    0..16), scaled to [0, 1] by dividing by 16; one image per row, pixels row-major. With
    ``n_images`` a random subset of that size (sorted indices; ``random_state`` an int/Generator)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.data.astype(float) / 16.0, digits.target.astype(int)
    if n_images is not None:
        n_images = check_int(n_images, "n_images", 1, X.shape[0], hint="load_digits has 1797 images")
        if n_images < X.shape[0]:
            idx = np.sort(np.random.default_rng(random_state).choice(X.shape[0], n_images, replace=False))
            X, y = X[idx], y[idx]
    return X, y
