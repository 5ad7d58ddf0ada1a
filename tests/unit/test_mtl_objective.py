"""reprise.mtl objective: against a direct computation, feasibility checks, the prepared form."""
import itertools

import numpy as np
import pytest

from reprise.io import ReproError
from reprise.mtl import max_zbar_penalty, multitask_rmse, objective
from reprise.mtl._core import internal_objective, prepare


def _tasks(seed=0, K=3, p=6, n=(20, 25, 30)):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(2.0, 3.0, size=(nk, p)) for nk in n[:K]]
    ys = [rng.normal(5.0, 2.0, size=nk) for nk in n[:K]]
    return Xs, ys


def _direct(Xs, ys, B, b0, Z, l1, l2, lz):
    """The §6.2 objective written out with loops."""
    K, p = B.shape
    val = 0.0
    for k in range(K):
        n = len(ys[k])
        for i in range(n):
            val += (ys[k][i] - b0[k] - sum(Xs[k][i, j] * B[k, j] for j in range(p))) ** 2 / (2 * n)
    for k in range(K):
        for j in range(p):
            bbar = sum(B[m, j] for m in range(K)) / K
            zbar = sum(Z[m, j] for m in range(K)) / K
            val += l1 / 2 * B[k, j] ** 2 + l2 / 2 * (B[k, j] - bbar) ** 2 + lz / 2 * (Z[k, j] - zbar) ** 2
    return val


def test_objective_matches_direct_computation():
    Xs, ys = _tasks()
    rng = np.random.default_rng(1)
    Z = rng.random((3, 6)) < 0.5
    B = np.where(Z, rng.normal(size=(3, 6)), 0.0)
    Z[0, 0] = True  # a selected coordinate with a zero coefficient is allowed
    B[0, 0] = 0.0
    b0 = rng.normal(size=3)
    got = objective(Xs, ys, B, b0, lambda1=0.3, lambda2=0.7, lambda_z=1.1, support=Z)
    assert got == pytest.approx(_direct(Xs, ys, B, b0, Z.astype(float), 0.3, 0.7, 1.1), rel=1e-12)


def test_default_intercept_is_the_best_one_and_support_defaults_to_nonzeros():
    Xs, ys = _tasks(seed=2)
    rng = np.random.default_rng(3)
    B = rng.normal(size=(3, 6)) * (rng.random((3, 6)) < 0.5)
    best = np.array([y.mean() - X.mean(0) @ b for X, y, b in zip(Xs, ys, B)])
    val = objective(Xs, ys, B, lambda_z=0.4)
    assert val == pytest.approx(_direct(Xs, ys, B, best, (B != 0).astype(float), 0, 0, 0.4), rel=1e-12)
    for shift in (-0.1, 0.1):  # any other intercept is worse
        assert objective(Xs, ys, B, best + shift, lambda_z=0.4) > val


def test_internal_objective_equals_public_one_on_unscaled_data():
    Xs, ys = _tasks(seed=4)
    rng = np.random.default_rng(5)
    Z = rng.random((3, 6)) < 0.4
    B = np.where(Z, rng.normal(size=(3, 6)), 0.0)
    data = prepare(Xs, ys, scale=False)
    coef, icpt = data.to_original(B)
    assert internal_objective(data, B, Z, 0.2, 0.5, 0.8) == pytest.approx(
        objective(Xs, ys, coef, icpt, lambda1=0.2, lambda2=0.5, lambda_z=0.8, support=Z), rel=1e-10)


def test_scaled_preparation_is_the_objective_on_standardised_columns():
    Xs, ys = _tasks(seed=6)
    data = prepare(Xs, ys, scale=True)
    std = [(X - X.mean(0)) / X.std(0) for X in Xs]
    B = np.random.default_rng(7).normal(size=(3, 6))
    Z = np.ones((3, 6), dtype=bool)
    assert internal_objective(data, B, Z, 0.1, 0.2, 0.0) == pytest.approx(
        objective(std, ys, B, lambda1=0.1, lambda2=0.2), rel=1e-10)


def test_infeasible_inputs_are_rejected():
    Xs, ys = _tasks()
    B = np.zeros((3, 6))
    B[0, :3] = 1.0
    with pytest.raises(ReproError, match="outside support"):
        objective(Xs, ys, B, support=np.zeros((3, 6)))
    with pytest.raises(ReproError, match="more than s=2"):
        objective(Xs, ys, B, s=2)
    with pytest.raises(ReproError, match="common_support"):
        objective(Xs, ys, B, common_support=True)
    with pytest.raises(ReproError, match=r"coef has shape"):
        objective(Xs, ys, np.zeros((2, 6)))
    with pytest.raises(ReproError, match="lambda_z"):
        objective(Xs, ys, B, lambda_z=-1)


def test_max_zbar_penalty_matches_brute_force():
    for K, p, s in [(2, 4, 1), (2, 4, 2), (3, 4, 2), (3, 5, 3), (2, 3, 2)]:
        subsets = list(itertools.combinations(range(p), s))
        best = 0.0
        for combo in itertools.product(subsets, repeat=K):
            Z = np.zeros((K, p))
            for k, sub in enumerate(combo):
                Z[k, list(sub)] = 1
            best = max(best, float(((Z - Z.mean(0)) ** 2).sum()))
        assert max_zbar_penalty(K, p, s) == pytest.approx(best)


def test_multitask_rmse_is_the_mean_of_task_rmses():
    Xs, ys = _tasks(seed=8)
    B, b0 = np.zeros((3, 6)), np.zeros(3)
    expect = np.mean([np.sqrt(np.mean(y ** 2)) for y in ys])
    assert multitask_rmse(Xs, ys, B, b0) == pytest.approx(expect)
