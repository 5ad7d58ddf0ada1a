"""sMTL's real-data experiments (Figs 5-8 of the 2024 manuscript), **full scale only**: they read
the OSF files fetched by ``snakemake smtl_fetch_fscv`` / ``smtl_fetch_breast_cancer`` (loaders
and replicate protocols: :mod:`reprise.mtl.real`), so no smoke params exist and a missing file
raises a ReproError naming it and the fetch rule. Registered in :mod:`reprise.experiments`
through :mod:`reprise.mtl.experiments`. Methods: the four MTL fits of
:mod:`reprise.mtl.experiments` plus the baselines ``sgl``, ``gel``, ``pooled_l0``,
``pooled_ridge`` (:mod:`reprise.mtl.baselines`). Grids default to the scripts'
(``_RIDGE_FULL`` λ₁ 100 values, the package's β̄ grid, 17 relative λ_z values, SGL α 10 values
in [0, 1], 100-point λ paths).

* ``mtl.fscv_supports`` (Fig 5; ``Figure5/Support PreFilter IHT 12-4-23.R``): electrodes 1-4 of
  ``sub_samp2500``, all rows, all 1000 covariates, raw outcome, s = 25, 3-fold CV; independent
  L0, z̄-MTL, β̄-MTL, SGL, GEL. Rows (method, task, feature): ``coefficient``, ``selected``,
  ``log_abs_coef`` (sign·log|β| as plotted), and per method ``support_union`` (features selected
  by any task) and ``support_jaccard`` (mean pairwise Jaccard of the task supports).
* ``mtl.fscv_rmse`` (Fig 6; ``Figure6/fscv_multiStudy_IHT_cf_MT.R``): one replicate per seed (the
  script's array index) per (n_k, col_sub): K = 4 random electrodes, n_k ∈ {100, 250, 1000},
  col_sub ∈ {1, 2, 5, 10}, s = 25, 5-fold CV; rows (n_k, col_sub, method) with ``rmse``,
  ``rmse_ratio`` (to independent L0, as the figures divide), ``support_size``.
* ``mtl.bcancer_rmse`` (Fig 7; ``Figure7/sparse_MT_breast_random.R`` and the figure script
  ``Sparse bCancer Multi-Task Figures 11-22-23.R``): per seed (1-180 in the scripts; study
  ``seed mod 18`` held out) and (K, p, s) ∈ {4, 6, 8} × {100, 500, 1000} × {5, 10, 25, 50},
  5-fold CV; rows with ``rmse``, ``rmse_ratio``, ``support_size``, ``support_diff`` (minus
  independent L0's, as the support figure).
* ``mtl.coef_density`` (Fig 8; ``sMTL_Paper/Figures/Density_plots/Density Plots/Beta Density
  Plots {FSCV,bCancer} 3-3-22.R``): per-task ridge (cv.glmnet's α = 0 in the scripts; closed
  form, 10-fold CV here), the L = 10 features of largest mean |β| across tasks; FSCV: every
  electrode, standardised per electrode; breast cancer: the first K = 8 outcome genes on all
  studies. Rows (data, rank, feature, task, coefficient).

Measured time: none (no data here); the expected minutes per job are the manifest's guesses.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from reprise.experiments import boolean, choice, experiment, integer, list_of, params as _params, real
from reprise.io import ReproError
from reprise.mtl import baselines as _bl
from reprise.mtl import experiments as _ex
from reprise.mtl._core import multitask_rmse
from reprise.mtl.data import MultiTaskData
from reprise.mtl.real import (breast_cancer_replicate, fscv_replicate, load_breast_cancer, load_fscv)

log = logging.getLogger(__name__)

FSCV_PATH = "data/raw/osf-smtl/fscv.zip"
BCANCER_PATH = "data/raw/osf-smtl/breast_cancer.zip"
REFERENCE = "l0_independent"   # the figures divide by the independent L0L2 fit ("oseL0")

_TUNING = dict(lambda1_grid=(_ex._RIDGE_FULL, list_of(real(0))), lambda2_grid=(_ex._BBAR_FULL, list_of(real(0))),
               lambda_z_grid=(_ex._LZ_FULL, list_of(real(0))),
               sgl_alpha_grid=(_ex._BASELINE_FULL["sgl_alpha_grid"], list_of(real(0, high=1))),
               n_lambda=(100, integer(2)), lambda_ratio=(1e-3, real(0, strict=True, high=1)),
               gel_tau=(_bl.GEL_TAU, real(0, strict=True)))


def _text(where: str, v) -> str:
    if not isinstance(v, str) or not v:
        raise ReproError(f"{where}={v!r} must be a non-empty path string")
    return v


def _methods(default: list[str]):
    return (default, list_of(choice(*_ex.ALL_METHODS)))


def _path(value, rule: str) -> Path:
    path = Path(str(value))
    if not path.exists():
        raise ReproError(f"the real data {path} is missing; run `snakemake {rule}` (full scale, needs the network) "
                         f"or set data_path to the CSV the official scripts read")
    return path


def _check_ref(methods: list[str], where: str) -> None:
    if REFERENCE not in methods:
        raise ReproError(f"{where}: methods must include {REFERENCE!r} (the figures' reference fit); add it")


def _fit_rows(data: MultiTaskData, methods: list[str], s: int, prm: dict, seed: int, **setting) -> list[dict]:
    rows, ref = [], None
    for method in methods:
        fit, secs = _ex._fit_method(method, data, s, prm, seed)
        rmse = multitask_rmse(data.Xs_test, data.ys_test, fit.coef_, fit.intercept_)
        size = float(fit.support_.sum(axis=1).mean())
        rows.append(dict(setting, method=method, rmse=rmse, support_size=size, time_s=secs, seed=seed,
                         **fit.tuned))
        if method == REFERENCE:
            ref = (rmse, size)
    for r in rows:
        r["rmse_ratio"] = r["rmse"] / ref[0] if ref[0] > 0 else np.nan
        r["support_diff"] = r["support_size"] - ref[1]
    return rows


def _support_stats(support: np.ndarray) -> dict:
    K = support.shape[0]
    jac = []
    for a in range(K):
        for b in range(a + 1, K):
            union = np.logical_or(support[a], support[b]).sum()
            jac.append(np.logical_and(support[a], support[b]).sum() / union if union else 1.0)
    return dict(support_union=int(support.any(axis=0).sum()), support_jaccard=float(np.mean(jac)) if jac else 1.0)


@experiment("mtl.fscv_supports")
def fscv_supports(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Fig 5: the supports of each method on four FSCV electrodes (module docstring)."""
    prm = _params("mtl.fscv_supports", params, dict(
        data_path=(FSCV_PATH, _text), electrodes=([1, 2, 3, 4], list_of(integer())), s=(25, integer(1)),
        n_folds=(3, integer(2)), methods=_methods(["l0_independent", "zbar_mtl", "bbar_mtl", "sgl", "gel"]),
        **_TUNING))
    table = load_fscv(_path(prm["data_path"], "smtl_fetch_fscv"))
    missing = [e for e in prm["electrodes"] if e not in table.tasks()]
    if missing:
        raise ReproError(f"mtl.fscv_supports: electrodes {missing} are not in {table.source} "
                         f"(it has {table.tasks()[:20]}); choose among those")
    Xs = [table.X[table.study == e] for e in prm["electrodes"]]
    ys = [table.Y[table.study == e, 0] for e in prm["electrodes"]]
    K, p = len(Xs), Xs[0].shape[1]
    data = MultiTaskData(Xs, ys, Xs, ys, np.full((K, p), np.nan), np.full(K, np.nan), np.full(K, np.nan),
                         dict(data="FSCV (osf.io/tb8fx)"))
    rows = []
    for method in prm["methods"]:
        fit, secs = _ex._fit_method(method, data, prm["s"], prm, seed)
        stats = _support_stats(fit.support_)
        for k in range(K):
            for j in range(p):
                b = float(fit.coef_[k, j])
                rows.append(dict(method=method, task=int(prm["electrodes"][k]), feature=j, coefficient=b,
                                 selected=bool(fit.support_[k, j]),
                                 log_abs_coef=float(np.sign(b) * np.log(abs(b))) if b != 0 else 0.0,
                                 time_s=secs, seed=seed, **stats, **fit.tuned))
    return pd.DataFrame(rows)


