"""Importance-selection baselines of Skinny Trees (specs/other-papers.md §1.8): fit a tree ensemble on all features,
rank the features by importance, keep the top ``⌈budget·p⌉``, refit on those and evaluate.

Methods: ``random_forest`` (scikit-learn, impurity importances), ``hist_gradient_boosting`` (scikit-learn; it has no
``feature_importances_``, so permutation importance on the validation part, AUC for classification / MSE for
regression), ``lightgbm`` (split-gain importances). Models at their library defaults with ``random_state``
(the paper's baseline tuning is [U]). Returns the same metric names as :mod:`reprise.trees.tuning`.
"""
from __future__ import annotations

import math

import numpy as np

from reprise.io import ReproError

METHODS = ("random_forest", "hist_gradient_boosting", "lightgbm")


def _model(method: str, task: str, seed: int):
    if method == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
        return cls(n_estimators=100, random_state=seed, n_jobs=1)
    if method == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
        return cls(random_state=seed)
    if method == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMClassifier if task == "classification" else lightgbm.LGBMRegressor
        return cls(random_state=seed, n_jobs=1, verbose=-1)
    raise ReproError(f"baselines: method={method!r} is unknown; use one of {', '.join(METHODS)}")


def importances(model, method: str, task: str, X_valid, y_valid, seed: int) -> np.ndarray:
    imp = getattr(model, "feature_importances_", None)
    if imp is not None:
        return np.asarray(imp, dtype=float)
    from sklearn.inspection import permutation_importance

    scoring = "roc_auc_ovo" if task == "classification" and len(np.unique(y_valid)) > 2 else \
        ("roc_auc" if task == "classification" else "neg_mean_squared_error")
    return permutation_importance(model, X_valid, y_valid, scoring=scoring, n_repeats=5,
                                  random_state=seed).importances_mean


def importance_selection(method: str, task: str, split, budget: float = 0.25, seed: int = 0) -> dict:
    """Fit ``method`` on every feature, keep the ``⌈budget·p⌉`` most important, refit and evaluate."""
    from reprise.trees.tuning import auc

    p = split.n_features
    if not 0 < budget <= 1:
        raise ReproError(f"baselines: budget={budget!r} must be a fraction in (0, 1]")
    k = max(1, math.ceil(budget * p))
    full = _model(method, task, seed).fit(split.X_train, split.y_train)
    imp = importances(full, method, task, split.X_valid, split.y_valid, seed)
    keep = np.sort(np.argsort(-imp, kind="stable")[:k])
    model = _model(method, task, seed).fit(split.X_train[:, keep], split.y_train)
    out = {"method": method, "n_features": int(k), "selected": keep.tolist()}
    for part in ("valid", "test"):
        X, y = getattr(split, f"X_{part}")[:, keep], getattr(split, f"y_{part}")
        if task == "classification":
            proba = model.predict_proba(X)
            out[f"{part}_auc"] = auc(y, proba)
            out[f"{part}_acc"] = float(np.mean(model.classes_[proba.argmax(1)] == y))
        else:
            out[f"{part}_mse"] = float(np.mean((model.predict(X) - y) ** 2))
    return out
