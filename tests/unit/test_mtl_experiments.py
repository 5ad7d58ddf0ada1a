"""reprise.mtl experiments: registration, params checks, tidy rows at reduced smoke sizes."""
import numpy as np
import pytest

from reprise.experiments import get_experiment, run_experiment
from reprise.io import ReproError
from reprise.mtl.experiments import FULL_PARAMS, SMOKE_PARAMS, validate_params

IDS = ("fig1", "sim_q", "tab3", "real_substitute")


def test_every_experiment_is_registered_and_full_params_validate():
    for exp_id in IDS:
        assert callable(get_experiment(f"mtl.{exp_id}"))
        validate_params(exp_id, FULL_PARAMS[exp_id])
        assert set(FULL_PARAMS[exp_id]) == set(SMOKE_PARAMS[exp_id])


@pytest.mark.parametrize("exp_id, params, match", [
    ("fig1", {"alpha": 1}, "unknown param"),
    ("fig1", {"s": 40}, "s=40 exceeds p=30"),
    ("sim_q", {"q_values": []}, "q_values"),
    ("sim_q", {"replicates": 0}, "replicates"),
    ("sim_q", {"methods": ["lasso"]}, "'lasso' is unknown"),
    ("tab3", {"lambda_z": -1}, "lambda_z"),
    ("tab3", {"tune": "yes"}, "tune"),
    ("real_substitute", {"n_values": [50.5]}, "n_values"),
    ("real_substitute", {"lambda1_grid": "0.1"}, "lambda1_grid"),
])
def test_bad_params_name_the_key(exp_id, params, match):
    with pytest.raises(ReproError, match=match):
        run_experiment(f"mtl.{exp_id}", params, 0)


def test_fig1_rows_are_support_matrices():
    df = run_experiment("mtl.fig1", {}, 0)
    assert set(df["method"]) == {"l0_independent", "l0_common", "bbar_mtl", "zbar_mtl"}
    assert len(df) == 4 * 3 * 30
    per = df.groupby(["method", "task"])["selected"].sum()
    assert (per <= 4).all()
    common = df[df["method"] == "l0_common"].pivot(index="task", columns="feature", values="selected")
    assert (common.nunique(axis=0) == 1).all()
    assert df.groupby(["task", "feature"])["true_selected"].nunique().max() == 1


def test_sim_q_shared_supports_zbar_at_least_independent():
    params = dict(q_values=[0, 4], replicates=3, methods=["l0_independent", "zbar_mtl"])
    df = run_experiment("mtl.sim_q", params, 0)
    assert len(df) == 2 * 3 * 2
    for col in ("rmse", "f1", "tpr", "fpr", "coef_error", "support_size", "time_s"):
        assert df[col].notna().all()
    shared = df[df["q"] == 4].groupby("method")["f1"].mean()  # q = r_card: one shared support
    assert shared["zbar_mtl"] >= shared["l0_independent"] - 0.05


def test_tab3_exact_solvers_against_the_heuristic():
    df = run_experiment("mtl.tab3", {"replicates": 2}, 1)
    assert list(df["method"]) == ["enumeration", "oa", "iht"] * 2
    for _, g in df.groupby("replicate"):
        obj = g.set_index("method")["objective"]
        assert obj["enumeration"] <= obj["iht"] + 1e-12
        assert obj["oa"] >= obj["enumeration"] - 1e-9
        assert g.set_index("method").loc["oa", "solver_gap"] <= 0.05
    assert (df["rel_gap_to_optimum"] >= -1e-9).all()


def test_tab3_skips_enumeration_when_it_is_out_of_reach():
    df = run_experiment("mtl.tab3", {"p": 12, "K": 3, "s": 3, "s_true": 3, "replicates": 1, "oa_time_limit": 20.0}, 0)
    row = df.set_index("method").loc["enumeration"]
    assert row["status"].startswith("skipped") and np.isnan(row["objective"])
    assert df.set_index("method").loc["oa", "status"] == "ok"


def test_real_substitute_is_labelled_as_synthetic():
    df = run_experiment("mtl.real_substitute", {"n_values": [50], "p": 40, "s": 5,
                                                "methods": ["l0_independent", "zbar_mtl"]}, 0)
    assert df["data"].str.contains("synthetic substitute").all()
    assert set(df.columns) >= {"n", "replicate", "method", "rmse", "support_size"}
    assert (df["support_size"] <= 5).all()