@experiment("mtl.fscv_rmse")
def fscv_rmse(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Fig 6: FSCV multi-task RMSE against n_k and the covariate subsampling (module docstring)."""
    prm = _params("mtl.fscv_rmse", params, dict(
        data_path=(FSCV_PATH, _text), K=(4, integer(1)), n_k_values=([100, 250, 1000], list_of(integer(2))),
        col_sub_values=([1, 2, 5, 10], list_of(integer(1))), s=(25, integer(1)), n_folds=(5, integer(2)),
        log_outcome=(True, boolean), methods=_methods(list(_ex.ALL_METHODS)), **_TUNING))
    _check_ref(prm["methods"], "mtl.fscv_rmse")
    table = load_fscv(_path(prm["data_path"], "smtl_fetch_fscv"))
    rows = []
    for n_k in prm["n_k_values"]:
        for col_sub in prm["col_sub_values"]:
            t0 = time.perf_counter()
            data = fscv_replicate(table, seed, K=prm["K"], n_k=n_k, col_sub=col_sub, log_outcome=prm["log_outcome"])
            s = min(prm["s"], data.Xs[0].shape[1] - 1)   # the script drops rho >= p
            rows += _fit_rows(data, prm["methods"], s, prm, seed, n_k=n_k, col_sub=col_sub,
                              p=data.Xs[0].shape[1], dataset="FSCV (osf.io/tb8fx)")
            log.info("fscv_rmse seed %d: n_k=%d col_sub=%d done in %.0f s", seed, n_k, col_sub,
                     time.perf_counter() - t0)
    return pd.DataFrame(rows)


@experiment("mtl.bcancer_rmse")
def bcancer_rmse(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Fig 7: breast-cancer multi-task RMSE and support size (module docstring)."""
    prm = _params("mtl.bcancer_rmse", params, dict(
        data_path=(BCANCER_PATH, _text), full_genes=(False, boolean), K_values=([4, 6, 8], list_of(integer(1))),
        p_values=([100, 500, 1000], list_of(integer(1))), s_values=([5, 10, 25, 50], list_of(integer(1))),
        n_folds=(5, integer(2)), methods=_methods(list(_ex.ALL_METHODS)), **_TUNING))
    _check_ref(prm["methods"], "mtl.bcancer_rmse")
    table = load_breast_cancer(_path(prm["data_path"], "smtl_fetch_breast_cancer"), full=prm["full_genes"])
    rows = []
    for K in prm["K_values"]:
        for p in prm["p_values"]:
            data = breast_cancer_replicate(table, seed, K=K, p=p)
            for s in prm["s_values"]:
                if s >= data.Xs[0].shape[1]:
                    continue
                t0 = time.perf_counter()
                rows += _fit_rows(data, prm["methods"], s, prm, seed, K=K, p=p, s_max=s,
                                  test_study=data.info["test_study"],
                                  dataset="breast cancer (curatedBreastData, osf.io/k6ynp)")
                log.info("bcancer_rmse seed %d: K=%d p=%d s=%d done in %.0f s", seed, K, p, s,
                         time.perf_counter() - t0)
    return pd.DataFrame(rows)


@experiment("mtl.coef_density")
def coef_density(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Fig 8: per-task ridge coefficients of the L most important features (module docstring)."""
    prm = _params("mtl.coef_density", params, dict(
        fscv_path=(FSCV_PATH, _text), bcancer_path=(BCANCER_PATH, _text), top=(10, integer(1)),
        bcancer_K=(8, integer(1)), n_folds=(10, integer(2)),
        lambda1_grid=(_ex._RIDGE_FULL, list_of(real(0, strict=True))), datasets=(["fscv", "breast_cancer"],
                                                                                 list_of(choice("fscv", "breast_cancer")))))
    rows = []
    for name in prm["datasets"]:
        if name == "fscv":
            table = load_fscv(_path(prm["fscv_path"], "smtl_fetch_fscv"))
            Xs, ys = table.per_study()
            tasks = table.tasks()
        else:
            table = load_breast_cancer(_path(prm["bcancer_path"], "smtl_fetch_breast_cancer"))
            K = min(prm["bcancer_K"], table.Y.shape[1])
            Xs, ys, tasks = [table.X] * K, [table.Y[:, k] for k in range(K)], table.outcomes[:K]
        res = _bl.ridge_cv(Xs, ys, prm["lambda1_grid"], n_folds=prm["n_folds"], seed=seed)
        # coefficients on the standardised scale (the scripts standardise X before cv.glmnet)
        sd = np.stack([X.std(axis=0) for X in Xs])
        B = res["coef"] * np.where(sd > 0, sd, 1.0)
        order = np.argsort(-np.abs(B).mean(axis=0), kind="stable")[:prm["top"]]
        for rank, j in enumerate(order, start=1):
            for k, t in enumerate(tasks):
                rows.append(dict(data=name, rank=rank, feature=table.features[j], task=str(t),
                                 coefficient=float(B[k, j]), lambda1=res["lam"], cv_rmse=res["cv_rmse"], seed=seed))
    return pd.DataFrame(rows)
