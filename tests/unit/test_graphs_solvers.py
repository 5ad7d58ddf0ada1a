"""GraphL0BnB solvers: the objective, the coordinate updates, CD/CDPSI, the dual bound, BnB vs
exhaustive enumeration (specs/other-papers.md §2.2-§2.4, §2.10)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from reprise.graphs import (GraphProblem, L0GraphicalModel, branch_and_bound, exhaustive_enumeration,
                            generate_synthetic, objective, solve_heuristic)
from reprise.graphs import _kernels as K
from reprise.graphs.problem import all_pairs
from reprise.graphs.relaxation import FREE, ONE, ZERO, dual_bound, solve_relaxation

L0, L2 = 0.05, 0.05


def _data(p=5, n=100, seed=0, s=1, model="toeplitz"):
    X, _, Theta = generate_synthetic(n, p, model, rng=seed, half_bandwidth=s)
    return X, Theta, float(np.abs(Theta).max())


def _direct_objective(theta, X, l0, l2):
    n, p = X.shape
    S = np.cov(X, rowvar=False, bias=True)
    val = 0.0
    for i in range(p):
        val += -math.log(theta[i, i]) + theta[:, i] @ S @ theta[:, i] / theta[i, i]
    for i, j in itertools.combinations(range(p), 2):
        val += l0 * (theta[i, j] != 0) + l2 * theta[i, j] ** 2
    return val


@pytest.fixture(scope="module")
def p5():
    X, Theta, M = _data()
    enum = exhaustive_enumeration(X, L0, L2, M)
    return X, Theta, M, enum


def test_objective_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 6)) + 3.0
    A = rng.standard_normal((6, 6)) * (rng.random((6, 6)) < 0.4)
    theta = A + A.T + np.diag(rng.uniform(1, 2, 6))
    assert objective(theta, X, 0.3, 0.2) == pytest.approx(_direct_objective(theta, X, 0.3, 0.2), rel=1e-12)
    # the reduced (Cholesky) data give the same number
    prob = GraphProblem.from_data(X, 0.3, 0.2)
    assert prob.Yt.shape == (6, 6)
    assert prob.objective(theta) == pytest.approx(objective(theta, X, 0.3, 0.2), rel=1e-11)
    bad = theta.copy()
    bad[0, 0] = -1.0
    assert objective(bad, X, 0.3, 0.2) == math.inf


def _grid_min(f, lo, hi, extra=(0.0,), points=40001):
    grid = np.concatenate([np.linspace(lo, hi, points), np.asarray(extra, dtype=float)])
    vals = np.array([f(t) for t in grid])
    return float(vals.min())


@pytest.mark.parametrize("seed", range(40))
def test_coordinate_updates_equal_brute_force_minimisation(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.1, 3), rng.normal(0, 3)
    l0, l2, M = rng.uniform(0, 0.5), rng.uniform(0, 0.5) * (seed % 5 != 0), rng.uniform(0.2, 3)
    ratio = math.sqrt(l0 / l2) if l2 > 0 else math.inf
    for kind in (K.KIND_L0L2, K.KIND_PERSPECTIVE, K.KIND_ONE):
        theta = K.coord_min(a, b, kind, l0, l2, M, ratio)
        assert abs(theta) <= M + 1e-12

        def f(t, kind=kind):
            return a * t * t + b * t + K.pair_penalty(t, kind, l0, l2, M, ratio)

        assert f(theta) <= _grid_min(f, -M, M) + 1e-9
    # the closed form of spec §2.3 is the ℓ0-ℓ2 coordinate
    assert K.coord_l0l2(a, b, l0, l2, M) == K.coord_min(a, b, K.KIND_L0L2, l0, l2, M, ratio)


def test_cd_step_minimises_the_full_objective_along_the_coordinate():
    X, _, M = _data(p=6, n=80, seed=3)
    prob = GraphProblem.from_data(X, L0, L2, M)
    rng = np.random.default_rng(0)
    A = np.triu(rng.normal(0, 0.2, (6, 6)), 1)
    Theta = A + A.T + np.diag(1 / prob.S_diag)
    for i, j in [(0, 1), (2, 5), (3, 4)]:
        T, R = Theta.copy(), prob.residuals(Theta)
        a, b = K.coord_ab(prob.Yt, R, T, prob.S_diag, i, j)
        t = K.coord_l0l2(a, b, L0, L2, M)

        def full(v):
            U = T.copy()
            U[i, j] = U[j, i] = v
            return prob.objective(U)

        best = _grid_min(full, -M, M, points=2001)
        assert full(t) <= best + 1e-9 and best - full(t) < 1e-4
    # the diagonal update: argmin along θ_ii
    T, R = Theta.copy(), prob.residuals(Theta)
    K.diagonal_update(prob.Yt, R, T, prob.S_diag)
    np.testing.assert_allclose(R, prob.residuals(T), atol=1e-10)   # residuals kept in step
    i = 2
    U = T.copy()

    def along(v):
        U[i, i] = v
        return prob.objective(U)

    assert along(T[i, i]) <= _grid_min(along, 0.3 * T[i, i], 3 * T[i, i], (), points=2001) + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_cd_is_monotone_and_cdpsi_is_no_worse(seed):
    X, _, M = _data(p=15, n=60, seed=seed, s=2, model="uniform" if seed % 2 else "toeplitz")
    prob = GraphProblem.from_data(X, 0.02, 0.02, M)
    cd = solve_heuristic(prob, "cd", rel_tol=1e-8)
    assert np.all(np.diff(cd.trace) <= 1e-12 * abs(cd.trace[0]))
    psi = solve_heuristic(prob, "cdpsi", rel_tol=1e-8)
    assert np.all(np.diff(psi.trace) <= 1e-12 * abs(psi.trace[0]))
    assert psi.objective <= cd.objective + 1e-10
    for res in (cd, psi, solve_heuristic(prob, "ascd"), solve_heuristic(prob, "ascdpsi")):
        assert res.objective == pytest.approx(objective(res.Theta, X, 0.02, 0.02), rel=1e-10)
        assert np.allclose(res.Theta, res.Theta.T) and np.all(np.abs(res.Theta[~np.eye(15, dtype=bool)]) <= M)


def test_cdpsi_swaps_improve_a_bad_support():
    X, _, M = _data(p=12, n=200, seed=5, s=1)
    prob = GraphProblem.from_data(X, 0.05, 0.05, M)
    # start from a support of wrong pairs only: CD alone cannot leave it (zeros stay zero unless better)
    start = np.diag(1 / prob.S_diag)
    allowed = np.ones((12, 12), bool)
    for i in range(0, 10, 2):
        start[i, i + 2] = start[i + 2, i] = 0.05
    cd = solve_heuristic(prob, "cd", warm_start=start, allowed=allowed)
    psi = solve_heuristic(prob, "cdpsi", warm_start=start, allowed=allowed)
    assert psi.objective <= cd.objective + 1e-12


def test_dual_bound_is_below_the_optimum_everywhere(p5):
    X, _, M, enum = p5
    prob = GraphProblem.from_data(X, L0, L2, M)
    free = np.full((5, 5), FREE, dtype=np.int8)
    rng = np.random.default_rng(0)
    # at arbitrary (non-optimal) points, the root bound never exceeds the optimum
    for _ in range(20):
        A = np.triu(rng.normal(0, 0.3, (5, 5)) * (rng.random((5, 5)) < 0.5), 1)
        Theta = A + A.T + np.diag(rng.uniform(0.5, 2, 5))
        assert dual_bound(prob, Theta, prob.residuals(Theta), free) <= enum.objective + 1e-12
    # node relaxations with random fixings: bound ≤ the best Θ of the node (enumerated)
    pairs = [tuple(x) for x in all_pairs(5)]
    for trial in range(8):
        kinds = free.copy()
        fixed = rng.choice(len(pairs), size=3, replace=False)
        for q in fixed:
            i, j = pairs[q]
            kinds[i, j] = kinds[j, i] = ONE if rng.random() < 0.5 else ZERO
        rel = solve_relaxation(prob, kinds)
        node_opt = _node_optimum(prob, kinds)
        assert rel.dual <= node_opt + 1e-9
        assert rel.dual <= rel.primal + 1e-12
        assert (rel.primal - rel.dual) / abs(rel.primal) <= 1e-4  # converged: strong duality


def _node_optimum(prob, kinds):
    """min over supports consistent with the node's fixings (ONE pairs pay λ0 even at zero)."""
    pairs = all_pairs(prob.p)
    best = math.inf
    for bits in range(1 << len(pairs)):
        sel = np.array([(bits >> q) & 1 for q in range(len(pairs))], bool)
        k = kinds[pairs[:, 0], pairs[:, 1]]
        if np.any(sel & (k == ZERO)) or np.any(~sel & (k == ONE)):
            continue
        sp = np.ascontiguousarray(pairs[sel])
        T, R = prob.trivial()
        obj, _ = K.cd_solve(prob.Yt, R, T, prob.S_diag, sp, np.full(len(sp), ONE, np.int64), prob.lambda0,
                            prob.lambda2, prob.M, prob.ratio, 1e-13, 100000, np.empty(1))
        best = min(best, obj)
    return best


