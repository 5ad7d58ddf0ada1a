"""Experiments of the sMTL paper (specs/other-papers.md §6.7, §6.9), registered in
:mod:`reprise.experiments` as ``fn(params, seed) -> pandas.DataFrame`` with tidy rows.

Missing keys take the smoke value; unknown keys and bad values raise a ReproError naming the key.
Grids ``lambda1_grid`` and ``lambda2_grid`` are absolute (penalties on the standardised
coefficients, as in the package); ``lambda_z_grid`` is relative: each value is multiplied by the
mean within-task variance of the training outcomes (the z̄ term has the units of the loss), so
one grid serves designs with different outcome scales. Methods (§6.4):

* ``l0_independent`` — K separate ridge best-subset fits (λ₂ = λ_z = 0; tune λ₁),
* ``l0_common`` — one support for all tasks (multi-task group L0; tune λ₁),
* ``bbar_mtl`` — β̄ penalty (tune λ₁ × λ₂),
* ``zbar_mtl`` — z̄ penalty, the paper's proposal (tune λ₁ × λ_z).

All four use the IHT solver with the package's defaults (warm start, local search 50 passes) and
K-fold CV by multi-task RMSE (:class:`~reprise.mtl.SparseMultiTaskCV`). Baselines of the real-data
figures (:mod:`reprise.mtl.baselines`), usable in every experiment's ``methods``:

* ``sgl`` — sparse group lasso across tasks (groups = one feature over the tasks), tuned along a
  ``n_lambda`` path (λ_max … λ_max·``lambda_ratio``) for each α in ``sgl_alpha_grid`` under the
  support cap s (mean support per task <= s, as the scripts),
* ``gel`` — grpreg's group exponential lasso (τ = ``gel_tau``, 1/3), tuned the same way,
* ``pooled_l0`` / ``pooled_ridge`` — the scripts' "merged" fits: one L0L2 (support s) or ridge fit on
  the stacked rows of all tasks, tuned over ``lambda1_grid``.

Smoke adds ``sgl``, ``pooled_l0`` and ``pooled_ridge`` to ``sim_q`` and the pooled two to
``real_substitute`` (α = 0.5, 8-point paths); full adds every baseline (10 α values in [0, 1],
100-point paths).

``mtl.fig1`` — support matrices (Fig 1). Rows (method, task, feature): ``coefficient``,
``selected``, ``true_coefficient``, ``true_selected``, the tuned ``s, lambda1, lambda2, lambda_z``
and ``cv_rmse``; plus ``f1`` of each method. Data: :func:`~reprise.mtl.simulate_fig1`.
  smoke (§6.9): K=3, p=30, n=40, s=4 with 2 shared + 2 task-specific features (common_size=2,
  q=0, r_card=2), grids 3 (×3), 3-fold CV.
  full (Figure1 script): K=2, p=50, n=25, q=14, r_card=7, s=7, 5-fold CV, the script's grids
  (λ₁: 1e-6…100 and e^{-5…0}, 36 values; λ_z 17 values here in relative units).

``mtl.sim_q`` — RMSE, F1, TPR, FPR, coefficient error, support size (and fit time) vs support
heterogeneity q (simulation figures). Rows (n, s, q, replicate, method). Data:
:func:`~reprise.mtl.simulate_multitask`. In the paper's scripts **q = 0 means disjoint supports**
and q = r_card one shared support (larger q, more heterogeneity); specs/other-papers.md §6.9 reads
q = 0 as "shared", which the code contradicts, so the smoke grid adds q = r_card = 4 and the
shared-support check is made there.
  smoke: K=3, p=40, n=50, r=8, r_p=0.5 (r_card=4), s=4, q ∈ {0, 4, 8}, 5 replicates, 3-fold CV,
  grids 3 (×3).
  full (§6.5, ``sparseParam_test``): K=5, p=250, n ∈ {50, 100}, r=20, r_p=0.5, s ∈ {7, 10, 13},
  q ∈ {0, 10, 12, 14, 16, 18, 20, 30, 40}, betaVar=50, τ=1, 100 replicates, 10-fold CV, the
  scripts' 100-value ridge grid (e^{0…6} ∪ e^{-(0…25)}), the package's 10-value β̄ grid, 17 λ_z
  values (0 and 1e-4…1, relative).

``mtl.tab3`` — exact solvers vs the approximate one (Table 3): enumeration, outer approximation
(SCIP) and IHT at the same (s, λ₁, λ_z) on the unscaled problem (as the demo's OA); rows
(replicate, method) with ``objective``, ``rel_gap_to_optimum`` (to the enumeration optimum, or
the best objective found when enumeration is out of reach), ``solver_gap`` (OA's (UB−LB)/UB;
0 for enumeration), ``lower_bound``, ``time_s``, ``n_iter``, ``n_evaluated``, ``test_rmse``,
``status``. Data: :func:`~reprise.mtl.simulate_demo`.
  smoke (§6.9): p=8, K=2, s=2 (28² size-2 pairs; with λ_z > 0 all 37² supports of size <= 2),
  n=50, s_true=2, q=1, SNR 10 dB, λ₁=1e-3, λ_z=0.05, 3 replicates.
  full (``Exact Solvers/demo.jl``): p=200, K=5, n=500, s_true=5, q=1, ρ=0.4, SNR 40 dB, M=1,
  tune=True (5-fold CV of the IHT over s ∈ {4,5,6} × λ_z ∈ {0.01,0.025,0.05,0.1,0.25,0.5},
  λ₁ = 1e-6); enumeration is then out of reach and reported as skipped.

``mtl.real_substitute`` — multi-task RMSE and support size vs n_k (Fig 6) on the **synthetic
FSCV-like substitute** (:func:`~reprise.mtl.fscv_like`, AR(1) ρ=0.95), labelled as such in the
``data`` column; never compared with the paper's FSCV numbers. Rows (n, replicate, method).
  smoke: K=4, p=100, n ∈ {50, 100}, s=10, 1 replicate, 3-fold CV, grids 3 (×3).
  full: the real Fig 6 needs the OSF data (:func:`~reprise.mtl.fetch_fscv`) and a loader for its
  files (not written); the substitute at full scale: p=100, n ∈ {100, 250, 1000}, s=25,
  100 replicates, 5-fold CV.

Measured smoke times on one core of the development machine (OMP_NUM_THREADS=1): fig1 0.8 s,
sim_q 3.6 s, tab3 0.3 s, real_substitute 6.4 s (9.9 s under load) before the baselines; the
baselines add (process CPU seconds, seed 0) 2.1 s to sim_q (3.8 -> 6.0 s; SGL 1.9 s) and 0.1 s to
real_substitute (6.5 -> 6.7 s); ``SMOKE_SECONDS``. GEL is full scale only (4 s on the sim_q
design, 18 s on the FSCV-like one: coordinate descent needs hundreds of sweeps at ρ = 0.95).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from reprise.experiments import boolean, choice, experiment, integer, list_of, optional, params as _params, real
from reprise.io import ReproError
from reprise.mtl import baselines as _bl
from reprise.mtl._core import multitask_rmse, prepare
from reprise.mtl.data import MultiTaskData, fscv_like, simulate_demo, simulate_fig1, simulate_multitask
from reprise.mtl.estimator import SparseMultiTask, SparseMultiTaskCV
from reprise.sparsity import support_counts

METHODS = ("l0_independent", "l0_common", "bbar_mtl", "zbar_mtl")
#: the real-data figures' baselines (reprise.mtl.baselines; pooled = the scripts' "merged" fits)
BASELINES = ("sgl", "gel", "pooled_l0", "pooled_ridge")
ALL_METHODS = METHODS + BASELINES

_RIDGE_FULL = sorted(set(np.round(np.concatenate([np.exp(np.linspace(0, 6, 50)),
                                                   np.exp(-np.linspace(0, 25, 50))]), 14).tolist()))
_LZ_FULL = [0.0] + np.geomspace(1e-4, 1.0, 16).tolist()
#: the package's β̄ grid (``grid.gen``): 0, 1e-3, 1e-2, 1e-1 and six values e^2 … e^6
_BBAR_FULL = [0.0, 1e-3, 1e-2, 1e-1] + np.exp(np.linspace(2, 6, 6)).tolist()

#: baseline tuning (used only when ``methods`` names a baseline): SGL's α grid, the λ path length and
#: its λ_min/λ_max ratio, GEL's τ; full: the scripts' 10 α values in [0, 1], 100-point paths
_BASELINE_SMOKE = dict(sgl_alpha_grid=[0.5], n_lambda=8, lambda_ratio=1e-2, gel_tau=_bl.GEL_TAU)
_BASELINE_FULL = dict(sgl_alpha_grid=np.linspace(0, 1, 10).tolist(), n_lambda=100, lambda_ratio=1e-3,
                      gel_tau=_bl.GEL_TAU)

SMOKE_PARAMS: dict[str, dict[str, Any]] = {
    "fig1": dict(K=3, p=30, n=40, n_test=40, s=4, common_size=2, q=0, r_card=2, rho=0.5, sigma2=1.0,
                 n_folds=3, lambda1_grid=[1e-3, 1e-2, 1e-1], lambda2_grid=[1e-2, 1e-1, 1.0],
                 lambda_z_grid=[0.0, 0.03, 0.1], methods=list(METHODS), **_BASELINE_SMOKE),
    "sim_q": dict(K=3, p=40, n_values=[50], n_test=None, r=8, r_p=0.5, s_values=[4], q_values=[0, 4, 8],
                  replicates=5, beta_var=50.0, tau=1.0, rho=0.5, n_folds=3, lambda1_grid=[1e-3, 1e-2, 1e-1],
                  lambda2_grid=[1e-2, 1e-1, 1.0], lambda_z_grid=[0.0, 0.03, 0.1],
                  methods=[*METHODS, "sgl", "pooled_l0", "pooled_ridge"], **_BASELINE_SMOKE),
    "tab3": dict(K=2, p=8, n=50, n_test=50, s=2, s_true=2, q=1, rho=0.4, snr_db=10.0, lambda1=1e-3,
                 lambda_z=0.05, replicates=3, big_m=None, tune=False, s_grid=[2], lambda_z_grid=[0.05],
                 n_folds=5, oa_time_limit=180.0),
    "real_substitute": dict(K=4, p=100, n_values=[50, 100], n_test=100, s=10, replicates=1, n_folds=3,
                            lambda1_grid=[1e-3, 1e-2, 1e-1], lambda2_grid=[1e-2, 1e-1, 1.0],
                            lambda_z_grid=[0.0, 0.03, 0.1], methods=[*METHODS, "pooled_l0", "pooled_ridge"],
                            **_BASELINE_SMOKE),
}

FULL_PARAMS: dict[str, dict[str, Any]] = {
    "fig1": dict(SMOKE_PARAMS["fig1"], K=2, p=50, n=25, n_test=25, s=7, common_size=0, q=14, r_card=7, n_folds=5,
                 lambda1_grid=sorted({1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 5.0, 10.0, 50.0, 100.0,
                                      *np.exp(-np.linspace(0, 5, 30)).tolist()}),
                 lambda2_grid=sorted({1e-3, 1e-2, 1e-1, *np.exp(np.linspace(2, 6, 6)).tolist()}),
                 lambda_z_grid=_LZ_FULL),
    "sim_q": dict(SMOKE_PARAMS["sim_q"], K=5, p=250, n_values=[50, 100], r=20, r_p=0.5, s_values=[7, 10, 13],
                  q_values=[0, 10, 12, 14, 16, 18, 20, 30, 40], replicates=100, n_folds=10,
                  lambda1_grid=_RIDGE_FULL, lambda2_grid=_BBAR_FULL, lambda_z_grid=_LZ_FULL, **_BASELINE_FULL),
    "tab3": dict(SMOKE_PARAMS["tab3"], K=5, p=200, n=500, n_test=500, s=5, s_true=5, q=1, rho=0.4, snr_db=40.0,
                 lambda1=1e-6, lambda_z=0.05, replicates=1, big_m=1.0, tune=True, s_grid=[4, 5, 6],
                 lambda_z_grid=[0.01, 0.025, 0.05, 0.1, 0.25, 0.5], n_folds=5),
    "real_substitute": dict(SMOKE_PARAMS["real_substitute"], p=100, n_values=[100, 250, 1000], n_test=1000, s=25,
                            replicates=100, n_folds=5, lambda1_grid=_RIDGE_FULL, lambda2_grid=_BBAR_FULL,
                            lambda_z_grid=_LZ_FULL, **_BASELINE_FULL),
}

#: measured wall seconds at the smoke params (seed 0, OMP_NUM_THREADS=1, the 2-core development
#: machine shared with other jobs; the second figure of real_substitute is under load)
SMOKE_SECONDS = {"fig1": 0.8, "sim_q": 3.6 + 2.1, "tab3": 0.3, "real_substitute": 6.4 + 0.1}


# --------------------------------------------------------------------------- params

_CHECKS = {
    "K": integer(1), "p": integer(1), "n": integer(4), "n_test": optional(integer(1)), "s": integer(1),
    "common_size": integer(0), "q": integer(0), "r_card": integer(1), "r": integer(1), "r_p": real(0),
    "rho": real(0), "sigma2": real(0), "n_folds": integer(2), "replicates": integer(1), "beta_var": real(0),
    "tau": real(0), "s_true": integer(1), "snr_db": real(), "lambda1": real(0), "lambda_z": real(0),
    "big_m": optional(real(0)), "oa_time_limit": real(0),
    "lambda1_grid": list_of(real(0)), "lambda2_grid": list_of(real(0)), "lambda_z_grid": list_of(real(0)),
    "n_values": list_of(integer(4)), "s_values": list_of(integer(1)), "q_values": list_of(integer(0)),
    "s_grid": list_of(integer(1)), "methods": list_of(choice(*ALL_METHODS)), "tune": boolean,
    "sgl_alpha_grid": list_of(real(0)), "n_lambda": integer(2), "lambda_ratio": real(0), "gel_tau": real(0),
}


def validate_params(exp_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Smoke defaults overlaid with ``params``; unknown keys and bad values raise a ReproError."""
    out = _params(f"mtl.{exp_id}", params, {key: (value, _CHECKS[key]) for key, value in SMOKE_PARAMS[exp_id].items()})
    if "rho" in out and out["rho"] >= 1:
        raise ReproError(f"param rho={out['rho']} must be < 1")
    if "r_p" in out and not 0 < out["r_p"] <= 1:
        raise ReproError(f"param r_p={out['r_p']} must be in (0, 1]")
    if "s" in out and "p" in out and out["s"] > out["p"]:
        raise ReproError(f"param s={out['s']} exceeds p={out['p']}; choose s <= p")
    for key in ("s_values", "s_grid"):
        if key in out and max(out[key]) > out["p"]:
            raise ReproError(f"param {key}={out[key]} has a value above p={out['p']}; choose s <= p")
    return out


