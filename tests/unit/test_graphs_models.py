"""GraphL0BnB around the solvers: generators, baselines, the SCIP column, tuning, the sklearn
contract, the experiments and every bad input's error (specs/other-papers.md §2.5-§2.10)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from reprise.experiments import run_experiment
from reprise.graphs import (MAX_P_ENUMERATION, MAX_P_SCIP, L0GraphicalModel, banded_toeplitz_precision, concord,
                            exhaustive_enumeration, generate_synthetic, nodewise_lasso, sample_gaussian,
                            tune_baseline, tune_lambda0, uniform_precision)
from reprise.graphs.baselines import concord_objective
from reprise.graphs.generators import condition_precision
from reprise.io import ReproError
from reprise.sparsity import support_counts


# --------------------------------------------------------------------------- generators

@pytest.mark.parametrize("kappa", [1.5, 2.0, 10.0])
def test_toeplitz_has_the_stated_condition_number_band_and_scale(kappa):
    T = banded_toeplitz_precision(12, half_bandwidth=3, rho=0.5, kappa=kappa)
    ev = np.linalg.eigvalsh(T)
    assert ev[-1] / ev[0] == pytest.approx(kappa, rel=1e-10)
    assert np.max(np.diag(np.linalg.inv(T))) == pytest.approx(1.0, rel=1e-12)
    lag = np.abs(np.subtract.outer(np.arange(12), np.arange(12)))
    assert np.all(T[lag > 3] == 0) and np.all(T[(lag > 0) & (lag <= 3)] > 0)
    ratio = T[0, 1] / T[0, 2]        # ρ^1 / ρ^2 after the common scaling
    assert ratio == pytest.approx(2.0)


def test_uniform_precision_is_seeded_symmetric_and_conditioned():
    A = uniform_precision(20, 0.2, kappa=3.0, rng=7)
    B = uniform_precision(20, 0.2, kappa=3.0, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(A, B)
    assert np.allclose(A, A.T)
    ev = np.linalg.eigvalsh(A)
    assert ev[-1] / ev[0] == pytest.approx(3.0, rel=1e-10)
    off = A[~np.eye(20, dtype=bool)]
    assert len(np.unique(np.round(off[off != 0], 12))) == 1   # every edge has the same value 0.5·q
    assert not np.array_equal(A, uniform_precision(20, 0.2, kappa=3.0, rng=8))


def test_samples_have_the_model_covariance_and_legacy_streams_work():
    T = banded_toeplitz_precision(4, 1)
    X = sample_gaussian(20000, T, rng=0)
    np.testing.assert_allclose(np.cov(X, rowvar=False), np.linalg.inv(T), atol=0.03)
    a = generate_synthetic(50, 6, "toeplitz", rng=np.random.RandomState(0))[0]
    L = np.linalg.cholesky(np.linalg.inv(banded_toeplitz_precision(6)))
    z = np.random.RandomState(0).standard_normal((50, 6)) @ L.T
    np.testing.assert_allclose(a, z, rtol=1e-10)


def test_generators_reject_bad_input():
    with pytest.raises(ReproError, match="kappa"):
        banded_toeplitz_precision(5, kappa=1.0)
    with pytest.raises(ReproError, match="no off-diagonal"):
        condition_precision(np.zeros((4, 4)), 2.0)
    with pytest.raises(ReproError, match="not positive definite"):
        sample_gaussian(10, np.array([[1.0, 2.0], [2.0, 1.0]]), rng=0)
    with pytest.raises(ReproError, match="rng"):
        uniform_precision(5, 0.3, rng=None)
    with pytest.raises(ReproError, match="p0"):
        uniform_precision(5, 0.0, rng=0)


# --------------------------------------------------------------------------- metrics

def test_mcc_on_a_known_case():
    truth = np.eye(4)
    truth[0, 1] = truth[1, 0] = truth[2, 3] = truth[3, 2] = 0.3
    est = np.eye(4)
    est[0, 1] = est[1, 0] = est[0, 2] = est[2, 0] = 0.5   # one edge right, one wrong, one missed
    c = support_counts(est, truth)                         # all p² entries, as check_support
    assert (c.tp, c.fp, c.fn, c.tn) == (6, 2, 2, 6)
    assert c.mcc == pytest.approx((6 * 6 - 2 * 2) / math.sqrt(8 * 8 * 8 * 8))


# --------------------------------------------------------------------------- baselines

@pytest.fixture(scope="module")
def inst():
    X, _, T = generate_synthetic(150, 8, "toeplitz", rng=3, half_bandwidth=1)
    X_val = sample_gaussian(150, T, rng=4)
    return X, X_val, T


def test_concord_reaches_its_optimality_conditions(inst):
    X, _, _ = inst
    lam = 0.05
    O = concord(X, lam, tol=1e-10, max_iter=20000)
    Y = (X - X.mean(0)) / math.sqrt(len(X))
    S = Y.T @ Y
    G = 0.5 * (S @ O + O @ S) - np.diag(1 / np.diag(O))
    off = ~np.eye(8, dtype=bool)
    nz = off & (O != 0)
    assert np.allclose(np.diag(G), 0, atol=1e-6)
    assert np.allclose(G[nz], -lam * np.sign(O[nz]), atol=1e-6)
    assert np.all(np.abs(G[off & (O == 0)]) <= lam + 1e-6)
    assert concord_objective(O, S, lam) <= concord_objective(np.diag(1 / np.diag(S)), S, lam)


def test_nodewise_lasso_and_is_within_or(inst):
    X, _, _ = inst
    A, O = nodewise_lasso(X, 0.05, "and"), nodewise_lasso(X, 0.05, "or")
    assert np.allclose(A, A.T) and np.allclose(O, O.T)
    assert np.all((A != 0) <= (O != 0))


def test_tuning_picks_the_best_held_out_score(inst):
    X, X_val, T = inst
    tuned = tune_lambda0(X, X_val, [0.01, 0.05, 0.2], lambda2=0.05, M=float(np.abs(T).max()))
    scores = [r["score"] for r in tuned.table]
    assert tuned.value == [0.01, 0.05, 0.2][int(np.argmax(scores))]
    for method in ("glasso", "concord", "nodewise_and", "nodewise_or"):
        t = tune_baseline(method, X, X_val, [0.02, 0.1])
        assert t.precision.shape == (8, 8) and len(t.table) == 2


def test_scip_column_agrees_with_enumeration():
    try:
        import pyscipopt  # noqa: F401
    except ImportError:
        pytest.skip("pyscipopt not installed")
    from reprise.graphs import scip_mip

    X, _, T = generate_synthetic(100, 5, "toeplitz", rng=0, half_bandwidth=1)
    M = float(np.abs(T).max())
    enum = exhaustive_enumeration(X, 0.05, 0.05, M)
    res = scip_mip(X, 0.05, 0.05, M, time_limit=60, gap_tol=1e-6)
    assert res.objective == pytest.approx(enum.objective, rel=1e-6)
    assert res.lower_bound <= enum.objective + 1e-6
    np.testing.assert_array_equal(res.Theta != 0, enum.Theta != 0)


def test_solvers_state_their_p_limits():
    X = np.random.default_rng(0).standard_normal((30, MAX_P_ENUMERATION + 1))
    with pytest.raises(ReproError, match=f"limit of {MAX_P_ENUMERATION}"):
        exhaustive_enumeration(X, 0.1, 0.1, 1.0)
    from reprise.graphs import scip_mip

    X = np.random.default_rng(0).standard_normal((60, MAX_P_SCIP + 1))
    with pytest.raises(ReproError, match=f"limit of {MAX_P_SCIP}"):
        scip_mip(X, 0.1, 0.1, 1.0)


# --------------------------------------------------------------------------- estimator

def test_sklearn_contract(inst):
    X, X_val, T = inst
    est = L0GraphicalModel(lambda0=0.03, M=1.5, solver="ascdpsi")
    assert est.get_params()["lambda0"] == 0.03 and est.get_params()["solver"] == "ascdpsi"
    twin = clone(est).set_params(lambda0=0.1)
    assert twin.lambda0 == 0.1 and est.lambda0 == 0.03 and not hasattr(twin, "precision_")
    assert est.fit(X) is est
    assert est.precision_.shape == (8, 8) and est.n_nodes_ == 0 and math.isnan(est.gap_)
    assert math.isfinite(est.score(X_val))
    search = GridSearchCV(L0GraphicalModel(lambda2=0.05, M=1.5), {"lambda0": [0.01, 0.1]}, cv=2).fit(X)
    assert search.best_params_["lambda0"] in (0.01, 0.1)


def test_bad_inputs_fail_early_with_the_argument_named(inst):
    X, _, _ = inst
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ReproError, match="non-finite.*row 3, column 2"):
        L0GraphicalModel().fit(bad)
    with pytest.raises(ReproError, match="n=1"):
        L0GraphicalModel().fit(X[:1])
    with pytest.raises(ReproError, match="solver='lbfgs'"):
        L0GraphicalModel(solver="lbfgs").fit(X)
    with pytest.raises(ReproError, match="lambda0"):
        L0GraphicalModel(lambda0=-1).fit(X)
    with pytest.raises(ReproError, match="constant"):
        L0GraphicalModel().fit(np.c_[X, np.ones(len(X))])
    with pytest.raises(ReproError, match="finite M or lambda2 > 0"):
        L0GraphicalModel(lambda2=0.0, solver="bnb").fit(X)
    with pytest.raises(ReproError, match="lambda0 grid is empty"):
        tune_lambda0(X, X, [])
    with pytest.raises(ReproError, match="glasso grid is empty"):
        tune_baseline("glasso", X, X, [])
    with pytest.raises(ReproError, match="not fitted"):
        L0GraphicalModel().score(X)


# --------------------------------------------------------------------------- experiments

def test_tab1_smoke_bnb_matches_enumeration_and_scip():
    df = run_experiment("graphs.tab1", {"scip": True}, 0)
    by = df.set_index("method")
    assert set(by.index) == {"enumeration", "graphl0_bnb", "scip"}
    opt = by.loc["enumeration", "objective"]
    assert by.loc["graphl0_bnb", "objective"] <= opt * (1 + 1e-6)
    assert by.loc["graphl0_bnb", "lower_bound"] <= opt + 1e-12 and by.loc["graphl0_bnb", "gap"] <= 1e-3
    assert by.loc["scip", "objective"] == pytest.approx(opt, rel=1e-5)


def test_tab2_tab3_scaling_smoke_invariants():
    t2 = run_experiment("graphs.tab2", {"p": [8], "time_limit": 0.5}, 0)
    assert np.all(t2["objective"] <= t2["heuristic_objective"] + 1e-12) and np.all(np.isfinite(t2["gap"]))
    t3 = run_experiment("graphs.tab3", {"p": [20]}, 0).set_index("solver")
    assert t3.loc["cdpsi", "objective"] <= t3.loc["cd", "objective"] + 1e-12
    sc = run_experiment("graphs.scaling", {"p": [10, 20], "solvers": ["cdpsi"]}, 0)
    assert len(sc) == 2 and np.isfinite(sc["growth_exponent"]).all()


def test_tab4_smoke_graphl0_recovers_support_about_as_well_as_nodewise():
    df = run_experiment("graphs.tab4", {"n": [200], "replicates": 2}, 0)
    assert set(df["method"]) == {"graphl0", "glasso", "concord", "nodewise_and", "nodewise_or"}
    mcc = df.groupby("method")["mcc"].mean()
    assert mcc["graphl0"] >= mcc["nodewise_and"] - 0.1
    assert df["rel_frobenius"].between(0, 2).all()


def test_experiments_validate_their_params():
    with pytest.raises(ReproError, match="unknown param"):
        run_experiment("graphs.tab1", {"pp": [5]}, 0)
    with pytest.raises(ReproError, match="empty list"):
        run_experiment("graphs.tab2", {"p": []}, 0)
    with pytest.raises(ReproError, match="time_limit"):
        run_experiment("graphs.tab2", {"time_limit": 0}, 0)
    with pytest.raises(ReproError, match="lambda0 grid is empty"):
        run_experiment("graphs.tab4", {"lambda0_grid": [], "n": [50], "replicates": 1}, 0)
    with pytest.raises(ReproError, match="solvers"):
        run_experiment("graphs.scaling", {"solvers": ["newton"]}, 0)
    frame = run_experiment("graphs.tab3", {"p": [10]}, 1)
    assert isinstance(frame, pd.DataFrame) and (frame["p"] == 10).all()
