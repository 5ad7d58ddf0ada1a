"""reprise.mtl solvers: exact solvers against brute force, OA's gap, IHT descent, local search."""
import sys
from itertools import combinations, product

import numpy as np
import pytest

from reprise.io import ReproError
from reprise.mtl import SparseMultiTask, objective, simulate_demo
from reprise.mtl import iht as iht_mod
from reprise.mtl._core import internal_objective, prepare


def _tab3_instance(seed=0, K=2, p=8, snr_db=10.0):
    d = simulate_demo(seed, K=K, p=p, n=50, s_true=2, q=1, rho=0.4, snr_db=snr_db)
    return d.Xs, d.ys


def _joint_lstsq(Xs, ys, supports, l1, l2):
    """min over intercepts and β on the given supports of the smooth objective, as one least-squares
    problem with explicit intercept columns (no centring), built here independently."""
    K, p = len(Xs), Xs[0].shape[1]
    cols = [("b0", k, None) for k in range(K)] + [("b", k, j) for k in range(K) for j in supports[k]]
    index = {c: i for i, c in enumerate(cols)}
    rows, target = [], []
    for k in range(K):
        n = len(ys[k])
        blk = np.zeros((n, len(cols)))
        blk[:, index[("b0", k, None)]] = 1.0
        for j in supports[k]:
            blk[:, index[("b", k, j)]] = Xs[k][:, j]
        rows.append(blk / np.sqrt(2 * n))
        target.append(ys[k] / np.sqrt(2 * n))
    for k in range(K):
        for j in supports[k]:
            r = np.zeros(len(cols))
            r[index[("b", k, j)]] = np.sqrt(l1 / 2)
            rows.append(r[None])
            target.append(np.zeros(1))
    if l2:
        P = np.eye(K) - 1.0 / K
        for j in range(p):
            users = [k for k in range(K) if j in supports[k]]
            if users:
                blk = np.zeros((K, len(cols)))
                for k in users:
                    blk[:, index[("b", k, j)]] = np.sqrt(l2 / 2) * P[:, k]
                rows.append(blk)
                target.append(np.zeros(K))
    A, d = np.vstack(rows), np.concatenate(target)
    v = np.linalg.lstsq(A, d, rcond=None)[0]
    return float(((A @ v - d) ** 2).sum())


def _brute_force(Xs, ys, s, l1, l2, lz, common=False):
    K, p = len(Xs), Xs[0].shape[1]
    subsets = [c for t in range(s + 1) for c in combinations(range(p), t)]
    combos = ([(sub,) * K for sub in subsets] if common else product(subsets, repeat=K))
    cache, best = {}, (np.inf, None)
    for combo in combos:
        if l2 == 0:
            val = 0.0
            for k, sub in enumerate(combo):
                if (k, sub) not in cache:
                    cache[(k, sub)] = _joint_lstsq([Xs[k]], [ys[k]], [sub], l1, 0.0)
                val += cache[(k, sub)]
        else:
            val = _joint_lstsq(Xs, ys, combo, l1, l2)
        Z = np.zeros((K, p))
        for k, sub in enumerate(combo):
            Z[k, list(sub)] = 1
        val += lz / 2 * float(((Z - Z.mean(0)) ** 2).sum())
        if val < best[0] - 1e-12:
            best = (val, Z.astype(bool))
    return best


def test_enumeration_equals_brute_force_on_the_tab3_instance():
    Xs, ys = _tab3_instance()
    est = SparseMultiTask(s=2, lambda1=1e-3, lambda_z=0.05, solver="exact", exact_method="enumerate",
                          scale=False).fit(Xs, ys)
    best, Z = _brute_force(Xs, ys, 2, 1e-3, 0.0, 0.05)
    assert est.solver_ == "enumerate" and est.gap_ == 0.0
    assert est.objective_ == pytest.approx(best, rel=1e-9)
    assert np.array_equal(est.support_, Z)
    assert objective(Xs, ys, est.coef_, est.intercept_, lambda1=1e-3, lambda_z=0.05, support=est.support_,
                     s=2) == pytest.approx(best, rel=1e-9)


def test_enumeration_with_coupled_tasks_and_common_support_equals_brute_force():
    Xs, ys = _tab3_instance(seed=1, p=5)
    est = SparseMultiTask(s=2, lambda1=1e-2, lambda2=0.3, lambda_z=0.1, solver="exact", scale=False).fit(Xs, ys)
    best, Z = _brute_force(Xs, ys, 2, 1e-2, 0.3, 0.1)
    assert est.objective_ == pytest.approx(best, rel=1e-9)
    assert np.array_equal(est.support_, Z)
    Xs3, ys3 = _tab3_instance(seed=2, K=3, p=6)
    est = SparseMultiTask(s=2, lambda1=1e-2, lambda2=0.2, common_support=True, solver="exact",
                          scale=False).fit(Xs3, ys3)
    best, Z = _brute_force(Xs3, ys3, 2, 1e-2, 0.2, 0.0, common=True)
    assert est.objective_ == pytest.approx(best, rel=1e-9)
    assert np.array_equal(est.support_, Z)