def test_enumeration_is_certified(p5):
    _, _, _, enum = p5
    assert enum.n_nodes == 1024
    assert enum.gap <= 1e-9 and enum.lower_bound <= enum.objective + 1e-12


@pytest.mark.parametrize("search", ["bfs", "best", "dfs"])
def test_bnb_finds_the_enumerated_optimum_with_a_valid_log(p5, search):
    X, _, M, enum = p5
    prob = GraphProblem.from_data(X, L0, L2, M)
    res = branch_and_bound(prob, gap_tol=1e-3, time_limit=20, search=search, dfs_levels=1 if search == "bfs" else 0)
    assert res.status == "optimal" and res.gap <= 1e-3
    assert res.objective <= enum.objective * (1 + 1e-6)
    assert res.lower_bound <= enum.objective + 1e-12
    assert len(res.log) == res.n_nodes >= 1
    for row in res.log:
        assert row["lower_bound"] <= row["upper_bound"] + 1e-12
        assert row["lower_bound"] <= enum.objective + 1e-12
        assert row["gap"] >= 0
    assert res.log[0]["node_lower_bound"] <= enum.objective + 1e-12   # the root bound covers everything
    lbs = [row["lower_bound"] for row in res.log]
    assert all(b >= a - 1e-12 for a, b in zip(lbs, lbs[1:]))          # the global bound never drops


