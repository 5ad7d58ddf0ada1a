"""reprise.nmf.ArchetypalNMF: the scikit-learn contract, feasibility of the fit, the trace, the
robustness direction of λ (§7.8), and early failures on bad input."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from reprise.io import ReproError
from reprise.nmf import ArchetypalNMF, make_synthetic, objective, strong_robustness


@pytest.fixture(scope="module")
def data():
    return make_synthetic(20, 30, 4, 0.3, random_state=0)


def _check_fit(est, X, ell):
    H, W, Wt = est.components_, est.weights_, est.weights_tilde_
    k, n = H.shape
    assert W.shape == (X.shape[0], k) and Wt.shape == (k, X.shape[0])
    assert np.count_nonzero(H) <= ell and H.min() >= 0
    for A in (W, Wt):
        assert A.min() >= 0 and np.allclose(A.sum(axis=1), 1.0)
    trace = np.array(est.objective_trace_)
    assert np.all(np.diff(trace) <= 1e-10 * trace[0])
    assert est.objective_ == pytest.approx(objective(X, W, H, Wt, est.lam)) == pytest.approx(trace[-1])
    assert est.lambda_path_[-1] == est.lam


@pytest.mark.parametrize("init,local_search,lam", [("random", False, 1.0), ("random", True, 0.0),
                                                   ("mip", True, 1.0)])
def test_fit_is_feasible_and_the_trace_non_increasing(data, init, local_search, lam):
    est = ArchetypalNMF(4, 60, lam, init=init, local_search=local_search, n_lambdas=3, max_iter=60, ls_max_iter=1,
                        mip_max_cuts=3, mip_time_limit=10.0, random_state=0)
    assert est.fit(data.X) is est
    _check_fit(est, data.X, 60)
    assert est.objective_continuation_ >= est.objective_
    assert (est.mip_ is not None) == (init == "mip")
    if not local_search:
        assert est.support_changes_ == 0
    assert est.reconstruction_err_ == pytest.approx(np.linalg.norm(data.X - est.weights_ @ est.components_))


def test_continuation_path_and_reproducibility(data):
    est = ArchetypalNMF(4, 60, 1.0, n_lambdas=4, lambda_max=30.0, max_iter=40, random_state=3).fit(data.X)
    assert est.lambda_path_[0] == pytest.approx(30.0) and est.lambda_path_[-1] == 1.0 and len(est.stage_traces_) == 4
    again = ArchetypalNMF(4, 60, 1.0, n_lambdas=4, lambda_max=30.0, max_iter=40, random_state=3).fit(data.X)
    np.testing.assert_array_equal(est.components_, again.components_)
    flat = ArchetypalNMF(4, 60, 1.0, continuation=False, max_iter=40, random_state=3).fit(data.X)
    assert flat.lambda_path_ == [1.0]


def test_sklearn_contract(data):
    est = ArchetypalNMF(n_components=3, l0_budget=40, lam=0.5, init="random", random_state=7)
    params = est.get_params()
    assert params["n_components"] == 3 and params["l0_budget"] == 40 and params["random_state"] == 7
    twin = clone(est)
    assert twin is not est and twin.get_params() == params and not hasattr(twin, "components_")
    assert est.set_params(lam=2.0) is est and est.lam == 2.0
    W = clone(est).set_params(max_iter=20, n_lambdas=2).fit_transform(data.X)
    assert W.shape == (20, 3)
    fitted = clone(est).set_params(max_iter=20, n_lambdas=2).fit(data.X)
    W_new = fitted.transform(data.X[:5])
    assert W_new.shape == (5, 3) and np.allclose(W_new.sum(axis=1), 1)
    assert fitted.inverse_transform(W_new).shape == (5, 30)
    # the constructor validates nothing (scikit-learn): bad values fail in fit
    ArchetypalNMF(n_components=-1, lam=-3)


def test_lambda_one_is_strongly_more_robust_than_lambda_zero():
    """§7.8's soft check: L(Ĥ, H0) at λ = 1 is at most the λ = 0 value on average over seeds, at
    the tab_synth smoke setting. With seeds 0..2 and both noise levels it holds on every instance
    (checked for seeds 0..11 while writing), so the mean comparison is stable, not a coin flip."""
    for sigma in (0.1, 0.5):
        diffs = []
        for seed in range(3):
            d = make_synthetic(20, 60, 4, sigma, random_state=seed)
            strong = [strong_robustness(d.H0, ArchetypalNMF(4, 120, lam, n_lambdas=3, max_iter=100, random_state=seed)
                                        .fit(d.X).components_) for lam in (0.0, 1.0)]
            diffs.append(strong[1] - strong[0])
        assert np.mean(diffs) <= 0


@pytest.mark.parametrize("X_change,kwargs,match", [
    (lambda X: -X, {}, "Negative values.*nonnegative data"),
    (lambda X: np.where(np.eye(*X.shape) > 0, np.nan, X), {}, "non-finite"),
    (lambda X: X.astype(complex), {}, "Complex"),
    (lambda X: np.zeros_like(X), {}, "all zeros"),
    (lambda X: X[0], {}, "2-D"),
    (None, {"l0_budget": 0}, "l0_budget"),
    (None, {"l0_budget": 4 * 30 + 1}, "l0_budget"),
    (None, {"l0_budget": 2.5}, "l0_budget"),
    (None, {"n_components": 21}, "n_components"),
    (None, {"n_components": 0}, "n_components"),
    (None, {"lam": -1.0}, "lam"),
    (None, {"lam": float("inf")}, "lam"),
    (None, {"n_lambdas": 0}, "n_lambdas"),
    (None, {"lambda_max": 0.0}, "lambda_max"),
    (None, {"init": "nndsvd"}, "init"),
    (None, {"max_iter": 0}, "max_iter"),
    (None, {"init": "mip", "mip_backend": "cplex"}, "unknown"),
])
def test_bad_input_fails_early_naming_the_argument(data, X_change, kwargs, match):
    X = data.X if X_change is None else X_change(data.X)
    with pytest.raises(ReproError, match=match):
        ArchetypalNMF(**{"n_components": 4, **kwargs}).fit(X)


def test_passes_sklearn_check_estimator():
    """The whole scikit-learn estimator suite (positive-only tag); errors are ReproErrors that are
    also ValueErrors/TypeErrors, as scikit-learn expects."""
    import warnings

    from sklearn.exceptions import SkipTestWarning
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)
        results = check_estimator(ArchetypalNMF(max_iter=20, n_lambdas=2), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed


def test_transform_checks_features(data):
    est = ArchetypalNMF(3, None, 1.0, max_iter=10, n_lambdas=1, random_state=0).fit(data.X)
    assert np.count_nonzero(est.components_) <= 3 * 30
    with pytest.raises(ReproError, match="features"):
        est.transform(data.X[:, :10])
