"""reprise.trees tuning, selection, data and baselines: the official churn logs re-selected against the manifest's
logged values, the selection rule, the search space, the synthetic generator, the budget and data-path errors."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprise.experiments import run_experiment
from reprise.io import ReproError
from reprise.papers import load_manifest
from reprise.trees import datasets
from reprise.trees.baselines import importance_selection
from reprise.trees.tuning import budget_count, select_trial, space, tune

ROOT = Path(__file__).resolve().parents[2]


def test_churn_log_selection_reproduces_the_manifest_values():
    """Our selection on the vendored logs against every logged value of the manifest (Appendix B)."""
    m = load_manifest(ROOT / "config" / "papers" / "skinny.yaml")
    rows = run_experiment("trees.churn_selection", m.experiments["tab_churn_selection"].params["smoke"], 0)
    checks = [c for c in m.checks if c.experiment == "tab_churn_selection"]
    assert len(checks) >= 15
    for c in checks:
        sel = rows
        for col, val in c.where.items():
            sel = sel[sel[col] == val]
        assert len(sel) == 1, c.id
        assert abs(float(sel[c.metric].iloc[0]) - c.value) <= c.tolerance.bound(c.value), c.id


def test_vendored_logs_are_the_complete_ten_by_two_hundred_trials():
    logs = datasets.churn_logs()
    assert len(logs) == 2000 and sorted(logs["tuning_seed"].unique()) == list(range(10))
    assert logs.groupby("tuning_seed")["trial"].nunique().eq(200).all()
    assert logs["n_features"].between(0, 33).all() and set(logs["batch_size"]) <= {16, 64, 256, 1024}


def test_selection_filters_the_budget_and_breaks_ties_by_fewer_features():
    trials = pd.DataFrame({
        "state": ["COMPLETE"] * 5 + ["FAIL"],
        "valid_auc": [0.99, 0.90, 0.95, 0.95, 0.80, 1.0],
        "n_features": [10, 0, 4, 3, 2, 1],
    })
    best, n = select_trial(trials, 20, 0.25)  # budget 5 features: rows 2, 3, 4 (not 0 features, not FAIL)
    assert n == 3 and best["valid_auc"] == 0.95 and best["n_features"] == 3
    assert select_trial(trials.assign(n_features=0), 20)[0] is None


def test_feature_budget_above_p_is_an_error_naming_the_budget():
    assert budget_count(0.25, 33) == 8 and budget_count(5, 33) == 5
    with pytest.raises(ReproError, match="budget=40 is above the number of features p=30"):
        budget_count(40, 30)
    with pytest.raises(ReproError, match="budget"):
        run_experiment("trees.tab2", {"budget": 1.5}, 0)


def test_random_search_is_seeded_and_stays_in_the_space():
    s = datasets.breast_cancer()
    small = datasets.Split(s.X_train[:80], s.y_train[:80], s.X_valid, s.y_valid, s.X_test, s.y_test)
    a = tune("classification", small, 3, 4, max_trees=3, max_depth=2, max_epochs=5, device="cpu")
    b = tune("classification", small, 3, 4, max_trees=3, max_depth=2, max_epochs=5, device="cpu")
    keys = ["batch_size", "learning_rate", "n_trees", "depth", "epochs", "kernel_l2", "temperature", "valid_auc"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    sp = space("classification", 3, 2, 5)
    for r in a:
        assert r["batch_size"] // 16 in sp["batch_size"][1] and 1 <= r["n_trees"] <= 3 and r["epochs"] == 5
        assert 1e-2 <= r["learning_rate"] <= 10 and 1e-4 <= r["temperature"] <= 0.1


def test_synthetic_generator_support_and_noise():
    assert datasets.true_support(256, 8).tolist() == [16, 48, 80, 112, 144, 176, 208, 240]  # spec §1.6
    split, support = datasets.synthetic_regression(64, 4, 500, 4000, 0.5, 0.5, seed=3)
    assert split.X_train.shape == (400, 64) and split.X_valid.shape == (100, 64) and split.X_test.shape == (4000, 64)
    resid = split.y_test - split.X_test[:, support].sum(1)
    assert abs(resid.std() - 0.5) < 0.03
    corr = np.corrcoef(split.X_test[:, 10], split.X_test[:, 11])[0, 1]
    assert abs(corr - 0.5) < 0.05  # Σ_ij = ρ^|i−j|


def test_split_is_64_16_20_and_stratified():
    y = np.array([0] * 300 + [1] * 200)
    tr, va, te = datasets.split(np.zeros((500, 1)), y, 8)
    assert (len(tr), len(va), len(te)) == (320, 80, 100)
    assert abs(y[te].mean() - 0.4) < 0.01 and abs(y[tr].mean() - 0.4) < 0.01


def test_missing_dataset_names_the_path_and_the_fetch_rule(tmp_path):
    with pytest.raises(ReproError, match=r"churn\.tsv\.gz is missing.*snakemake skinny_fetch_churn"):
        run_experiment("trees.tab2", {"datasets": ["churn"], "data_dir": str(tmp_path)}, 0)


def test_importance_baselines_keep_the_top_quarter():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = (X[:, 3] + 0.8 * X[:, 6] > 0).astype(int)
    tr, va, te = datasets.split(X, y, 8)
    s = datasets.Split(X[tr], y[tr], X[va], y[va], X[te], y[te])
    for method in ("random_forest", "hist_gradient_boosting", "lightgbm"):
        res = importance_selection(method, "classification", s, 0.25, seed=0)
        assert res["n_features"] == math.ceil(0.25 * 8) and res["selected"] == [3, 6], method
        assert res["test_auc"] > 0.85


def test_pmlb_files_are_read_and_preprocessed_as_the_official_loader(tmp_path):
    """A fabricated PMLB-format set: continuous columns standardised on the training part, categorical and binary
    ones one-hot encoded, labels encoded; the URL pattern is the pmlb package's."""
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"x1": rng.normal(5, 2, n), "state": rng.choice(["a", "b", "c"], n),
                       "flag": rng.integers(0, 2, n), "target": rng.choice(["no", "yes"], n)})
    df.to_csv(tmp_path / "toy.tsv.gz", sep="\t", index=False, compression="gzip")
    (tmp_path / "metadata.yaml").write_text(
        "features:\n  - {name: x1, type: continuous}\n  - {name: state, type: categorical}\n"
        "  - {name: flag, type: binary}\n")
    s = datasets.load_pmlb(tmp_path / "toy.tsv.gz", tmp_path / "metadata.yaml", seed=8)
    assert s.n_features == 1 + 3 + 2 and len(s.y_train) == 128 and len(s.y_test) == 40
    assert abs(s.X_train[:, 0].mean()) < 1e-12 and abs(s.X_train[:, 0].std() - 1) < 1e-12
    assert np.allclose(s.X_train[:, 1:4].sum(1), 1) and set(np.unique(s.y_train)) == {0, 1}
    assert datasets.pmlb_url("churn") == "https://github.com/EpistasisLab/pmlb/raw/master/datasets/churn/churn.tsv.gz"
