"""reprise.nmf MIP initialisation: the HiGHS master against enumeration of supports, the outer
approximation on tiny instances, and feasibility of the initial point."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from reprise.io import ReproError
from reprise.nmf.mip import Cut, inner_problem, make_cut, mip_init, solve_master


def _enumerate(shape, ell):
    N = shape[0] * shape[1]
    for bits in itertools.product([0.0, 1.0], repeat=N):
        if sum(bits) <= ell:
            yield np.array(bits).reshape(shape)


def test_master_on_highs_matches_enumeration():
    rng = np.random.default_rng(0)
    shape, ell = (2, 3), 3
    for _ in range(5):
        cuts = [Cut(float(rng.uniform(0, 5)), -rng.uniform(0, 4, size=shape),
                    rng.integers(0, 2, size=shape).astype(float)) for _ in range(4)]

        def eta(Z):
            return max(c.value + float(np.sum(c.grad * (Z - c.Z))) for c in cuts)

        best = min(eta(Z) for Z in _enumerate(shape, ell))
        res = solve_master(cuts, shape, ell)
        assert res.status == 0 and res.Z.sum() <= ell
        assert res.eta == pytest.approx(best, abs=1e-7)
        assert eta(res.Z) == pytest.approx(best, abs=1e-7)
        assert res.bound <= res.eta + 1e-9


def test_master_needs_a_cut_and_highs():
    with pytest.raises(ReproError, match="cut"):
        solve_master([], (2, 2), 2)
    with pytest.raises(ReproError, match="unknown"):
        solve_master([Cut(1.0, -np.ones((2, 2)), np.zeros((2, 2)))], (2, 2), 2, backend="cplex")


def test_cut_is_a_lower_bound_at_other_supports():
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(5, 3))
    cut, _, _ = make_cut(np.zeros((2, 3)), X, 1.0, max_iter=5000, tol=1e-12)
    for Z in _enumerate((2, 3), 6):  # F is convex in Z, so the linearisation at Z⁰ is below F
        F = inner_problem(Z, X, 1.0, max_iter=5000, tol=1e-12)[0]
        assert cut.value + float(np.sum(cut.grad * (Z - cut.Z))) <= F + 1e-6


def test_outer_approximation_reaches_the_enumerated_optimum():
    rng = np.random.default_rng(2)
    for _ in range(3):
        X = rng.uniform(size=(4, 3))
        best = min(inner_problem(Z, X, 1.0, max_iter=5000, tol=1e-12)[0] for Z in _enumerate((2, 3), 3))
        res = mip_init(X, 2, 3, big_m=1.0, max_cuts=60, min_gap=1e-6, inner_max_iter=5000, master_gap=0.0)
        assert res.stop == "gap"
        assert res.best_value == pytest.approx(best, rel=2e-3, abs=1e-6)


def test_mip_init_point_is_feasible():
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(10, 8))
    res = mip_init(X, 3, 9, big_m=1.0, max_cuts=4, time_limit=10.0)
    assert res.n_cuts <= 4 and np.count_nonzero(res.H) <= 9 and res.H.min() >= 0 and res.H.max() <= 1.0
    assert np.allclose(res.W.sum(axis=1), 1) and res.W.min() >= 0
    assert np.allclose(res.W_tilde.sum(axis=1), 1) and res.W_tilde.min() >= 0
    assert res.stop in {"gap", "max_cuts", "time_limit"}
    with pytest.raises(ReproError, match="mip_big_m"):
        mip_init(X, 3, 9, big_m=0.0)
