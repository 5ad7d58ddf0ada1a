"""Sparse multi-task best-subset regression (the sMTL paper, specs/other-papers.md §6).

* :class:`SparseMultiTask` — the estimator (``solver`` ``iht`` or ``exact``), scikit-learn style;
  :class:`SparseMultiTaskCV` — K-fold tuning over a grid by multi-task RMSE.
* :func:`objective` — the objective of §6.2 that every solver and test uses;
  :func:`multitask_rmse` — the package's multi-task RMSE.
* :mod:`reprise.mtl.iht` — the approximate algorithm (IHT with active sets, local search, paths);
  :mod:`reprise.mtl.exact` — enumeration and outer approximation on SCIP.
* :mod:`reprise.mtl.data` — simulation designs, the FSCV-like substitute, OSF downloads;
  :mod:`reprise.mtl.real` — :func:`load_fscv`, :func:`load_breast_cancer` (the CSVs the official
  scripts read, or the OSF zips) and the scripts' replicate protocols.
* :mod:`reprise.mtl.baselines` — :class:`SparseGroupLasso`, :class:`GroupExponentialLasso`,
  closed-form ridge, and the scripts' path tuning under a support cap.
* :mod:`reprise.mtl.experiments` — the registered experiments ``mtl.fig1``, ``mtl.sim_q``,
  ``mtl.tab3``, ``mtl.real_substitute``; :mod:`reprise.mtl.real_experiments` — the full-scale
  real-data ones ``mtl.fscv_supports``, ``mtl.fscv_rmse``, ``mtl.bcancer_rmse``, ``mtl.coef_density``.
"""
from reprise.mtl._core import max_zbar_penalty, multitask_rmse, objective
from reprise.mtl.data import (MultiTaskData, fetch_breast_cancer, fetch_fscv, fscv_like, simulate_demo,
                              simulate_fig1, simulate_multitask)
from reprise.mtl.estimator import SparseMultiTask, SparseMultiTaskCV
from reprise.mtl.baselines import GroupExponentialLasso, SparseGroupLasso
from reprise.mtl.real import load_breast_cancer, load_fscv

__all__ = ["SparseMultiTask", "SparseMultiTaskCV", "objective", "multitask_rmse", "max_zbar_penalty",
           "MultiTaskData", "simulate_multitask", "simulate_demo", "simulate_fig1", "fscv_like", "fetch_fscv",
           "fetch_breast_cancer", "load_fscv", "load_breast_cancer", "SparseGroupLasso", "GroupExponentialLasso"]
