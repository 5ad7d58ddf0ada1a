"""The skinny manifest's experiments at tiny sizes: every column a view or check names is in the rows, and the
rows obey what the method guarantees (budget, compression, schedules)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reprise.experiments import run_experiment
from reprise.io import ReproError
from reprise.papers import load_manifest

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "trees.tab2": {"n_trials": 3, "tuning_seeds": [3], "max_trees": 3, "max_depth": 2, "max_epochs": 30, "reruns": 1,
                   "baselines": ["random_forest"], "device": "cpu"},
    "trees.tab4": {"data_seeds": [1], "n_trials": 1, "max_trees": 2, "max_depth": 1, "max_epochs": 5,
                   "n_test": 50, "device": "cpu"},
    "trees.fig5": {"epochs": 3, "n_trees": 2, "depth": 2, "device": "cpu"},
    "trees.churn_selection": {},
    "trees.datasets": {},
}


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(ROOT / "config" / "papers" / "skinny.yaml")


@pytest.fixture(scope="module")
def rows():
    return {kind: run_experiment(kind, p, 0) for kind, p in TINY.items()}


def test_views_and_checks_name_real_columns(manifest, rows):
    for eid, spec in manifest.experiments.items():
        frame = rows[spec.kind]
        cols = [*spec.index, *spec.values, *spec.where, *(v for k, v in spec.plot.items() if k in
                                                          ("x", "y", "series", "facet") and isinstance(v, str))]
        assert set(cols) <= set(frame.columns), (eid, set(cols) - set(frame.columns))
        for col, val in spec.where.items():
            assert frame[col].isin(val if isinstance(val, list) else [val]).any(), (eid, col)
    for c in manifest.checks:
        frame = rows[manifest.experiments[manifest.experiments[c.experiment].job].kind]
        assert c.metric in frame.columns and set(c.where) <= set(frame.columns), c.id


def test_tab2_rows_respect_budget_and_compression(rows):
    t = rows["trees.tab2"]
    search = t[t.method == "search"].iloc[0]
    assert search.n_trials == 3 and search.budget_features == 7  # floor(0.25 · 30)
    assert search.trials_within_budget >= 1  # this tiny search finds one (else tab3 has no rows)
    for _, r in t[t.method.isin(["skinny_trees", "dense_trees"])].iterrows():
        assert r.compression == pytest.approx(30 / r.n_features)
        assert r.over_budget == int(r.n_features > 7)
    assert (t[t.method == "dense_trees"].n_features == 30).all()
    assert (t[t.method == "random_forest"].n_features == 8).all()  # ceil(0.25 · 30)


def test_fig5_schedules_start_dense(rows):
    f = rows["trees.fig5"]
    start = f[f.epoch == 0].set_index("schedule").n_features
    assert start["annealed"] == 30 and start["constant"] == 30
    assert f.epoch.max() == 3


def test_tab4_frequencies_cover_every_feature(rows):
    t = rows["trees.tab4"]
    feats = t[t.row == "feature"]
    assert len(feats) == 64 and feats.true_feature.sum() == 4
    summary = t[t.row == "summary"].iloc[0]
    assert summary.n_features == feats.selected.sum()


def test_datasets_table_counts_what_the_experiments_load(rows):
    t = rows["trees.datasets"].set_index("dataset")
    bc = t.loc["breast_cancer"]
    assert (bc.n, bc.n_train + bc.n_valid + bc.n_test, bc.p, bc.classes, bc.budget_features) == (569, 569, 30, 2, 7)
    syn = t.loc["synthetic rho=0.5 p=64 n=100"]  # tab4's smoke setting: 80/20 of n, then 2000 test rows
    assert (syn.n_train, syn.n_valid, syn.n_test, syn.p) == (80, 20, 2000, 64) and syn.task == "regression"


@pytest.mark.parametrize("eid", ["tab2", "fig5", "tab_datasets"])
def test_full_params_are_accepted_and_a_missing_dataset_is_named(manifest, eid, tmp_path):
    """The full-scale params pass validation; without the fetched files the job stops before training, naming the
    file and its fetch rule."""
    params = {**manifest.experiments[eid].params["full"], "data_dir": str(tmp_path)}
    with pytest.raises(ReproError, match=r"churn\.tsv\.gz is missing.*snakemake skinny_fetch_churn"):
        run_experiment(manifest.experiments[eid].kind, params, 0)
    listed = manifest.experiments[eid].inputs_at("full")
    assert "data/raw/pmlb/churn/churn.tsv.gz" in listed and "data/raw/pmlb/churn/metadata.yaml" in listed
