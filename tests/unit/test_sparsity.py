"""The shared sparse-learning pieces (reprise.sparsity) against brute force and definitions."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from reprise.io import ReproError
from reprise.sparsity import (group_top_k, hard_threshold, mip_backend, project_simplex, rel_frobenius,
                              support_counts, top_k_mask)


def test_support_counts_mcc_f1_match_definitions():
    truth = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    est = np.array([[1.0, 0.4, 0.2], [0.4, 1.0, 0.0], [0.2, 0.0, 1.0]])
    c = support_counts(est, truth, off_diagonal=True)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 0, 2)
    assert c.mcc == pytest.approx((2 * 2 - 2 * 0) / np.sqrt(4 * 2 * 4 * 2))
    assert c.f1 == pytest.approx(2 * 2 / (2 * 2 + 2))
    assert support_counts(truth, truth).mcc == pytest.approx(1.0)
    assert support_counts(np.zeros(3), np.zeros(3)).mcc == 0.0  # an empty margin is defined as 0
    with pytest.raises(ReproError, match="shape"):
        support_counts(np.zeros(3), np.zeros(4))


def test_rel_frobenius():
    assert rel_frobenius(2 * np.eye(2), np.eye(2)) == pytest.approx(1.0)
    with pytest.raises(ReproError, match="zero"):
        rel_frobenius(np.eye(2), np.zeros((2, 2)))


def test_top_k_is_the_best_k_subset_by_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=7)
    for k in range(8):
        best = max(itertools.combinations(range(7), k), key=lambda s: sum(abs(x[list(s)])))
        assert set(np.flatnonzero(top_k_mask(x, k))) == set(best)
    m = rng.normal(size=(4, 6))
    rows = top_k_mask(m, 2, axis=1)
    assert (rows.sum(axis=1) == 2).all() and (top_k_mask(m, 3, axis=0).sum(axis=0) == 3).all()
    assert np.count_nonzero(hard_threshold(m, 5)) == 5
    assert top_k_mask(np.ones(4), 2).tolist() == [True, True, False, False]  # ties: lower index first
    with pytest.raises(ReproError, match="outside"):
        top_k_mask(x, 8)


def test_group_top_k_keeps_the_heaviest_groups():
    x = np.array([3.0, 0.1, 0.1, 2.0, 2.0, 0.5])
    groups = np.array([0, 1, 1, 2, 2, 3])
    assert group_top_k(x, 2, groups).tolist() == [True, False, False, True, True, False]


def test_simplex_projection_is_the_nearest_point_of_the_simplex():
    rng = np.random.default_rng(1)
    V = rng.normal(size=(20, 5)) * 2
    P = project_simplex(V)
    assert np.allclose(P.sum(axis=1), 1) and (P >= 0).all()
    # optimality: no random simplex point is closer than the projection
    for v, p in zip(V, P):
        others = rng.dirichlet(np.ones(5), size=2000)
        assert np.linalg.norm(v - p) <= np.linalg.norm(others - v, axis=1).min() + 1e-12
    assert np.allclose(project_simplex(V.T, axis=0), P.T)
    w = np.array([0.2, 0.3, 0.5])
    assert np.allclose(project_simplex(w), w)  # a point of the simplex stays put


def test_mip_backend_choice():
    assert mip_backend("highs") == "highs"
    with pytest.raises(ReproError, match="unknown"):
        mip_backend("cplex")