# --------------------------------------------------------------------------- shared pieces

def _grid(method: str, prm: dict, lz_unit: float) -> tuple[dict, dict]:
    """(fixed estimator params, param_grid) of one method."""
    l1 = prm["lambda1_grid"]
    if method == "l0_independent":
        return {}, {"lambda1": l1}
    if method == "l0_common":
        return {"common_support": True}, {"lambda1": l1}
    if method == "bbar_mtl":
        return {}, {"lambda1": l1, "lambda2": prm["lambda2_grid"]}
    return {}, {"lambda1": l1, "lambda_z": [v * lz_unit for v in prm["lambda_z_grid"]]}


def _lz_unit(ys) -> float:
    return float(np.mean([np.var(y) for y in ys]))


@dataclass
class Fitted:
    """A tuned method's coefficients and its tuned parameters (every method, MTL or baseline)."""

    coef_: np.ndarray          # (K, p)
    intercept_: np.ndarray     # (K,)
    support_: np.ndarray       # (K, p) bool
    tuned: dict


def _fit_mtl(method: str, data: MultiTaskData, s: int, prm: dict, seed: int) -> Fitted:
    fixed, grid = _grid(method, prm, _lz_unit(data.ys))
    cv = SparseMultiTaskCV(SparseMultiTask(s=s, **fixed), grid, n_folds=prm["n_folds"], random_state=seed)
    cv.fit(data.Xs, data.ys)
    est = cv.best_estimator_
    return Fitted(est.coef_, est.intercept_, est.support_, _tuned(cv))


