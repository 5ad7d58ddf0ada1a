"""sMTL's group-penalised baselines: the SGL prox against brute force, SGL with no group term
against scikit-learn's Lasso, monotone objectives, the GEL derivative against a numerical one,
lambda_max, and the tuned path's support cap."""
import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import Lasso

from reprise.io import ReproError
from reprise.mtl._core import prepare
from reprise.mtl.baselines import (GroupExponentialLasso, SparseGroupLasso, gel_derivative, gel_lambda_max,
                                   gel_penalty, sgl_lambda_max, sgl_penalty, sgl_prox, stacked_loss, tune_path)


def _tasks(seed=0, K=3, n=30, p=8):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n + 5 * k, p)) for k in range(K)]
    B = np.zeros((K, p))
    B[:, :2] = rng.normal(1.0, 0.3, size=(K, 2))
    B[0, 4] = 1.5
    ys = [X @ b + 0.3 * rng.normal(size=X.shape[0]) + k for k, (X, b) in enumerate(zip(Xs, B))]
    return Xs, ys


@pytest.mark.parametrize("t1,t2", [(0.3, 0.5), (0.0, 0.8), (0.4, 0.0), (2.0, 0.1)])
def test_sgl_prox_matches_brute_force(t1, t2):
    V = np.random.default_rng(1).normal(size=(3, 4))
    P = sgl_prox(V, t1, t2)

    def f(b):
        Bm = b.reshape(V.shape)
        return 0.5 * ((Bm - V) ** 2).sum() + t1 * np.abs(Bm).sum() + t2 * np.sqrt((Bm ** 2).sum(axis=0)).sum()

    ref = min((minimize(f, x0, method="Powell", options=dict(xtol=1e-10, ftol=1e-14, maxiter=200000))
               for x0 in (V.ravel(), np.zeros(V.size), P.ravel() + 0.01)), key=lambda r: r.fun)
    assert f(P.ravel()) <= ref.fun + 1e-9          # the closed form is at least as good as the search
    # the optimum is unique (strongly convex): the search lands on it
    np.testing.assert_allclose(P.ravel(), ref.x, atol=1e-4)


def test_sgl_without_group_term_is_the_lasso():
    Xs, ys = _tasks()
    data = prepare(Xs, ys, scale=True)
    # stacked block-diagonal design and outcome of the prepared data (loss Σ‖y_k − X_kβ_k‖²/(2N))
    N, K, p = int(data.n.sum()), data.K, data.p
    D = np.zeros((N, K * p))
    row = 0
    for k, X in enumerate(data.X):
        D[row:row + X.shape[0], k * p:(k + 1) * p] = X
        row += X.shape[0]
    yy = np.concatenate(data.y)
    lam = 0.05
    ref = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=200000).fit(D, yy).coef_.reshape(K, p)
    for est in (SparseGroupLasso(lam=lam, alpha=1.0, tol=1e-12, max_iter=20000),
                SparseGroupLasso(lam=lam, alpha=0.5, group_weight=0.0, tol=1e-12, max_iter=20000)):
        B = data.to_internal(est.fit(Xs, ys).coef_)
        lam_l1 = lam * est.alpha
        ref_b = ref if est.alpha == 1.0 else \
            Lasso(alpha=lam_l1, fit_intercept=False, tol=1e-12, max_iter=200000).fit(D, yy).coef_.reshape(K, p)
        np.testing.assert_allclose(B, ref_b, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: SparseGroupLasso(lam=0.05, alpha=0.3, tol=1e-10, max_iter=3000),
                                  lambda: GroupExponentialLasso(lam=0.08, tol=1e-10, max_iter=500)])
def test_objectives_decrease_monotonically(make):
    Xs, ys = _tasks(seed=2)
    est = make().fit(Xs, ys)
    h = est.objective_path_
    assert len(h) > 3 and np.all(np.diff(h) <= 1e-12 * np.abs(h[:-1]))
    # the objective reported equals the objective recomputed at the fitted coefficients
    data = prepare(Xs, ys, scale=True)
    assert est.penalised_objective(data, data.to_internal(est.coef_)) == pytest.approx(est.objective_, rel=1e-10)


def test_gel_fixed_point_is_a_local_minimum():
    # coordinatewise KKT of the true (nonconvex) objective at the solution: ∇L + ρ'(θ_j) sign = 0 on nonzeros
    Xs, ys = _tasks(seed=3)
    est = GroupExponentialLasso(lam=0.05, tol=1e-12, max_iter=5000).fit(Xs, ys)
    data = prepare(Xs, ys, scale=True)
    B = data.to_internal(est.coef_)
    g = (data.n / data.n.sum())[:, None] * (np.einsum("kij,kj->ki", data.G, B) - data.c)
    w = gel_derivative(np.abs(B).sum(axis=0), 0.05, 1 / 3, np.sqrt(data.K))
    nz = B != 0
    np.testing.assert_allclose((g + np.sign(B) * w)[nz], 0, atol=1e-7)
    assert np.all(np.abs(g[~nz]) <= np.broadcast_to(w, B.shape)[~nz] + 1e-9)


