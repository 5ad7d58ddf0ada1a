"""reprise.nmf.experiments: each registered experiment runs at its smoke defaults (shrunk where
noted) and returns tidy rows with the documented columns; bad params fail naming the key."""
from __future__ import annotations

import numpy as np
import pytest

from reprise.experiments import get_experiment, run_experiment
from reprise.io import ReproError

NAMES = ("nmf.tab_synth", "nmf.tab_mip", "nmf.fig_ls", "nmf.digits", "nmf.robustness_toy")


def test_all_registered():
    for name in NAMES:
        assert callable(get_experiment(name))


def test_tab_synth_rows():
    df = run_experiment("nmf.tab_synth", {"sigmas": [0.5], "max_iter": 30}, 0)
    assert set(df["method"]) == {"saa", "saa_ls", "nmf"}
    assert len(df) == 2 * 2 + 1  # two SAA variants × two λ, plus plain NMF
    assert set(df.loc[df["lam"] == 0, "label"]) == {"sparse_simplex_nmf"}
    for col in ("weak_L", "strong_L", "recon_err", "recon_err_clean", "objective", "nnz", "seconds"):
        assert col in df
    assert (df.loc[df["method"] != "nmf", "nnz"] <= 120).all()
    again = run_experiment("nmf.tab_synth", {"sigmas": [0.5], "max_iter": 30}, 0)
    np.testing.assert_array_equal(df["strong_L"], again["strong_L"])  # the seed fixes everything


def test_tab_mip_rows():
    df = run_experiment("nmf.tab_mip", {"max_iter": 30, "mip_max_cuts": 2}, 1)
    assert list(df["method"]) == ["saa", "saa_mip"]
    mip = df[df["method"] == "saa_mip"].iloc[0]
    assert 1 <= mip["mip_cuts"] <= 2 and mip["mip_stop"] in {"gap", "max_cuts", "time_limit"}
    assert (df["objective"] <= df["init_objective"]).all()


def test_fig_ls_rows():
    df = run_experiment("nmf.fig_ls", {"max_iter": 30}, 0)
    assert list(df["stage"]) == ["continuation", "local_search", "local_search"]
    assert np.all(np.diff(df["objective"]) <= 0)
    assert df["support_changes_total"].iloc[-1] == df["support_changes"].sum()


def test_digits_rows():
    df = run_experiment("nmf.digits", {"n_images": 100, "max_iter": 20, "methods": ["saa", "nmf"]}, 0)
    px = df[df["record"] == "pixel"]
    assert len(px) == 2 * 10 * 64 and set(px["row"]) == set(range(8))
    assert (px["pixel"] == 8 * px["row"] + px["col"]).all()
    saa = px[px["method"] == "saa"]
    assert (saa["value"] >= 0).all() and (saa["value"] > 0).sum() <= round(0.3 * 640)
    metrics = df[df["record"] == "metric"]
    assert {"recon_err", "rel_recon_err", "objective", "nnz", "sparsity", "ari", "seconds"} <= set(metrics["metric"])


def test_robustness_toy_rows():
    df = run_experiment("nmf.robustness_toy", {"lams": [0.0, 1.0], "max_iter": 100}, 0)
    assert set(df["kind"]) == {"data", "hull", "true_archetype", "archetype", "metric"}
    assert (df["kind"] == "data").sum() == 60 and (df["kind"] == "archetype").sum() == 2 * 3
    assert (df["kind"] == "hull").sum() >= 3


@pytest.mark.parametrize("name,params,match", [
    ("nmf.tab_synth", {"sigma": 0.5}, "unknown params"),
    ("nmf.tab_synth", {"lams": []}, "empty"),
    ("nmf.tab_synth", {"lams": [-1.0]}, "lams"),
    ("nmf.tab_synth", {"methods": ["pca"]}, "methods"),
    ("nmf.tab_synth", {"k": 30}, "k"),
    ("nmf.tab_mip", {"mip_time_limit": 0}, "mip_time_limit"),
    ("nmf.fig_ls", {"ell_frac": 1.5}, "ell_frac"),
    ("nmf.digits", {"n_images": 5000}, "n_images"),
    ("nmf.robustness_toy", {"archetypes": [[1, 2, 3]]}, "archetypes"),
])
def test_bad_params_name_the_key(name, params, match):
    with pytest.raises(ReproError, match=match):
        run_experiment(name, params, 0)
    with pytest.raises(ReproError, match="seed"):
        run_experiment(name, {}, -1)


def test_experiments_leave_the_global_rng_alone():
    state = np.random.get_state()[1].copy()
    run_experiment("nmf.fig_ls", {"max_iter": 10, "ls_max_iter": 1}, 3)
    run_experiment("nmf.tab_synth", {"sigmas": [0.1], "max_iter": 10, "methods": ["saa", "nmf"]}, 3)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
