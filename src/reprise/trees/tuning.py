"""Random-search tuning of Skinny Trees with Optuna and the notebook's model selection (specs/other-papers.md §1.5).

``CLASSIFICATION_SPACE`` / ``REGRESSION_SPACE`` are the official search spaces as data: name → ``("categorical",
values)``, ``("loguniform", low, high)`` or ``("int", low, high, step)``; ``batch_size`` is in units of 16 (the
code's ``batch_size_scaler``); the ``max_*`` entries are placeholders that ``space(...)`` fills in.
``tune(task, split, n_trials, tuning_seed, ...)`` runs ``optuna`` with ``RandomSampler(seed=tuning_seed)``, every
trial a fresh model, and returns one row per trial (params, validation/test AUC or MSE, #features).
``select_trial(trials, n_features_total, budget)`` pools trials, keeps ``0 < #selected ≤ budget·p``, takes the
best validation AUC (ties → fewest features); ``select_regression`` the minimum validation MSE.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping

import numpy as np

from reprise.io import ReproError

log = logging.getLogger(__name__)

#: official classification search (scripts/main_classification_public_data.py) [V-code]
CLASSIFICATION_SPACE: dict[str, tuple] = {
    "batch_size": ("categorical", [1, 4, 16, 64]),  # × 16
    "learning_rate": ("loguniform", 1e-2, 1e1),
    "n_trees": ("int", 1, "max_trees", 1),
    "depth": ("int", 1, "max_depth", 1),
    "epochs": ("int", 5, "max_epochs", 5),
    "kernel_l2": ("loguniform", 1e-3, 1e0),
    "temperature": ("loguniform", 1e-4, 1e-1),
}
#: official synthetic-regression search (scripts/regression_tuning_synthetic_data.py) [V-code]
REGRESSION_SPACE: dict[str, tuple] = {
    "batch_size": ("categorical", [1, 2, 3, 4, 5, 6, 7]),  # × 16
    "learning_rate": ("loguniform", 1e-3, 1e-1),
    "n_trees": ("int", 1, "max_trees", 1),
    "depth": ("int", 1, "max_depth", 1),
    "epochs": ("int", 5, "max_epochs", 5),
    "kernel_l2": ("loguniform", 1e-2, 1e2),
    "temperature": ("loguniform", 1e-4, 1e-1),
}
BATCH_UNIT = 16
KERNEL_CONSTRAINT = 100.0  # fixed when annealing (§1.3)
#: the paper's maxima (classification: 100 trees, depth 6, 500 epochs; regression: 50, 5, 500)
PAPER_MAXIMA = {"classification": {"max_trees": 100, "max_depth": 6, "max_epochs": 500},
                "regression": {"max_trees": 50, "max_depth": 5, "max_epochs": 500}}


def space(task: str, max_trees: int, max_depth: int, max_epochs: int) -> dict[str, tuple]:
    """The search space of ``task`` with its maxima filled in."""
    base = {"classification": CLASSIFICATION_SPACE, "regression": REGRESSION_SPACE}.get(task)
    if base is None:
        raise ReproError(f"tuning: task={task!r} is unknown; use 'classification' or 'regression'")
    fill = {"max_trees": max_trees, "max_depth": max_depth, "max_epochs": max_epochs}
    if max_epochs < 5:
        raise ReproError(f"tuning: max_epochs={max_epochs} must be ≥ 5 (epochs are drawn from 5, 10, …)")
    return {k: tuple(fill.get(x, x) if isinstance(x, str) else x for x in v) for k, v in base.items()}


def suggest(trial, name: str, spec: tuple):
    kind = spec[0]
    if kind == "categorical":
        return trial.suggest_categorical(name, spec[1])
    if kind == "loguniform":
        return trial.suggest_float(name, spec[1], spec[2], log=True)
    if kind == "int":
        return trial.suggest_int(name, spec[1], spec[2], step=spec[3])
    raise ReproError(f"tuning: search-space entry {name!r} has unknown kind {kind!r}")


def budget_count(budget: float | int, n_features: int, what: str = "budget") -> int:
    """The feature budget as a count: a fraction in (0, 1] of ``n_features`` (floor of budget·p) or a count ≤ p."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)) \
            or not math.isfinite(budget) or budget <= 0:
        raise ReproError(f"{what}={budget!r} must be a fraction in (0, 1] of the features or a count ≥ 1")
    if isinstance(budget, (float, np.floating)) and budget <= 1:
        return int(math.floor(budget * n_features + 1e-9))
    if budget > n_features:
        raise ReproError(f"{what}={budget!r} is above the number of features p={n_features}; "
                         f"give at most {n_features} or a fraction ≤ 1")
    return int(budget)


