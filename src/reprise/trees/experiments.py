"""Skinny Trees (arXiv 2310.18542) experiments ``trees.datasets``, ``trees.tab2``, ``trees.churn_selection``,
``trees.tab4`` and ``trees.fig5`` (specs/other-papers.md §1.9, smoke versions §1.11). Each is ``fn(params, seed) -> DataFrame``
(:mod:`reprise.experiments`); tab3 renders tab2's rows and fig6 tab4's (``rows_from``).

- ``trees.datasets`` — the datasets table (§1.9 item 1): one row per set as loaded (``dataset, task, source, n,
  n_train, n_valid, n_test, p`` after preprocessing, ``classes``, ``budget_features`` at ``budget=0.25``), then one
  per synthetic (ρ, p, n) setting (no classes or budget; its params as tab4's). Params (defaults = smoke)
  ``datasets=["breast_cancer"]``, ``data_dir``, ``split_seed=8``, ``synthetic=true``. No training; well under 1 s.
- ``trees.tab2`` — feature selection at a 25 % budget per dataset. Rows (column ``method``): ``search`` (one per
  dataset: ``n_trials``, ``trials_within_budget``, ``budget_features`` and the selected
  configuration), ``skinny_trees`` (the selected configuration re-trained ``reruns`` times, ``rerun`` =
  0 … reruns−1, model seed ``seed·1000 + rerun``), ``dense_trees`` (the same configuration with λ₀ = 0, for tab3),
  and the importance baselines ``random_forest``, ``hist_gradient_boosting``, ``lightgbm`` (:mod:`.baselines`).
  Metric columns ``valid_auc, test_auc, test_acc, n_features, n_features_approx`` (rows with
  ``‖W_j‖/sqrt(#nodes) > 1e-4``), ``compression`` (p / #features),
  ``over_budget`` (1 when a re-run keeps more than ``budget_features``).
  Params (defaults = smoke): ``datasets=["breast_cancer"]`` (others are the 14 real sets of
  ``reprise.trees.datasets.DATASETS``, read from ``data_dir``/<kind>/<name>/; every file is checked before the
  first dataset trains), ``data_dir="data/raw"``, ``n_trials=6``, ``tuning_seeds=[0, 1, 2]``,
  ``max_trees=10, max_depth=3, max_epochs=60``, ``budget=0.25``, ``reruns=3``, ``dense=true``,
  ``baselines=[random_forest, hist_gradient_boosting, lightgbm]``, ``split_seed=8``, ``device="auto"``.
  Measured (smoke): about 5 s on one thread (job: 6.4 CPU-s with start-up).
- ``trees.churn_selection`` — the notebook's selection re-run on the vendored official churn logs
  (:func:`reprise.trees.datasets.churn_logs`): rows ``selection = budget`` (0 < #features ≤ budget·p) and
  ``all_features`` (the trials that kept all p features), each with ``trials_complete, trials_within_budget``
  and the chosen trial's ``valid_auc, test_auc, test_acc, n_features, n_trees, depth, learning_rate, batch_size,
  epochs, kernel_l2, temperature, tuning_seed, trial``. Params ``n_features=33`` (churn's p after one-hot), ``budget=0.25``. No
  training; well under 1 s.
- ``trees.tab4`` — synthetic regression (§1.6 generator). Rows ``row = summary`` per (setting, data seed): the trial
  of least validation MSE, its ``test_mse, n_features, f1, tpr, fpr``; ``row = feature`` per
  feature: ``feature, selected`` (0/1), ``true_feature`` — fig6 averages ``selected`` over the data seeds (selection
  frequency). Params (defaults = smoke): ``rho=[0.5], p=[64]`` (zipped), ``n_train=[100]``, ``k=4``,
  ``n_test=2000``, ``noise=0.5``, ``data_seeds=[1, 2, 3]``, ``n_trials=5``, ``max_trees=10, max_depth=3,
  max_epochs=100``, ``device="auto"``; the job's ``seed`` is the tuning seed. Measured (smoke): about 2 s
  (job: 3.7 CPU-s).
- ``trees.fig5`` — #selected features per epoch, annealed against constant λ₀ (one fixed configuration on
  breast cancer). Rows ``schedule, epoch, n_features`` (epoch 0 = before training). Params ``epochs=30,
  n_trees=10, depth=3, learning_rate=0.3, batch_size=16, kernel_l2=0.1, temperature=0.005, dataset="breast_cancer",
  data_dir, split_seed=8, device="auto"``; model seed = ``seed``. At these values the constant λ₀ = 100/p zeroes
  every row at the first step (threshold sqrt(2ηλ₀) ≈ 1.4 above the Glorot rows' norm ≈ 1.2), while the annealed
  run goes 30 → 4 features with test AUC ≈ 0.99. Measured: about 1 s.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from reprise.experiments import (boolean, check_seed, choice, experiment, integer, list_of, params, real)
from reprise.io import ReproError

log = logging.getLogger(__name__)

BASELINES = ("random_forest", "hist_gradient_boosting", "lightgbm")
CONFIG_KEYS = ("n_trees", "depth", "learning_rate", "batch_size", "epochs", "kernel_l2", "temperature")


def _name(where: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ReproError(f"{where}={v!r} must be a non-empty string")
    return v


def _device(where: str, v: Any) -> str:
    if v not in ("auto", "cpu", "cuda") and not (isinstance(v, str) and v.startswith("cuda:")):
        raise ReproError(f"{where}={v!r} must be 'auto', 'cpu' or 'cuda[:i]'")
    return v


def load_dataset(name: str, data_dir: str, split_seed: int):
    """breast_cancer (bundled) or a real set of :data:`reprise.trees.datasets.DATASETS`, fetched under ``data_dir``
    by its ``skinny_fetch_<name>`` rule."""
    from reprise.trees import datasets

    if name == "breast_cancer":
        return datasets.breast_cancer(split_seed)
    return datasets.load(name, data_dir, split_seed)


def require_datasets(names, data_dir: str) -> None:
    """Every file of every named real set exists under ``data_dir`` (else ReproError naming it and its fetch rule)."""
    from reprise.trees import datasets

    for name in names:
        if name != "breast_cancer":
            s = datasets.source(name)
            for path in s.paths(data_dir):
                datasets.require(path, s.rule)


def _dataset(where: str, v: Any) -> str:
    from reprise.trees.datasets import source

    if _name(where, v) != "breast_cancer":
        try:
            source(v)
        except ReproError as exc:
            raise ReproError(f"{where}: {exc}") from None
    return v


def _classifier_metrics(est, split) -> dict[str, float]:
    from reprise.trees.tuning import evaluate_classifier

    m = evaluate_classifier(est, split)
    k = len(est.selected_features_)
    W = est.model_.kernel.detach().double()
    approx = int((W.norm(dim=1) / math.sqrt(W.shape[1]) > 1e-4).sum())  # §1.7's "approximate" count
    return {**m, "n_features": k, "n_features_approx": approx, "compression": split.n_features / k if k else math.nan}


@experiment("trees.tab2")
def tab2(given: Mapping[str, Any], seed: int):
    import pandas as pd

    from reprise.trees.baselines import importance_selection
    from reprise.trees.tuning import budget_count, config_estimator, select_trial, tune

    name = "trees.tab2"
    seed = check_seed(name, seed)
    P = params(name, given, {
        "datasets": (["breast_cancer"], list_of(_dataset)),
        "data_dir": ("data/raw", _name),
        "n_trials": (6, integer(1)),
        "tuning_seeds": ([0, 1, 2], list_of(integer(0))),
        "max_trees": (10, integer(1)), "max_depth": (3, integer(1)), "max_epochs": (60, integer(5)),
        "budget": (0.25, real(0, strict=True, high=1)),
        "reruns": (3, integer(1)),
        "dense": (True, boolean),
        "baselines": (list(BASELINES), list_of(choice(*BASELINES), non_empty=False)),
        "split_seed": (8, integer(0)),
        "device": ("auto", _device),
    })
    rows: list[dict] = []
    require_datasets(P["datasets"], P["data_dir"])  # a 14-dataset job must not fail on the last one's file
    for ds in P["datasets"]:
        split = load_dataset(ds, P["data_dir"], P["split_seed"])
        p = split.n_features
        k = budget_count(P["budget"], p, f"{name}: params['budget']")
        trials = []
        for ts in P["tuning_seeds"]:
            trials += tune("classification", split, P["n_trials"], ts, max_trees=P["max_trees"],
                           max_depth=P["max_depth"], max_epochs=P["max_epochs"], device=P["device"])
        best, n_within = select_trial(trials, p, P["budget"])
        base = {"dataset": ds, "p": p, "budget_features": k}
        search = {**base, "method": "search", "n_trials": len(trials), "trials_within_budget": n_within}
        # the same columns whether or not a trial met the budget (NaN then), so the search table always renders
        search.update({c: (best[c] if best is not None else math.nan) for c in CONFIG_KEYS},
                      selected_valid_auc=best["valid_auc"] if best is not None else math.nan,
                      selected_n_features=best["n_features"] if best is not None else math.nan)
        rows.append(search)
        if best is not None:
            config = {c: best[c] for c in CONFIG_KEYS}
            config["batch_size"] = int(config["batch_size"]) // 16
            for r in range(P["reruns"]):
                for method, kc in (("skinny_trees", 100.0), ("dense_trees", 0.0))[:2 if P["dense"] else 1]:
                    est = config_estimator("classification", config, seed * 1000 + r, P["device"],
                                           kernel_constraint=kc).fit(split.X_train, split.y_train)
                    m = _classifier_metrics(est, split)
                    rows.append({**base, "method": method, "rerun": r, **m, "over_budget": int(m["n_features"] > k)})
            log.info("%s %s: selected %s, %d of %d trials within budget", name, ds, config, n_within, len(trials))
        for method in P["baselines"]:
            res = importance_selection(method, "classification", split, P["budget"], seed)
            rows.append({**base, "method": method, "rerun": 0, "valid_auc": res["valid_auc"],
                         "valid_acc": res["valid_acc"],
                         "test_auc": res["test_auc"], "test_acc": res["test_acc"], "n_features": res["n_features"],
                         "compression": p / res["n_features"]})
    return pd.DataFrame(rows)


@experiment("trees.churn_selection")
def churn_selection(given: Mapping[str, Any], seed: int):
    import pandas as pd

    from reprise.trees.datasets import churn_logs
    from reprise.trees.tuning import select_trial

    name = "trees.churn_selection"
    check_seed(name, seed)
    P = params(name, given, {"n_features": (33, integer(1)), "budget": (0.25, real(0, strict=True, high=1))})
    logs = churn_logs()
    complete = int((logs["state"] == "COMPLETE").sum())
    rows = []
    # "budget": the paper's selection; "all_features": the best trial that kept every feature (the dense reference)
    for selection, pool, budget in (("budget", logs, P["budget"]),
                                    ("all_features", logs[logs["n_features"] == P["n_features"]], 1.0)):
        best, n_within = select_trial(pool, P["n_features"], budget)
        if best is None:
            raise ReproError(f"{name}: no complete {selection} trial has 0 < n_features ≤ {budget}·{P['n_features']}")
        rows.append({"selection": selection, "budget": budget, "trials_complete": complete,
                     "trials_within_budget": n_within,
                     **{c: best[c] for c in ("valid_auc", "test_auc", "test_acc", "n_features", *CONFIG_KEYS,
                                             "tuning_seed", "trial")}})
    return pd.DataFrame(rows)


# the synthetic settings (§1.6 generator) of tab4 and of the datasets table; defaults = smoke
_SYNTHETIC = {"rho": ([0.5], list_of(real(0, high=0.99))), "p": ([64], list_of(integer(2))),
              "n_train": ([100], list_of(integer(10))), "k": (4, integer(1)), "n_test": (2000, integer(1)),
              "noise": (0.5, real(0))}


def _synthetic_settings(name: str, P) -> list[tuple[float, int]]:
    if len(P["rho"]) != len(P["p"]):
        raise ReproError(f"{name}: params['rho'] and params['p'] are zipped into settings, so they need the same "
                         f"length (got {len(P['rho'])} and {len(P['p'])})")
    return list(zip(P["rho"], P["p"]))


@experiment("trees.datasets")
def datasets_table(given: Mapping[str, Any], seed: int):
    """§1.9 item 1: rows, features and classes of each set as the experiments load it (after imputation and
    one-hot encoding, split 64/16/20), its 25 % feature budget, and the synthetic settings."""
    import pandas as pd

    from reprise.trees.datasets import DATASETS, synthetic_regression
    from reprise.trees.tuning import budget_count

    name = "trees.datasets"
    check_seed(name, seed)
    P = params(name, given, {
        "datasets": (["breast_cancer"], list_of(_dataset)), "data_dir": ("data/raw", _name),
        "split_seed": (8, integer(0)), "budget": (0.25, real(0, strict=True, high=1)), **_SYNTHETIC,
        "synthetic": (True, boolean),
    })
    require_datasets(P["datasets"], P["data_dir"])
    rows = []

    def row(dataset, source, split, classes=None):
        """A classification set's row (``classes`` given) or a synthetic regression setting's, which has
        neither classes nor a budget: that study selects by validation MSE."""
        n = (len(split.y_train), len(split.y_valid), len(split.y_test))
        budget = math.nan if classes is None else budget_count(P["budget"], split.n_features,
                                                               f"{name}: params['budget']")
        return {"dataset": dataset, "task": "regression" if classes is None else "classification", "source": source,
                "n": sum(n), "n_train": n[0], "n_valid": n[1], "n_test": n[2], "p": split.n_features,
                "classes": math.nan if classes is None else classes, "budget_features": budget}

    for ds in P["datasets"]:
        split = load_dataset(ds, P["data_dir"], P["split_seed"])
        y = np.concatenate([split.y_train, split.y_valid, split.y_test])
        kind = "scikit-learn (bundled)" if ds == "breast_cancer" else DATASETS[ds].kind
        rows.append(row(ds, kind, split, int(len(np.unique(y)))))
    if P["synthetic"]:
        for rho, p in _synthetic_settings(name, P):
            for n in P["n_train"]:
                split, _support = synthetic_regression(p, P["k"], n, P["n_test"], rho, P["noise"], seed=1)
                rows.append(row(f"synthetic rho={rho} p={p} n={n}", f"§1.6 generator, k={P['k']}", split))
    return pd.DataFrame(rows)


@experiment("trees.tab4")
def tab4(given: Mapping[str, Any], seed: int):
    import pandas as pd

    from reprise.sparsity import support_counts
    from reprise.trees.datasets import synthetic_regression
    from reprise.trees.tuning import select_regression, tune

    name = "trees.tab4"
    seed = check_seed(name, seed)
    P = params(name, given, {
        **_SYNTHETIC, "data_seeds": ([1, 2, 3], list_of(integer(0))), "n_trials": (5, integer(1)),
        "max_trees": (10, integer(1)), "max_depth": (3, integer(1)), "max_epochs": (100, integer(5)),
        "device": ("auto", _device),
    })
    rows = []
    for rho, p in _synthetic_settings(name, P):
        for n in P["n_train"]:
            for ds in P["data_seeds"]:
                split, support = synthetic_regression(p, P["k"], n, P["n_test"], rho, P["noise"], ds)
                trials = tune("regression", split, P["n_trials"], seed, max_trees=P["max_trees"],
                              max_depth=P["max_depth"], max_epochs=P["max_epochs"], device=P["device"])
                best = select_regression(trials)
                config = {c: best[c] for c in CONFIG_KEYS}
                chosen = np.zeros(p, dtype=bool)
                chosen[best["selected"]] = True
                truth = np.zeros(p, dtype=bool)
                truth[support] = True
                sc = support_counts(chosen.astype(float), truth.astype(float), tol=0.5)
                test_mse = float(best["test_mse"])
                key = {"rho": rho, "p": p, "n_train": n, "data_seed": ds}
                rows.append({**key, "row": "summary", "test_mse": test_mse, "valid_mse": best["valid_mse"],
                             "n_features": int(chosen.sum()), "f1": sc.f1, "tpr": sc.tpr, "fpr": sc.fpr, **config})
                rows += [{**key, "row": "feature", "feature": j, "selected": int(chosen[j]),
                          "true_feature": int(truth[j])} for j in range(p)]
                log.info("%s rho=%g p=%d n=%d seed %d: test MSE %.3f, F1 %.2f, %d features", name, rho, p, n, ds,
                         test_mse, sc.f1, chosen.sum())
    return pd.DataFrame(rows)


@experiment("trees.fig5")
def fig5(given: Mapping[str, Any], seed: int):
    import pandas as pd

    from reprise.trees.estimators import SkinnyTreesClassifier

    name = "trees.fig5"
    seed = check_seed(name, seed)
    P = params(name, given, {
        "epochs": (30, integer(1)), "n_trees": (10, integer(1)), "depth": (3, integer(1)),
        "learning_rate": (0.3, real(0, strict=True)), "batch_size": (16, integer(1)),
        "kernel_l2": (0.1, real(0)), "temperature": (0.005, real(0, strict=True)),
        "dataset": ("breast_cancer", _dataset), "data_dir": ("data/raw", _name),
        "split_seed": (8, integer(0)), "device": ("auto", _device),
    })
    split = load_dataset(P["dataset"], P["data_dir"], P["split_seed"])
    rows = []
    for schedule, anneal in (("annealed", True), ("constant", False)):
        est = SkinnyTreesClassifier(n_trees=P["n_trees"], depth=P["depth"], kernel_l2=P["kernel_l2"],
                                    temperature=P["temperature"], anneal=anneal, learning_rate=P["learning_rate"],
                                    batch_size=P["batch_size"], epochs=P["epochs"], random_state=seed,
                                    device=P["device"]).fit(split.X_train, split.y_train)
        test_auc = _classifier_metrics(est, split)["test_auc"]
        rows += [{"dataset": P["dataset"], "schedule": schedule, "epoch": e, "n_features": k, "test_auc": test_auc}
                 for e, k in enumerate(est.feature_history_)]
    return pd.DataFrame(rows)
