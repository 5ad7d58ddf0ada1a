"""reprise.nmf core: the objective, the robustness distances L, the block steps, continuation and
the hull projection, against direct computations and brute force."""
from __future__ import annotations

import numpy as np
import pytest

from reprise.io import ReproError
from reprise.nmf import (archetype_distance, block_prox, continuation, hull_weights, lambda_grid, make_synthetic,
                         objective, strong_robustness, weak_robustness)
from reprise.nmf.core import h_step, w_step, w_tilde_step
from reprise.sparsity import project_simplex


def _point(seed, m=12, n=9, k=3, ell=15):
    rng = np.random.default_rng(seed)
    X = make_synthetic(m, n, k, 0.3, random_state=rng).X
    W = project_simplex(rng.uniform(size=(m, k)), axis=1)
    Wt = project_simplex(rng.uniform(size=(k, m)), axis=1)
    H = np.maximum(rng.normal(size=(k, n)), 0)
    H[H < np.sort(H.ravel())[-ell]] = 0.0
    return X, W, H, Wt, ell


def _in_simplex(A):
    return bool(np.all(A >= -1e-12) and np.allclose(A.sum(axis=1), 1.0))


def test_objective_matches_direct_computation():
    X, W, H, Wt, _ = _point(0)
    direct_fit = sum((X[r, c] - sum(W[r, i] * H[i, c] for i in range(W.shape[1]))) ** 2
                     for r in range(X.shape[0]) for c in range(X.shape[1]))
    direct_reg = sum((H[i, c] - sum(Wt[i, r] * X[r, c] for r in range(X.shape[0]))) ** 2
                     for i in range(H.shape[0]) for c in range(H.shape[1]))
    assert objective(X, W, H, Wt, 0.7) == pytest.approx(direct_fit + 0.7 * direct_reg, rel=1e-12)
    assert objective(X, W, H, None, 0.0) == pytest.approx(direct_fit, rel=1e-12)
    with pytest.raises(ReproError, match="W_tilde"):
        objective(X, W, H, None, 1.0)


def test_distances_match_brute_force_and_directions():
    rng = np.random.default_rng(1)
    A, B = rng.uniform(size=(3, 5)), rng.uniform(size=(4, 5))
    brute = sum(min(float(np.sum((a - b) ** 2)) for b in B) for a in A)
    assert archetype_distance(A, B) == pytest.approx(brute, rel=1e-12)
    H0, Hh = A, np.vstack([A[0], A[0], A[0]])  # every estimate sits on a true archetype
    assert strong_robustness(H0, Hh) == pytest.approx(0.0, abs=1e-12)  # L(Ĥ, H0)
    assert weak_robustness(H0, Hh) == pytest.approx(archetype_distance(H0, Hh))  # L(H0, Ĥ) > 0
    assert weak_robustness(H0, Hh) > 0.1
    with pytest.raises(ReproError, match="features"):
        archetype_distance(A, B[:, :4])


@pytest.mark.parametrize("lam", [0.0, 0.5, 3.0])
def test_each_block_step_does_not_increase_the_objective(lam):
    for seed in range(5):
        X, W, H, Wt, ell = _point(seed)
        f = objective(X, W, H, Wt, lam)
        H2 = h_step(X, W, H, Wt, lam, ell)
        f_h = objective(X, W, H2, Wt, lam)
        W2 = w_step(X, W, H2)
        f_w = objective(X, W2, H2, Wt, lam)
        Wt2 = w_tilde_step(X, H2, Wt, lam)
        f_wt = objective(X, W2, H2, Wt2, lam)
        tol = 1e-10 * f
        assert f_h <= f + tol and f_w <= f_h + tol and f_wt <= f_w + tol
        assert np.count_nonzero(H2) <= ell and H2.min() >= 0
        assert _in_simplex(W2) and _in_simplex(Wt2)