def _fit_baseline(method: str, data: MultiTaskData, s: int, prm: dict, seed: int) -> Fitted:
    """SGL, GEL (tuned along their λ paths under the support cap s, as the scripts), pooled L0
    and pooled ridge on the stacked rows (one coefficient vector for every task)."""
    K = len(data.Xs)
    nan = dict(s=s, lambda1=np.nan, lambda2=np.nan, lambda_z=np.nan)
    kw = dict(s_max=s, n_lambda=prm["n_lambda"], ratio=prm["lambda_ratio"], n_folds=prm["n_folds"], seed=seed)
    if method == "sgl":
        best = None
        for alpha in prm["sgl_alpha_grid"]:
            res = _bl.tune_path(_bl.SparseGroupLasso(alpha=alpha), data.Xs, data.ys, **kw)
            if best is None or res["cv_rmse"] < best[0]["cv_rmse"]:
                best = (res, alpha)
        res, alpha = best
        est = res["best"]
        return Fitted(est.coef_, est.intercept_, est.support_,
                      dict(nan, lam=res["lam"], alpha=alpha, cv_rmse=res["cv_rmse"]))
    if method == "gel":
        res = _bl.tune_path(_bl.GroupExponentialLasso(tau=prm["gel_tau"]), data.Xs, data.ys, **kw)
        est = res["best"]
        return Fitted(est.coef_, est.intercept_, est.support_, dict(nan, lam=res["lam"], cv_rmse=res["cv_rmse"]))
    X = [np.vstack(data.Xs)]
    y = [np.concatenate(data.ys)]
    if method == "pooled_ridge":
        res = _bl.ridge_cv(X, y, prm["lambda1_grid"], n_folds=prm["n_folds"], seed=seed)
        # s stays the setting's support cap (the rows' index); ridge keeps all p features
        coef, icpt, tuned = res["coef"], res["intercept"], dict(nan, lambda1=res["lam"], cv_rmse=res["cv_rmse"])
    else:   # pooled_l0
        cv = SparseMultiTaskCV(SparseMultiTask(s=s), {"lambda1": prm["lambda1_grid"]}, n_folds=prm["n_folds"],
                               random_state=seed).fit(X, y)
        coef, icpt, tuned = cv.best_estimator_.coef_, cv.best_estimator_.intercept_, _tuned(cv)
    coef = np.repeat(coef, K, axis=0)
    return Fitted(coef, np.repeat(icpt, K), np.abs(coef) > 0, tuned)