def auc(y, proba) -> float:
    """Binary: AUC of class 1's probability; multi-class: one-vs-one macro AUC (the official metric)."""
    from sklearn.metrics import roc_auc_score

    proba = np.asarray(proba)
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovo", labels=np.arange(proba.shape[1])))


def evaluate_classifier(est, split) -> dict[str, float]:
    from sklearn.metrics import accuracy_score

    out = {}
    for part in ("valid", "test"):
        X, y = getattr(split, f"X_{part}"), getattr(split, f"y_{part}")
        proba = est.predict_proba(X)
        out[f"{part}_auc"] = auc(y, proba)
        out[f"{part}_acc"] = float(accuracy_score(y, est.classes_[proba.argmax(1)]))
    return out


def evaluate_regressor(est, split) -> dict[str, float]:
    return {f"{part}_mse": float(np.mean((est.predict(getattr(split, f"X_{part}")) - getattr(split, f"y_{part}")) ** 2))
            for part in ("valid", "test")}


def config_estimator(task: str, config: Mapping[str, Any], random_state: int, device: str = "auto",
                     anneal: bool = True, kernel_constraint: float = KERNEL_CONSTRAINT):
    """A fresh estimator for one trial's ``config`` (batch_size in units of 16)."""
    from reprise.trees.estimators import SkinnyTreesClassifier, SkinnyTreesRegressor

    cls = SkinnyTreesClassifier if task == "classification" else SkinnyTreesRegressor
    return cls(n_trees=int(config["n_trees"]), depth=int(config["depth"]), kernel_l2=float(config["kernel_l2"]),
               kernel_constraint=kernel_constraint, temperature=float(config["temperature"]), anneal=anneal,
               learning_rate=float(config["learning_rate"]), batch_size=BATCH_UNIT * int(config["batch_size"]),
               epochs=int(config["epochs"]), random_state=random_state, device=device)


def tune(task: str, split, n_trials: int, tuning_seed: int, *, max_trees: int, max_depth: int, max_epochs: int,
         device: str = "auto", anneal: bool = True, kernel_constraint: float = KERNEL_CONSTRAINT,
         fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """``n_trials`` random-search trials (Optuna ``RandomSampler(seed=tuning_seed)``), each trained from scratch
    (model seed = 1000·tuning_seed + trial number); returns one dict per trial. ``fixed`` pins params."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress goes through our logger
    sp = space(task, max_trees, max_depth, max_epochs)
    fixed = dict(fixed or {})
    rows: list[dict[str, Any]] = []
    evaluate = evaluate_classifier if task == "classification" else evaluate_regressor

    def objective(trial):
        config = {k: fixed[k] if k in fixed else suggest(trial, k, v) for k, v in sp.items()}
        t0 = time.perf_counter()
        est = config_estimator(task, config, 1000 * tuning_seed + trial.number, device, anneal, kernel_constraint)
        est.fit(split.X_train, split.y_train)
        metrics = evaluate(est, split)
        row = {"tuning_seed": tuning_seed, "trial": trial.number, **config,
               "batch_size": BATCH_UNIT * int(config["batch_size"]), **metrics,
               "n_features": len(est.selected_features_), "seconds": time.perf_counter() - t0,
               "feature_history": est.feature_history_,
               "selected": est.selected_features_.tolist()}
        rows.append(row)
        value = metrics["valid_auc"] if task == "classification" else metrics["valid_mse"]
        log.info("tuning seed %d trial %d/%d: %s %.4f, %d features, %.1f s", tuning_seed, trial.number + 1, n_trials,
                 "valid AUC" if task == "classification" else "valid MSE", value, row["n_features"], row["seconds"])
        return value

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=tuning_seed),
                                direction="maximize" if task == "classification" else "minimize")
    study.optimize(objective, n_trials=n_trials)
    return rows


def select_trial(trials, n_features_total: int, budget: float | int = 0.25):
    """The notebook's selection over pooled trials: complete trials with ``0 < n_features ≤ budget·p``, the highest
    ``valid_auc``, ties broken by fewer features. Returns (selected row as a Series, number within budget)."""
    import pandas as pd

    df = pd.DataFrame(trials)
    k = budget_count(budget, n_features_total)
    if "state" in df.columns:
        df = df[df["state"] == "COMPLETE"]
    within = df[(df["n_features"] > 0) & (df["n_features"] <= k)]
    if within.empty:
        return None, 0
    best = within.sort_values(["valid_auc", "n_features"], ascending=[False, True], kind="mergesort").iloc[0]
    return best, len(within)


def select_regression(trials):
    """The trial with the lowest validation MSE (per data seed in the paper's synthetic study)."""
    import pandas as pd

    df = pd.DataFrame(trials)
    return df.sort_values(["valid_mse", "n_features"], kind="mergesort").iloc[0]