def test_h_step_is_the_projection_onto_the_sparse_nonnegative_set():
    # the gradient step from H, then the nearest point with H ≥ 0 and ‖H‖₀ ≤ ℓ (checked against brute force)
    import itertools

    X, W, H, Wt, _ = _point(3, m=5, n=3, k=2, ell=4)
    lam, ell = 0.4, 3
    lip = 2 * np.linalg.norm(W, 2) ** 2 + 2 * lam
    V = H - (-2 * W.T @ (X - W @ H) + 2 * lam * (H - Wt @ X)) / lip
    best = min((np.sum((np.where(np.isin(np.arange(6), s).reshape(2, 3), np.maximum(V, 0), 0) - V) ** 2), s)
               for s in itertools.combinations(range(6), ell))
    expect = np.where(np.isin(np.arange(6), best[1]).reshape(2, 3), np.maximum(V, 0), 0)
    np.testing.assert_allclose(h_step(X, W, H, Wt, lam, ell), expect, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_block_prox_trace_is_non_increasing_and_feasible(lam):
    X, W, H, Wt, ell = _point(7, m=20, n=15, k=4, ell=30)
    res = block_prox(X, H, W, Wt, lam, ell, max_iter=200, tol=0.0)
    trace = np.array(res.trace)
    assert trace.size == 201 and np.all(np.diff(trace) <= 1e-10 * trace[0])
    assert np.count_nonzero(res.H) <= ell and res.H.min() >= 0
    assert _in_simplex(res.W) and _in_simplex(res.W_tilde)
    early = block_prox(X, H, W, Wt, lam, ell, max_iter=200, tol=1e-2)
    assert early.n_iter < 200 and early.trace[-2] - early.trace[-1] < 1e-2 * early.trace[0]


def test_lambda_grid_and_continuation_end_at_the_target():
    grid = lambda_grid(1.0, 30.0, 8)
    assert grid[0] == pytest.approx(30.0) and grid[-1] == 1.0 and len(grid) == 8
    assert np.allclose(np.diff(np.log10(grid)), np.log10(1 / 30) / 7) and all(np.diff(grid) < 0)
    assert lambda_grid(0.0, 30.0, 8) == [0.0] and lambda_grid(2.0, 30.0, 1) == [2.0]
    X, W, H, Wt, ell = _point(2)
    path = continuation(X, H, W, Wt, lambda_grid(0.5, 30.0, 3), ell, max_iter=50)
    assert path.lambdas[-1] == 0.5 and len(path.stages) == 3
    final = path.stages[-1]
    assert final.trace[-1] == pytest.approx(objective(X, path.W, path.H, path.W_tilde, 0.5))
    # each stage starts where the previous one ended
    assert path.stages[1].trace[0] == pytest.approx(objective(X, path.stages[0].W, path.stages[0].H,
                                                              path.stages[0].W_tilde, path.lambdas[1]))
    with pytest.raises(ReproError, match="empty"):
        continuation(X, H, W, Wt, [], ell)
    with pytest.raises(ReproError, match="n_lambdas"):
        lambda_grid(1.0, 30.0, 0)
    with pytest.raises(ReproError, match="lambda_max"):
        lambda_grid(1.0, -1.0, 3)


def test_hull_weights_project_onto_the_hull():
    rng = np.random.default_rng(4)
    V = rng.uniform(size=(4, 6))
    A_true = project_simplex(rng.uniform(size=(5, 4)), axis=1)
    A = hull_weights(A_true @ V, V, tol=1e-12, max_iter=20000)
    assert _in_simplex(A)
    np.testing.assert_allclose(A @ V, A_true @ V, atol=1e-5)
    # a point outside: the projection satisfies the variational inequality against every vertex
    x = rng.uniform(size=(1, 6)) * 3
    a = hull_weights(x, V, tol=1e-13, max_iter=20000)
    y = a @ V
    assert all(float((x[0] - y[0]) @ (v - y[0])) <= 1e-6 for v in V)
    # a warm start is never made worse
    warm = np.full((1, 4), 0.25)
    f = lambda w: float(np.sum((x - w @ V) ** 2))  # noqa: E731
    assert f(hull_weights(x, V, init=warm, max_iter=1)) <= f(warm) + 1e-12
