"""reprise.trees estimators: the scikit-learn contract, seeding, the selection attributes, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from reprise.io import ReproError
from reprise.trees import SkinnyTreesClassifier, SkinnyTreesRegressor

FAST = dict(n_trees=3, depth=2, epochs=4, batch_size=32, learning_rate=0.3, temperature=0.05, device="cpu")


def data(n=120, p=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


def test_constructor_only_stores_params_and_clone_works():
    est = SkinnyTreesClassifier(n_trees=-3, random_state=1)  # not validated until fit
    assert est.get_params()["n_trees"] == -3 and not hasattr(est, "model_")
    assert clone(est).get_params() == est.get_params()
    assert set(est.get_params()) == {"n_trees", "depth", "kernel_l2", "kernel_constraint", "temperature", "anneal",
                                     "learning_rate", "batch_size", "epochs", "random_state", "device"}


def test_seeded_fits_are_identical_and_attributes_consistent():
    X, y = data()
    a = SkinnyTreesClassifier(random_state=7, **FAST).fit(X, y)
    b = SkinnyTreesClassifier(random_state=7, **FAST).fit(X, y)
    c = SkinnyTreesClassifier(random_state=8, **FAST).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    proba = a.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1)
    assert np.array_equal(a.predict(X), a.classes_[proba.argmax(1)])
    assert len(a.feature_history_) == FAST["epochs"] + 1 and a.feature_history_[0] == X.shape[1]
    norms = np.linalg.norm(a.model_.kernel.detach().numpy(), axis=1)
    assert a.selected_features_.tolist() == np.flatnonzero(norms > 0).tolist()
    assert a.feature_history_[-1] == len(a.selected_features_)


def test_dense_ensemble_keeps_every_feature_and_labels_are_kept():
    X, y = data()
    labels = np.where(y == 1, "yes", "no")
    est = SkinnyTreesClassifier(kernel_constraint=0.0, random_state=0, **FAST).fit(X, labels)
    assert len(est.selected_features_) == X.shape[1] and set(est.predict(X)) <= {"yes", "no"}


def test_regressor_learns_a_linear_signal():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 4))
    y = X[:, 0] - X[:, 1]
    est = SkinnyTreesRegressor(n_trees=5, depth=2, epochs=40, batch_size=16, learning_rate=0.05,
                               kernel_constraint=0.0, random_state=0, device="cpu").fit(X, y)
    assert est.predict(X).shape == (200,)
    assert np.mean((est.predict(X) - y) ** 2) < 0.5 * np.var(y)


@pytest.mark.parametrize("bad, word", [
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y), "Input X contains NaN"),
    (lambda X, y: (X[:, 0], y), "Expected 2D array"),
    (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
    (lambda X, y: (X, np.zeros_like(y)), "y has 1 class"),
    (lambda X, y: (X, y + 0.5), "continuous"),
])
def test_bad_input_names_the_argument(bad, word):
    X, y = data()
    with pytest.raises(ReproError, match=word):
        SkinnyTreesClassifier(**FAST).fit(*bad(X, y))


def test_bad_params_and_predict_shape_are_reported():
    X, y = data()
    with pytest.raises(ReproError, match="depth"):
        SkinnyTreesClassifier(**{**FAST, "depth": 0}).fit(X, y)
    with pytest.raises(ReproError, match="learning_rate"):
        SkinnyTreesClassifier(**{**FAST, "learning_rate": float("inf")}).fit(X, y)
    est = SkinnyTreesClassifier(random_state=0, **FAST).fit(X, y)
    with pytest.raises(ReproError, match="X has 5 features, but SkinnyTreesClassifier is expecting 6"):
        est.predict(X[:, :5])


def test_passes_sklearn_check_estimator():
    """scikit-learn's estimator suite (dense ensembles, so its accuracy checks see every feature); errors are
    ReproErrors that are also ValueErrors, as scikit-learn expects."""
    import warnings

    from sklearn.exceptions import SkipTestWarning
    from sklearn.utils.estimator_checks import check_estimator

    common = dict(n_trees=3, depth=2, epochs=12, kernel_constraint=0.0, random_state=0, device="cpu")
    for est in (SkinnyTreesClassifier(learning_rate=0.3, **common), SkinnyTreesRegressor(learning_rate=0.1, **common)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkipTestWarning)
            results = check_estimator(est, on_fail=None)
        failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
        assert not failed, failed