def test_bnb_on_a_harder_instance_beats_or_matches_the_heuristic():
    X, _, M = _data(p=10, n=200, seed=2, s=2)
    est = L0GraphicalModel(lambda0=0.02, lambda2=0.01, M=M, solver="bnb", time_limit=1.0, gap_tol=1e-2).fit(X)
    heur = L0GraphicalModel(lambda0=0.02, lambda2=0.01, M=M).fit(X)
    assert est.objective_ <= heur.objective_ + 1e-12
    assert est.lower_bound_ <= est.objective_ and math.isfinite(est.gap_) and est.n_nodes_ >= 1
    assert est.objective_ == pytest.approx(objective(est.precision_, X, 0.02, 0.01), rel=1e-10)


# --------------------------------------------------------------------------- strengthened relaxation

def test_strengthened_dual_is_a_valid_and_tighter_bound_on_random_nodes():
    from reprise.graphs.strengthened import diagonal_bounds, solve_strengthened

    pairs = [tuple(x) for x in all_pairs(5)]
    checked = 0
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        n = int(rng.choice([15, 60, 300]))
        X, _, T = generate_synthetic(n, 5, "uniform" if seed % 2 else "toeplitz", rng=seed, p0=0.5,
                                     half_bandwidth=1 + seed % 2)
        l0, l2 = float(10 ** rng.uniform(-2.5, -0.7)), float(10 ** rng.uniform(-3, -1))
        M = float(np.abs(T).max() * rng.choice([0.3, 1.0]))
        prob = GraphProblem.from_data(X, l0, l2, M)
        h = solve_heuristic(prob, "cdpsi")
        bounds = diagonal_bounds(prob, h.objective)
        assert bounds is not None and np.all(bounds.lo <= np.diag(h.Theta) + 1e-12)
        assert np.all(np.diag(h.Theta) <= bounds.hi)
        for trial in range(3):
            kinds = np.full((5, 5), FREE, dtype=np.int8)
            for q in rng.choice(10, size=trial, replace=False):
                i, j = pairs[q]
                kinds[i, j] = kinds[j, i] = ONE if rng.random() < 0.5 else ZERO
            opt = _node_optimum(prob, kinds)
            A = np.triu(rng.normal(0, 0.2, (5, 5)), 1)
            results = []
            for warm, sweeps in ((h.Theta, 1000), (A + A.T + np.diag(1.5 / prob.S_diag), 5)):
                results.append(solve_strengthened(prob, kinds, bounds, warm, max_sweeps=sweeps))
                assert results[-1].dual <= opt + 1e-9          # valid however far block CD got
                checked += 1
            plain = solve_relaxation(prob, kinds, h.Theta)
            # the strengthened relaxation is pointwise above the perspective one (both near their optima)
            assert results[0].dual >= plain.dual - 1e-3 * abs(plain.dual)
    assert checked == 36


def test_strengthened_bnb_matches_enumeration_and_needs_fewer_nodes(p5):
    X, _, M, enum = p5
    prob = GraphProblem.from_data(X, L0, L2, M)
    plain = branch_and_bound(prob, gap_tol=1e-4, time_limit=20)
    strong = branch_and_bound(prob, gap_tol=1e-4, time_limit=20, relaxation="strengthened")
    assert strong.status == "optimal" and strong.objective <= enum.objective + 1e-4 * abs(enum.objective)
    assert all(row["lower_bound"] <= enum.objective + 1e-12 for row in strong.log)
    assert strong.n_nodes <= plain.n_nodes
    est = L0GraphicalModel(lambda0=L0, lambda2=L2, M=M, solver="bnb", relaxation="strengthened", gap_tol=1e-4).fit(X)
    assert est.objective_ == pytest.approx(strong.objective, rel=1e-9)


def test_strengthened_falls_back_to_the_perspective_when_n_is_at_most_p():
    from reprise.graphs.strengthened import diagonal_bounds

    X, _, M = _data(p=6, n=5, seed=1)
    prob = GraphProblem.from_data(X, L0, L2, M)
    assert diagonal_bounds(prob, 10.0) is None
    res = branch_and_bound(prob, time_limit=1.0, relaxation="strengthened")
    assert res.lower_bound <= res.objective
