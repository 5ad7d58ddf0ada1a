"""reprise.mtl estimators: the scikit-learn contract, input checks, CV tuning, support sharing."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from reprise.io import ReproError
from reprise.mtl import SparseMultiTask, SparseMultiTaskCV, multitask_rmse, simulate_multitask
from reprise.sparsity import support_counts


def _data(seed=0, K=3, p=12, n=30):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n + k, p)) for k in range(K)]
    B = np.zeros((K, p))
    B[:, :2] = 2.0
    B[np.arange(K), 2 + np.arange(K)] = -1.5
    ys = [X @ b + 1.0 + 0.3 * rng.normal(size=len(X)) for X, b in zip(Xs, B)]
    return Xs, ys, B


def test_sklearn_contract():
    est = SparseMultiTask(s=3, lambda1=0.1, lambda_z=0.2, common_support=False)
    params = est.get_params()
    assert params["s"] == 3 and params["lambda_z"] == 0.2 and params["solver"] == "iht"
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert est.set_params(lambda2=0.5, s=4) is est and est.lambda2 == 0.5 and est.s == 4
    SparseMultiTask(s=-3, solver="nope")  # the constructor stores, it does not check
    Xs, ys, _ = _data()
    assert est.fit(Xs, ys) is est
    assert not hasattr(twin, "coef_")
    with pytest.raises(NotFittedError):
        twin.predict(Xs)


def test_fitted_attributes_and_original_scale():
    Xs, ys, B = _data()
    est = SparseMultiTask(s=3, lambda1=1e-4).fit(Xs, ys)
    assert est.coef_.shape == (3, 12) and est.intercept_.shape == (3,) and est.support_.shape == (3, 12)
    assert est.n_tasks_ == 3 and est.n_features_in_ == 12 and est.solver_ == "iht"
    assert np.array_equal(est.support_, B != 0)
    np.testing.assert_allclose(est.coef_, B, atol=0.15)
    np.testing.assert_allclose(est.intercept_, 1.0, atol=0.2)
    preds = est.predict(Xs)
    assert [len(p) for p in preds] == [len(y) for y in ys]
    assert est.score(Xs, ys) == pytest.approx(-multitask_rmse(Xs, ys, est.coef_, est.intercept_))
    # standardising inside fit: rescaled columns give the same predictions
    scaled = [X * np.linspace(0.1, 10, 12) for X in Xs]
    est2 = SparseMultiTask(s=3, lambda1=1e-4).fit(scaled, ys)
    for a, b in zip(est.predict(Xs), est2.predict(scaled)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("change, fit_args, match", [
    (dict(s=13), None, r"s=13 must be in \[1, 12\]"),
    (dict(s=0), None, "s=0"),
    (dict(lambda_z=-1.0), None, "lambda_z"),
    (dict(solver="cd"), None, "solver='cd' is unknown"),
    (dict(exact_method="bnb"), None, "exact_method"),
    ({}, "few_y", r"Xs has 3 tasks but ys has 2"),
    ({}, "bad_p", "Xs\\[1\\] has 11 columns"),
    ({}, "bad_n", r"ys\[0\] has 29 values but Xs\[0\] has 30 rows"),
    ({}, "nan", r"Xs\[2\] contains NaN or inf"),
    ({}, "array", "must be a list"),
])
def test_bad_input_fails_early_naming_the_argument(change, fit_args, match):
    Xs, ys, _ = _data()
    if fit_args == "few_y":
        ys = ys[:2]
    elif fit_args == "bad_p":
        Xs[1] = Xs[1][:, :11]
    elif fit_args == "bad_n":
        ys[0] = ys[0][:29]
    elif fit_args == "nan":
        Xs[2][3, 4] = np.nan
    elif fit_args == "array":
        Xs = Xs[0]
    with pytest.raises(ReproError, match=match):
        SparseMultiTask(**{"s": 3, **change}).fit(Xs, ys)


def test_cv_picks_a_grid_point_and_refits():
    Xs, ys, B = _data(seed=1)
    grid = {"lambda1": [1e-3, 1e-1], "lambda_z": [0.0, 0.05], "s": [3, 4]}
    cv = SparseMultiTaskCV(SparseMultiTask(s=3), grid, n_folds=3, random_state=0).fit(Xs, ys)
    assert len(cv.cv_results_["params"]) == 8
    assert cv.best_params_ in cv.cv_results_["params"]
    assert cv.best_rmse_ == pytest.approx(cv.cv_results_["mean_test_rmse"].min())
    assert cv.cv_results_["rank_test_rmse"][cv.best_index_] == 1
    for key, value in cv.best_params_.items():
        assert getattr(cv.best_estimator_, key) == value
    assert cv.coef_.shape == (3, 12)
    assert len(cv.predict(Xs)) == 3
    # the same seed gives the same folds and the same choice
    again = SparseMultiTaskCV(SparseMultiTask(s=3), grid, n_folds=3, random_state=0).fit(Xs, ys)
    np.testing.assert_array_equal(again.cv_results_["mean_test_rmse"], cv.cv_results_["mean_test_rmse"])
    assert clone(cv).get_params()["param_grid"] == grid


def test_cv_path_fits_match_separate_fits_closely():
    """Warm starts along the path change only the starting point of each fit."""
    Xs, ys, _ = _data(seed=2)
    grid = {"lambda1": [1e-3, 1e-2]}
    cv = SparseMultiTaskCV(SparseMultiTask(s=4), grid, n_folds=2, random_state=0).fit(Xs, ys)
    sep = [SparseMultiTask(s=4, lambda1=v).fit(Xs, ys).coef_ for v in grid["lambda1"]]
    np.testing.assert_allclose(cv.best_estimator_.coef_, sep[grid["lambda1"].index(cv.best_params_["lambda1"])])


@pytest.mark.parametrize("grid, match", [
    ({}, "param_grid is empty"),
    ([], "param_grid is empty"),
    ({"lambda1": []}, "param_grid is empty"),
    ({"alpha": [1.0]}, "cannot be tuned"),
    (None, "param_grid is required"),
    ({"lambda1": [-1.0]}, "lambda1"),
    ({"s": [50]}, "s=50"),
])
def test_cv_rejects_bad_grids(grid, match):
    Xs, ys, _ = _data()
    with pytest.raises(ReproError, match=match):
        SparseMultiTaskCV(SparseMultiTask(s=3), grid, n_folds=3).fit(Xs, ys)


def test_cv_rejects_too_many_folds():
    Xs, ys, _ = _data(n=5)
    with pytest.raises(ReproError, match="n_folds=9"):
        SparseMultiTaskCV(SparseMultiTask(s=2), {"lambda1": [0.1]}, n_folds=9).fit(Xs, ys)


def test_zbar_penalty_recovers_shared_supports_better_than_independent_fits():
    """§6.9: with one support shared by all tasks, z̄-MTL's F1 is at least independent L0's on
    average (here over 10 fixed-seed replicates at low SNR, where the difference is clear)."""
    f1 = {"l0": [], "zbar": []}
    for rep in range(10):
        d = simulate_multitask(rep, K=4, p=40, n=50, q=5, r=5, r_p=1.0, beta_var=0.25, tau=8.0,
                               beta_mean_range=(0.5, 1.0), shared_design=False)
        assert np.all(d.support == d.support[0])  # q = r_card: one shared support
        unit = np.mean([np.var(y) for y in d.ys])
        grids = {"l0": {"lambda1": [1e-3, 1e-1]},
                 "zbar": {"lambda1": [1e-3, 1e-1], "lambda_z": [unit * r for r in (0.0, 0.02, 0.05, 0.1)]}}
        for name, grid in grids.items():
            cv = SparseMultiTaskCV(SparseMultiTask(s=5), grid, n_folds=3, random_state=rep).fit(d.Xs, d.ys)
            f1[name].append(support_counts(cv.support_.astype(float), d.support.astype(float)).f1)
    assert np.mean(f1["zbar"]) >= np.mean(f1["l0"])
