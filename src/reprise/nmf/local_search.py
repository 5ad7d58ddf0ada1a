"""Local search on the support of H (specs/other-papers.md §7.3, ``SAALS`` + ``onedimmin``).

Each round evaluates the gradient of the objective in H at the current point and then tries

(a) ``size`` single-entry moves on entries drawn uniformly among the current nonzeros of H, and
(b) ``size²`` swaps: one of the ``size`` smallest nonzeros of H is set to zero and one of the
    ``size`` zero entries with the most negative gradient is opened,

each followed by the entry's 1-D refit (below). A move is kept only if the objective is strictly
lower than the current one, so the objective never increases and ``‖H‖₀`` never grows.

The 1-D refit of entry (i, j) alternates, at most ``inner_iter`` times: the exact minimiser of the
objective over ``H[i, j] ≥ 0`` with W and W̃ fixed; the projection of archetype i onto the data
hull (row i of W̃); the projection of every data point onto the hull of the archetypes (all rows of
W). It stops when an alternation lowers the objective by less than ``rtol · f₀``.

Departures from the Julia code, on purpose: a move is compared with the objective *after* the
moves already accepted in the round (the Julia code compares with the round's starting value,
which can accept an increase); a swap whose entries were changed by an earlier accepted swap in
the same round is skipped (otherwise ‖H‖₀ could exceed ℓ); the refit returns the refitted entry
itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reprise.nmf.core import hull_weights, objective


@dataclass
class LocalSearchResult:
    H: np.ndarray
    W: np.ndarray
    W_tilde: np.ndarray
    trace: list[float] = field(default_factory=list)  # objective at the start and after each round
    support_changes: int = 0  # accepted moves that changed the support (the set of nonzeros of H)
    accepted: int = 0  # accepted moves of either kind
    round_support_changes: list[int] = field(default_factory=list)  # support changes in each round


def gradient_h(X, W, H, W_tilde, lam: float) -> np.ndarray:
    """Gradient of the objective with respect to H: ``2Wᵀ(WH − X) + 2λ(H − W̃X)``."""
    G = 2.0 * W.T @ (W @ H - X)
    if lam != 0:
        G += 2.0 * lam * (H - W_tilde @ X)
    return G


def refit_entry(X, H, W, W_tilde, i: int, j: int, lam: float, inner_iter: int = 50, rtol: float = 1e-8):
    """The 1-D refit of entry (i, j) described in the module docstring, on copies; returns
    ``(H, W, W_tilde, objective)``. Every sub-step is an exact block minimisation (the hull
    projections keep their warm start where they would not improve), so the returned objective is
    never above the objective at the inputs."""
    H, W, W_tilde = H.copy(), W.copy(), W_tilde.copy()
    f0 = f_prev = objective(X, W, H, W_tilde, lam)
    for _ in range(inner_iter):
        col = W[:, i]
        den = float(col @ col) + lam
        if den > 0:
            resid = X[:, j] - W @ H[:, j]
            gap = H[i, j] - float(W_tilde[i] @ X[:, j]) if lam != 0 else 0.0
            H[i, j] = max(0.0, H[i, j] + (float(col @ resid) - lam * gap) / den)
        if lam != 0:
            W_tilde[i] = hull_weights(H[i:i + 1], X, W_tilde[i:i + 1])[0]
        W = hull_weights(X, H, W)
        f = objective(X, W, H, W_tilde, lam)
        done = f_prev - f < rtol * f0
        f_prev = f
        if done:
            break
    return H, W, W_tilde, f_prev


def local_search(X, H, W, W_tilde, lam: float, size: int = 2, max_iter: int = 4, rng=None,
                 inner_iter: int = 50) -> LocalSearchResult:
    """Run ``max_iter`` rounds of the local search (module docstring) from (H, W, W̃); ``rng`` is a
    ``numpy.random.Generator`` (or a seed) for the single-entry draws."""
    rng = np.random.default_rng(rng)
    X = np.asarray(X, dtype=float)
    H, W, W_tilde = (np.array(a, dtype=float) for a in (H, W, W_tilde))
    cost = objective(X, W, H, W_tilde, lam)
    res = LocalSearchResult(H, W, W_tilde, [cost])
    for _ in range(max_iter):
        changes_before = res.support_changes
        G = gradient_h(X, W, H, W_tilde, lam)
        flat_h, flat_g = H.reshape(-1), G.reshape(-1)
        nonzero = np.flatnonzero(flat_h > 0)
        zero = np.flatnonzero(flat_h == 0)
        entering = zero[np.argsort(flat_g[zero], kind="stable")[:size]]  # most negative gradient
        leaving = nonzero[np.argsort(flat_h[nonzero], kind="stable")[:size]]  # smallest values

        for _ in range(size if nonzero.size else 0):
            i, j = np.unravel_index(int(rng.choice(nonzero)), H.shape)
            H_c, W_c, Wt_c, f_c = refit_entry(X, H, W, W_tilde, i, j, lam, inner_iter)
            if f_c < cost:
                changed = bool(np.any((H_c > 0) != (H > 0)))
                H, W, W_tilde, cost = H_c, W_c, Wt_c, f_c
                res.accepted += 1
                res.support_changes += changed

        for out in leaving:
            for into in entering:
                if H.flat[out] == 0 or H.flat[into] != 0:  # touched by an earlier swap this round
                    continue
                start = H.copy()
                start.flat[out] = 0.0
                i, j = np.unravel_index(int(into), H.shape)
                H_c, W_c, Wt_c, f_c = refit_entry(X, start, W, W_tilde, i, j, lam, inner_iter)
                if f_c < cost:
                    changed = bool(np.any((H_c > 0) != (H > 0)))
                    H, W, W_tilde, cost = H_c, W_c, Wt_c, f_c
                    res.accepted += 1
                    res.support_changes += changed
        res.trace.append(cost)
        res.round_support_changes.append(res.support_changes - changes_before)
    res.H, res.W, res.W_tilde = H, W, W_tilde
    return res
