"""reprise.nmf local search: never increases the objective, keeps the budget, counts support changes."""
from __future__ import annotations

import numpy as np

from reprise.nmf import ArchetypalNMF, local_search, make_synthetic, objective
from reprise.nmf.local_search import refit_entry


def test_local_search_never_increases_the_objective_and_keeps_the_budget():
    for seed in range(3):
        d = make_synthetic(15, 20, 3, 0.4, random_state=seed)
        for lam in (0.0, 1.0):
            est = ArchetypalNMF(3, 30, lam, n_lambdas=2, max_iter=30, random_state=seed).fit(d.X)
            H, W, Wt = est.components_, est.weights_, est.weights_tilde_
            start = objective(d.X, W, H, Wt, lam)
            res = local_search(d.X, H, W, Wt, lam, size=3, max_iter=3, rng=seed)
            trace = np.array(res.trace)
            assert trace[0] == start and np.all(np.diff(trace) <= 0)
            assert trace[-1] == objective(d.X, res.W, res.H, res.W_tilde, lam)
            assert np.count_nonzero(res.H) <= 30 and res.H.min() >= 0
            assert np.allclose(res.W.sum(axis=1), 1) and np.allclose(res.W_tilde.sum(axis=1), 1)
            assert res.support_changes == sum(res.round_support_changes) <= res.accepted
            assert np.all(H == est.components_)  # inputs are not modified


def test_refit_entry_does_not_increase_the_objective():
    d = make_synthetic(10, 12, 3, 0.3, random_state=5)
    est = ArchetypalNMF(3, 18, 0.5, n_lambdas=1, max_iter=5, random_state=0).fit(d.X)
    H, W, Wt = est.components_, est.weights_, est.weights_tilde_
    f = objective(d.X, W, H, Wt, 0.5)
    for i, j in [(0, 0), (1, 5), (2, 11)]:
        H2, W2, Wt2, f2 = refit_entry(d.X, H, W, Wt, i, j, 0.5)
        assert f2 <= f + 1e-12 and f2 == objective(d.X, W2, H2, Wt2, 0.5)
        assert np.all(H2[np.arange(3) != i] == H[np.arange(3) != i])  # only row i of H moves ...
        assert np.all(np.delete(H2[i], j) == np.delete(H[i], j))  # ... and only entry j of it