def _fit_method(method: str, data: MultiTaskData, s: int, prm: dict, seed: int) -> tuple[Fitted, float]:
    t0 = time.perf_counter()
    fit = (_fit_mtl if method in METHODS else _fit_baseline)(method, data, s, prm, seed)
    return fit, time.perf_counter() - t0


def _tuned(cv: SparseMultiTaskCV) -> dict:
    est = cv.best_estimator_
    return dict(s=int(est.s), lambda1=float(est.lambda1), lambda2=float(est.lambda2), lambda_z=float(est.lambda_z),
                cv_rmse=float(cv.best_rmse_))


def _metrics(fit: Fitted, data: MultiTaskData) -> dict:
    counts = support_counts(fit.support_.astype(float), data.support.astype(float))
    err = np.concatenate([(fit.coef_ - data.coef).ravel(), fit.intercept_ - data.intercept])
    return dict(rmse=multitask_rmse(data.Xs_test, data.ys_test, fit.coef_, fit.intercept_), f1=counts.f1,
                tpr=counts.tpr, fpr=counts.fpr, mcc=counts.mcc, coef_error=float(np.sqrt(np.mean(err ** 2))),
                support_size=float(fit.support_.sum(axis=1).mean()))


# --------------------------------------------------------------------------- experiments

@experiment("mtl.fig1")
def fig1(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Support matrices of the four methods on the Fig 1 toy (module docstring)."""
    prm = validate_params("fig1", params)
    data = simulate_fig1(seed, K=prm["K"], p=prm["p"], n=prm["n"], n_test=prm["n_test"], q=prm["q"],
                         r_card=prm["r_card"], common_size=prm["common_size"], rho=prm["rho"], sigma2=prm["sigma2"])
    rows = []
    K, p = data.coef.shape
    for method in prm["methods"]:
        est, secs = _fit_method(method, data, prm["s"], prm, seed)
        tuned, met = est.tuned, _metrics(est, data)
        for k in range(K):
            for j in range(p):
                rows.append(dict(method=method, task=k, feature=j, coefficient=float(est.coef_[k, j]),
                                 selected=bool(est.support_[k, j]), true_coefficient=float(data.coef[k, j]),
                                 true_selected=bool(data.coef[k, j] != 0), f1=met["f1"], time_s=secs,
                                 seed=seed, **tuned))
    return pd.DataFrame(rows)


@experiment("mtl.sim_q")
def sim_q(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Metrics vs support heterogeneity q (module docstring)."""
    prm = validate_params("sim_q", params)
    rows = []
    for n in prm["n_values"]:
        for s in prm["s_values"]:
            for q in prm["q_values"]:
                for rep in range(prm["replicates"]):
                    rep_seed = seed * 100_003 + rep
                    data = simulate_multitask(rep_seed, K=prm["K"], p=prm["p"], n=n, n_test=prm["n_test"], q=q,
                                              r=prm["r"], r_p=prm["r_p"], rho=prm["rho"], beta_var=prm["beta_var"],
                                              tau=prm["tau"], coef_seed=seed)
                    for method in prm["methods"]:
                        fit, secs = _fit_method(method, data, s, prm, rep_seed)
                        rows.append(dict(n=n, q=q, replicate=rep, method=method, **_metrics(fit, data),
                                         time_s=secs, seed=seed, r_card=data.info["r_card"], **fit.tuned))
    return pd.DataFrame(rows)


@experiment("mtl.tab3")
def tab3(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Exact (enumeration, OA on SCIP) vs approximate (IHT) solutions of one problem (module docstring)."""
    prm = validate_params("tab3", params)
    from reprise.mtl import exact as _exact
    from reprise.mtl import iht as _iht

    rows = []
    for rep in range(prm["replicates"]):
        rep_seed = seed * 100_003 + rep
        data = simulate_demo(rep_seed, K=prm["K"], p=prm["p"], n=prm["n"], n_test=prm["n_test"],
                             s_true=prm["s_true"], q=prm["q"], rho=prm["rho"], snr_db=prm["snr_db"])
        s, l1, lz = prm["s"], prm["lambda1"], prm["lambda_z"]
        if prm["tune"]:
            cv = SparseMultiTaskCV(SparseMultiTask(s=s, lambda1=l1, scale=False),
                                   {"s": prm["s_grid"], "lambda_z": prm["lambda_z_grid"]}, n_folds=prm["n_folds"],
                                   random_state=rep_seed, refit=False).fit(data.Xs, data.ys)
            s, lz = int(cv.best_params_["s"]), float(cv.best_params_["lambda_z"])
        pen = _iht.Penalties(l1, 0.0, lz)
        prep = prepare(data.Xs, data.ys, scale=False)
        common = dict(replicate=rep, s=s, lambda1=l1, lambda_z=lz, seed=seed, p=prm["p"], K=prm["K"])
        results = {}
        # approximate solver (the package's path: warm start, IHT, local search)
        t0 = time.perf_counter()
        B0 = _iht.warm_start(prep, s, l1, False)
        heur = _iht.solve(prep, s, pen, False, B0)
        heur.time_s = time.perf_counter() - t0
        results["iht"] = heur
        # exhaustive enumeration when within the limit
        n_comb = _exact.n_combinations(prm["p"], prm["K"], s, pen, False)
        if n_comb <= _exact.enumeration_limit(pen, False):
            results["enumeration"] = _exact.enumerate_supports(prep, s, pen, False)
        # outer approximation from the heuristic's supports
        big_m = prm["big_m"] if prm["big_m"] is not None else \
            _exact.BIG_M_MULTIPLIER * max(float(np.abs(heur.B).max()), 1e-8)
        results["oa"] = _exact.outer_approximation(prep, s, pen, False, heur.Z, big_m=big_m,
                                                   time_limit=prm["oa_time_limit"])
        optimum = results["enumeration"].objective if "enumeration" in results else \
            min(r.objective for r in results.values())
        for method in ("enumeration", "oa", "iht"):
            if method not in results:
                rows.append(dict(common, method=method, status=f"skipped: {n_comb:,} support combinations exceed "
                                 f"the enumeration limit", objective=np.nan, rel_gap_to_optimum=np.nan,
                                 solver_gap=np.nan, lower_bound=np.nan, time_s=np.nan, n_iter=0, n_evaluated=0,
                                 test_rmse=np.nan, big_m=big_m, support_size=np.nan))
                continue
            r = results[method]
            coef, icpt = prep.to_original(r.B)
            rows.append(dict(common, method=method, status="ok", objective=r.objective,
                             rel_gap_to_optimum=(r.objective - optimum) / optimum if optimum > 0 else 0.0,
                             solver_gap=np.nan if r.gap is None else float(r.gap),
                             lower_bound=np.nan if r.lower_bound is None else float(r.lower_bound),
                             time_s=float(r.time_s), n_iter=int(r.n_iter), n_evaluated=int(r.n_evaluated),
                             test_rmse=multitask_rmse(data.Xs_test, data.ys_test, coef, icpt),
                             big_m=big_m if method == "oa" else np.nan,
                             support_size=float(r.Z.sum(axis=1).mean())))
    return pd.DataFrame(rows)


@experiment("mtl.real_substitute")
def real_substitute(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Multi-task RMSE and support size vs n_k on the synthetic FSCV-like substitute (module docstring)."""
    prm = validate_params("real_substitute", params)
    rows = []
    for n in prm["n_values"]:
        for rep in range(prm["replicates"]):
            rep_seed = seed * 100_003 + rep
            data = fscv_like(rep_seed, K=prm["K"], p=prm["p"], n=n, n_test=prm["n_test"])
            for method in prm["methods"]:
                fit, secs = _fit_method(method, data, prm["s"], prm, rep_seed)
                met = _metrics(fit, data)
                rows.append(dict(data="fscv_like (synthetic substitute for FSCV, osf.io/tb8fx)", n=n, replicate=rep,
                                 method=method, rmse=met["rmse"], support_size=met["support_size"], f1=met["f1"],
                                 time_s=secs, seed=seed, **fit.tuned))
    return pd.DataFrame(rows)


# the real-data experiments (full scale only) register themselves on import
from reprise.mtl import real_experiments as _real_experiments  # noqa: E402,F401