def test_outer_approximation_closes_the_gap_and_is_never_below_the_optimum():
    for seed, l2 in ((0, 0.0), (3, 0.0), (4, 0.2)):
        Xs, ys = _tab3_instance(seed=seed)
        kw = dict(s=2, lambda1=1e-3, lambda2=l2, lambda_z=0.05, solver="exact", scale=False)
        enum = SparseMultiTask(exact_method="enumerate", **kw).fit(Xs, ys)
        oa = SparseMultiTask(exact_method="oa", **kw).fit(Xs, ys)
        assert oa.solver_ == "oa"
        assert oa.gap_ <= 0.05
        assert oa.objective_ >= enum.objective_ - 1e-9
        assert oa.lower_bound_ <= enum.objective_ + 1e-9  # M = 1.5 max|β| is valid on these instances
        heur = SparseMultiTask(**{**kw, "solver": "iht"}).fit(Xs, ys)
        assert heur.objective_ >= enum.objective_ - 1e-9


def test_no_sharing_penalties_reduce_to_independent_best_subset():
    Xs, ys = _tab3_instance(seed=5, K=3, p=7)
    est = SparseMultiTask(s=3, lambda1=1e-2, solver="exact", scale=False).fit(Xs, ys)
    total = 0.0
    for k in range(3):  # each task's own best subset of size 3, enumerated here
        vals = {sub: _joint_lstsq([Xs[k]], [ys[k]], [sub], 1e-2, 0.0) for sub in combinations(range(7), 3)}
        sub = min(vals, key=vals.get)
        total += vals[sub]
        assert set(np.flatnonzero(est.support_[k])) == set(sub)
        single = SparseMultiTask(s=3, lambda1=1e-2, solver="exact", scale=False).fit([Xs[k]], [ys[k]])
        np.testing.assert_allclose(est.coef_[k], single.coef_[0], atol=1e-10)
    assert est.objective_ == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize("kw", [dict(lambda1=1e-3), dict(lambda1=1e-3, lambda_z=0.3), dict(lambda1=1e-2, lambda2=0.5),
                                dict(lambda1=1e-3, lambda2=0.2, lambda_z=0.2), dict(lambda1=1e-3, common_support=True),
                                dict(lambda2=0.3, common_support=True)])
def test_iht_objective_never_increases(kw):
    rng = np.random.default_rng(11)
    K, p, n = 4, 30, 40
    B = np.zeros((K, p))
    B[:, :3] = rng.normal(size=(K, 3))
    for k in range(K):
        B[k, 3 + rng.choice(10, 2, replace=False)] = rng.normal(size=2)
    Xs = [rng.normal(size=(n, p)) @ np.linalg.cholesky(0.6 ** np.abs(np.subtract.outer(range(p), range(p)))).T
          for _ in range(K)]
    ys = [X @ b + rng.normal(size=n) for X, b in zip(Xs, B)]
    for scale in (False, True):
        est = SparseMultiTask(s=5, scale=scale, **kw).fit(Xs, ys)
        tr = est.objective_trace_
        assert len(tr) > 2
        assert np.all(np.diff(tr) <= 1e-12 * np.abs(tr[:-1])), np.diff(tr).max()
        assert tr[-1] == pytest.approx(est.objective_, rel=1e-10)
        if not scale:
            assert est.objective_ == pytest.approx(objective(Xs, ys, est.coef_, est.intercept_, support=est.support_,
                                                             lambda1=kw.get("lambda1", 0.0), s=5,
                                                             lambda2=kw.get("lambda2", 0.0),
                                                             lambda_z=kw.get("lambda_z", 0.0)), rel=1e-9)
        assert np.all(est.support_.sum(axis=1) <= 5)
        if kw.get("common_support"):
            assert np.all(est.support_ == est.support_[0])


def test_local_search_moves_lower_the_objective():
    Xs, ys = _tab3_instance(seed=6, K=3, p=8, snr_db=20.0)
    data = prepare(Xs, ys, scale=False)
    rng = np.random.default_rng(0)
    for pen, common in ((iht_mod.Penalties(1e-3, 0.0, 0.05), False), (iht_mod.Penalties(1e-3, 0.3, 0.1), False),
                        (iht_mod.Penalties(1e-3, 0.3, 0.0), True)):
        total_moves = 0
        for _ in range(5):
            B0 = rng.normal(size=(3, 8))
            B, Z = iht_mod.threshold(B0, 2, common)
            before = internal_objective(data, B, Z, pen.lambda1, pen.lambda2, pen.lambda_z)
            B2, Z2, moves = iht_mod.local_search(data, 2, pen, common, B, Z, max_iter=50)
            after = internal_objective(data, B2, Z2, pen.lambda1, pen.lambda2, pen.lambda_z)
            assert after <= before + 1e-12
            assert np.all(Z2.sum(axis=1) <= 2) and np.all(B2[~Z2] == 0)
            if moves:
                assert after < before
            total_moves += moves
        assert total_moves > 0


def test_enumeration_beyond_its_limit_fails_clearly():
    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(20, 30)) for _ in range(3)]
    ys = [rng.normal(size=20) for _ in range(3)]
    with pytest.raises(ReproError, match=r"(?s)enumeration would evaluate .* exact_method='oa'"):
        SparseMultiTask(s=4, lambda_z=0.1, solver="exact", exact_method="enumerate").fit(Xs, ys)


def test_outer_approximation_without_pyscipopt_raises_a_clear_error(monkeypatch):
    Xs, ys = _tab3_instance()
    monkeypatch.setitem(sys.modules, "pyscipopt", None)
    with pytest.raises(ReproError, match="outer approximation needs SCIP"):
        SparseMultiTask(s=2, lambda_z=0.05, solver="exact", exact_method="oa").fit(Xs, ys)
    # enumeration does not need it
    assert SparseMultiTask(s=2, lambda_z=0.05, solver="exact").fit(Xs, ys).solver_ == "enumerate"