def test_gel_penalty_derivative_matches_formula():
    lam, tau, w = 0.7, 1 / 3, 2.0
    lj = lam * w
    for theta in (0.0, 0.3, 1.7, 5.0):
        h = 1e-6
        B1 = np.array([[theta + h], [0.0]])
        B0 = np.array([[max(theta - h, 0.0)], [0.0]])
        num = (gel_penalty(B1, lam, tau, w) - gel_penalty(B0, lam, tau, w)) / (B1[0, 0] - B0[0, 0])
        assert num == pytest.approx(float(gel_derivative(theta, lam, tau, w)), rel=1e-5)
        assert float(gel_derivative(theta, lam, tau, w)) == pytest.approx(lj * np.exp(-tau * theta / lj))
    # the penalty is bounded by λ_j²/τ and near 0 behaves like the lasso λ_j θ
    assert gel_penalty(np.array([[1e6]]), lam, tau, w) == pytest.approx(lj ** 2 / tau)
    assert gel_penalty(np.array([[1e-8]]), lam, tau, w) == pytest.approx(lj * 1e-8, rel=1e-6)


def test_lambda_max_is_the_first_zero_solution():
    Xs, ys = _tasks(seed=4)
    data = prepare(Xs, ys, scale=True)
    w = np.sqrt(data.K)
    for alpha in (0.0, 0.4, 1.0):
        top = sgl_lambda_max(data, alpha, w)
        assert not SparseGroupLasso(lam=top * 1.001, alpha=alpha).fit(Xs, ys).support_.any()
        assert SparseGroupLasso(lam=top * 0.95, alpha=alpha).fit(Xs, ys).support_.any()
    top = gel_lambda_max(data, w)
    assert not GroupExponentialLasso(lam=top * 1.001).fit(Xs, ys).support_.any()
    assert GroupExponentialLasso(lam=top * 0.95).fit(Xs, ys).support_.any()
    assert stacked_loss(data, np.zeros((data.K, data.p))) == pytest.approx(0.5 * (data.n @ data.yy) / data.n.sum())
    assert sgl_penalty(np.ones((2, 3)), 1.0, 0.0, 1.0) == pytest.approx(3 * np.sqrt(2))


def test_tune_path_respects_the_support_cap_and_bad_input():
    Xs, ys = _tasks(seed=5)
    res = tune_path(SparseGroupLasso(alpha=0.5), Xs, ys, s_max=3, n_lambda=12, n_folds=3, seed=0)
    assert res["best"].support_.sum(axis=1).mean() <= 3
    assert res["cv_rmse"] == pytest.approx(res["path"]["cv_rmse"][np.argmin(np.abs(res["path"]["lam"] - res["lam"]))])
    with pytest.raises(ReproError, match="alpha"):
        SparseGroupLasso(alpha=1.5).fit(Xs, ys)
    with pytest.raises(ReproError, match="tau"):
        GroupExponentialLasso(tau=0.0).fit(Xs, ys)


def test_ridge_coefs_match_the_normal_equations_and_sklearn():
    from sklearn.linear_model import Ridge

    from reprise.mtl.baselines import ridge_coefs, ridge_cv
    Xs, ys = _tasks(seed=6)
    data = prepare(Xs, ys, scale=True)
    B = ridge_coefs(data, [0.1, 1.0])
    for k in range(data.K):
        n = data.X[k].shape[0]
        # sklearn's Ridge minimises ‖y − Xb‖² + a‖b‖², i.e. a = n λ for our scaling
        ref = Ridge(alpha=n * 1.0, fit_intercept=False).fit(data.X[k], data.y[k]).coef_
        np.testing.assert_allclose(B[1, k], ref, atol=1e-10)
    res = ridge_cv(Xs, ys, [1e-3, 0.1, 1.0, 10.0], n_folds=3, seed=0)
    assert res["lam"] in (1e-3, 0.1, 1.0, 10.0) and res["coef"].shape == (data.K, data.p)


def test_pooled_fits_share_one_coefficient_vector():
    from reprise.mtl import experiments as E
    from reprise.mtl.data import fscv_like
    data = fscv_like(0, K=3, p=30, n=30, support_size=4, q=6)
    prm = E.validate_params("real_substitute", {"lambda1_grid": [0.5]})
    ridge, _ = E._fit_method("pooled_ridge", data, 4, prm, 0)
    l0, _ = E._fit_method("pooled_l0", data, 4, prm, 0)
    for fit in (ridge, l0):
        assert np.all(fit.coef_ == fit.coef_[0]) and np.all(fit.intercept_ == fit.intercept_[0])
    assert l0.support_.sum(axis=1).max() <= 4 and ridge.support_.all()
    # pooled ridge = ridge on the stacked, standardised rows (sklearn's alpha = n λ)
    from sklearn.linear_model import Ridge
    X, y = np.vstack(data.Xs), np.concatenate(data.ys)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    ref = Ridge(alpha=len(y) * 0.5).fit((X - mu) / sd, y).coef_ / sd
    np.testing.assert_allclose(ridge.coef_[0], ref, atol=1e-8)


def test_sgl_working_set_solves_the_full_problem():
    from reprise.mtl.baselines import _sgl_fista
    Xs, ys = _tasks(seed=9, p=20)
    data = prepare(Xs, ys, scale=True)
    est = SparseGroupLasso(lam=0.04, alpha=0.4, tol=1e-12, max_iter=20000).fit(Xs, ys)
    full, _ = _sgl_fista(data, np.zeros((data.K, data.p)), 0.04, 0.4, np.sqrt(data.K), 20000, 1e-12)
    np.testing.assert_allclose(data.to_internal(est.coef_), full, atol=1e-7)
    assert 0 < est.support_.any(axis=0).sum() < data.p       # a real working set, not all groups
