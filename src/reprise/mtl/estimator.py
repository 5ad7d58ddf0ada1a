"""scikit-learn-style estimators: :class:`SparseMultiTask` and its cross-validated tuner
:class:`SparseMultiTaskCV`."""
from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import ParameterGrid

from reprise.io import ReproError
from reprise.mtl import exact as _exact
from reprise.mtl import iht as _iht
from reprise.mtl._core import (TaskData, check_int, check_nonneg, check_s, check_tasks, multitask_rmse,
                               prepare)

SOLVERS = ("iht", "exact")
EXACT_METHODS = ("auto", "enumerate", "oa")
TUNABLE = ("s", "lambda1", "lambda2", "lambda_z")


class SparseMultiTask(BaseEstimator):
    """Sparse multi-task best-subset regression (Behdin, Loewinger et al., the sMTL estimator).

    Minimises, over per-task coefficients β_k, unpenalised intercepts and supports z_k with at
    most ``s`` features per task,

    ``Σ_k [ ‖y_k − X_kβ_k‖²/(2n_k) + (λ₁/2)‖β_k‖² + (λ₂/2)‖β_k − β̄‖² + (λ_z/2)‖z_k − z̄‖² ]``

    (specs/other-papers.md §6.2). ``lambda2`` shares coefficient values across tasks, ``lambda_z``
    shares supports without forcing the values to agree; ``common_support=True`` gives every task
    the same support (group best subset); ``lambda2 = lambda_z = 0`` is K independent ridge
    best-subset fits.

    Parameters
    ----------
    s : int, support size per task (1 <= s <= p).
    lambda1, lambda2, lambda_z : float >= 0, ridge, β̄ and z̄ penalties.
    common_support : bool, one support shared by all tasks (the package's ``commonSupp``).
    solver : ``"iht"`` (the approximate algorithm, §6.3) or ``"exact"``.
    exact_method : ``"auto"`` (enumeration when within ``max_enumeration``, else OA),
        ``"enumerate"`` or ``"oa"`` (outer approximation on SCIP; needs pyscipopt).
    scale : bool, standardise each task's columns before fitting (the package's default);
        coefficients are returned on the original scale either way. The penalties act on the
        standardised coefficients, and ``objective_`` is the objective of that standardised
        problem; with ``scale=False`` it equals :func:`reprise.mtl.objective` on the data as given.
    max_iter : int, IHT iteration budget (package default 10000).
    local_search_iter : int, local-search passes (package ``LocSrch_maxIter`` = 50; 0 = none).
    warm_start : bool, fit the package's warm-start model (support 3s, ridge only) first.
    tol, step : IHT stopping tolerance (relative objective change) and step as a fraction of 1/L.
    max_enumeration : int or None, limit on enumerated support combinations (None: the module's).
    big_m : float or None, the OA big-M bound on |β| (standardised scale when ``scale``); None:
        1.5 × the largest |β| of the IHT solution (the multiplier of the paper's scripts).
    oa_gap, oa_max_iter, oa_time_limit, master_time_limit : OA stop rules (0.05, 100, 180 s, 60 s).

    Attributes
    ----------
    coef_ (K, p), intercept_ (K,), support_ (K, p) bool, objective_, objective_trace_ (IHT),
    n_iter_, n_swaps_, solver_ (``iht``, ``enumerate`` or ``oa``), lower_bound_ and gap_ (exact
    solvers; the enumeration's gap is 0), fit_time_, n_tasks_, n_features_in_.
    """

    def __init__(self, s=5, lambda1=0.0, lambda2=0.0, lambda_z=0.0, common_support=False, solver="iht",
                 exact_method="auto", scale=True, max_iter=_iht.MAX_ITER, local_search_iter=_iht.LOCAL_SEARCH_ITER,
                 warm_start=True, tol=_iht.TOL, step=_iht.STEP, max_enumeration=None, big_m=None,
                 oa_gap=_exact.OA_GAP, oa_max_iter=_exact.OA_MAX_ITER, oa_time_limit=_exact.OA_TIME_LIMIT,
                 master_time_limit=_exact.OA_MASTER_TIME_LIMIT):
        self.s = s
        self.lambda1 = lambda1
        self.lambda2 = lambda2
        self.lambda_z = lambda_z
        self.common_support = common_support
        self.solver = solver
        self.exact_method = exact_method
        self.scale = scale
        self.max_iter = max_iter
        self.local_search_iter = local_search_iter
        self.warm_start = warm_start
        self.tol = tol
        self.step = step
        self.max_enumeration = max_enumeration
        self.big_m = big_m
        self.oa_gap = oa_gap
        self.oa_max_iter = oa_max_iter
        self.oa_time_limit = oa_time_limit
        self.master_time_limit = master_time_limit

    # ------------------------------------------------------------------ checks
    def _checked(self, p: int) -> dict:
        if self.solver not in SOLVERS:
            raise ReproError(f"solver={self.solver!r} is unknown; use one of {', '.join(SOLVERS)}")
        if self.exact_method not in EXACT_METHODS:
            raise ReproError(f"exact_method={self.exact_method!r} is unknown; use one of {', '.join(EXACT_METHODS)}")
        for name in ("common_support", "scale", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ReproError(f"{name}={getattr(self, name)!r} must be True or False")
        step = check_nonneg("step", self.step)
        if not 0 < step <= 1:
            raise ReproError(f"step={self.step!r} must be in (0, 1] (a fraction of 1/L; the package uses 0.5)")
        tol = check_nonneg("tol", self.tol)
        if self.max_enumeration is not None:
            check_int("max_enumeration", self.max_enumeration, 1)
        if self.big_m is not None and check_nonneg("big_m", self.big_m) == 0:
            raise ReproError("big_m must be > 0 (or None for 1.5 × the largest |β| of the IHT fit)")
        return dict(s=check_s(self.s, p),
                    pen=_iht.Penalties(check_nonneg("lambda1", self.lambda1), check_nonneg("lambda2", self.lambda2),
                                       check_nonneg("lambda_z", self.lambda_z)),
                    max_iter=check_int("max_iter", self.max_iter, 1),
                    local_search_iter=check_int("local_search_iter", self.local_search_iter, 0),
                    tol=tol, step=step,
                    oa_gap=check_nonneg("oa_gap", self.oa_gap),
                    oa_max_iter=check_int("oa_max_iter", self.oa_max_iter, 1),
                    oa_time_limit=check_nonneg("oa_time_limit", self.oa_time_limit),
                    master_time_limit=check_nonneg("master_time_limit", self.master_time_limit))

    # ------------------------------------------------------------------ fitting
    def fit(self, Xs, ys, init_coef=None):
        """Fit on one (X_k, y_k) pair per task. ``init_coef`` (K, p), optional, starts the IHT
        from those coefficients (original scale) instead of the warm-start model."""
        t0 = time.perf_counter()
        Xs, ys = check_tasks(Xs, ys)
        K, p = len(Xs), Xs[0].shape[1]
        opt = self._checked(p)
        data = prepare(Xs, ys, bool(self.scale))
        B0 = None
        if init_coef is not None:
            init_coef = np.asarray(init_coef, dtype=float)
            if init_coef.shape != (K, p) or not np.all(np.isfinite(init_coef)):
                raise ReproError(f"init_coef must be a finite (K, p) = ({K}, {p}) array")
            B0 = data.to_internal(init_coef)
        fit = self._solve(data, opt, B0)
        self._store(data, fit, K, p, time.perf_counter() - t0)
        return self

    def _solve(self, data: TaskData, opt: dict, B0=None) -> _iht.Fit:
        s, pen, common = opt["s"], opt["pen"], bool(self.common_support)
        if self.solver == "exact" and self.exact_method in ("auto", "enumerate"):
            n = _exact.n_combinations(data.p, data.K, s, pen, common)
            limit = self.max_enumeration or _exact.enumeration_limit(pen, common)
            if self.exact_method == "enumerate" or n <= limit:
                return _exact.enumerate_supports(data, s, pen, common, max_combinations=limit)
        if B0 is None and self.warm_start:
            B0 = _iht.warm_start(data, s, pen.lambda1, common, tol=opt["tol"], step=opt["step"])
        fit = _iht.solve(data, s, pen, common, B0, max_iter=opt["max_iter"], tol=opt["tol"], step=opt["step"],
                         local_search_iter=opt["local_search_iter"])
        if self.solver == "iht":
            return fit
        big_m = self.big_m if self.big_m is not None else _exact.BIG_M_MULTIPLIER * max(float(np.abs(fit.B).max()), 1e-8)
        oa = _exact.outer_approximation(data, s, pen, common, fit.Z, big_m=float(big_m), gap_tol=opt["oa_gap"],
                                        max_iter=opt["oa_max_iter"], time_limit=opt["oa_time_limit"],
                                        master_time_limit=opt["master_time_limit"])
        if fit.objective < oa.objective:  # OA's box can exclude the IHT point; never return worse
            oa.B, oa.Z, oa.objective = fit.B, fit.Z, fit.objective
        return oa

    def _store(self, data: TaskData, fit: _iht.Fit, K: int, p: int, elapsed: float) -> None:
        self.coef_, self.intercept_ = data.to_original(fit.B)
        self.support_ = np.asarray(fit.Z, dtype=bool)
        self.objective_ = float(fit.objective)
        self.objective_trace_ = np.asarray(fit.trace, dtype=float)
        self.n_iter_ = int(fit.n_iter)
        self.n_swaps_ = int(fit.n_swaps)
        self.solver_ = fit.method
        self.lower_bound_ = fit.lower_bound
        self.gap_ = fit.gap
        self.fit_time_ = elapsed
        self.n_tasks_, self.n_features_in_ = K, p

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("this SparseMultiTask is not fitted yet; call fit(Xs, ys) first")

    def predict(self, Xs) -> list[np.ndarray]:
        """One prediction vector per task."""
        self._check_fitted()
        dummy = [np.zeros(np.shape(X)[0]) for X in Xs] if isinstance(Xs, (list, tuple)) else []
        Xs, _ = check_tasks(Xs, dummy)
        if len(Xs) != self.n_tasks_ or Xs[0].shape[1] != self.n_features_in_:
            raise ReproError(f"Xs must hold {self.n_tasks_} tasks with {self.n_features_in_} features each, "
                             f"as in fit")
        return [X @ b + b0 for X, b, b0 in zip(Xs, self.coef_, self.intercept_)]

    def score(self, Xs, ys) -> float:
        """Minus the multi-task RMSE (higher is better, as scikit-learn scorers expect)."""
        self._check_fitted()
        return -multitask_rmse(Xs, ys, self.coef_, self.intercept_)


# --------------------------------------------------------------------------- cross-validation

def _expand_grid(param_grid) -> list[dict]:
    if param_grid is None:
        raise ReproError("param_grid is required: a dict (or list of dicts) of lists over s, lambda1, lambda2, "
                         "lambda_z, e.g. {'lambda1': [1e-3, 1e-1], 'lambda_z': [0, 0.1]}")
    grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
    for g in grids:
        if not isinstance(g, dict):
            raise ReproError(f"param_grid entries must be dicts of lists, got {type(g).__name__}")
        for key, values in g.items():
            if key not in TUNABLE:
                raise ReproError(f"param_grid key {key!r} cannot be tuned; use {', '.join(TUNABLE)}")
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
                raise ReproError(f"param_grid[{key!r}] must be a list of values, got {values!r}")
            if len(values) == 0:
                raise ReproError(f"param_grid is empty: param_grid[{key!r}] has no values; give at least one, "
                                 f"e.g. {{{key!r}: [...]}}")
    points = [pt for pt in ParameterGrid(grids) if pt] if grids else []
    if not points:
        raise ReproError("param_grid is empty (no values to try); give at least one value per key, "
                         "e.g. {'lambda1': [1e-3]}")
    return points


def task_folds(ns: list[int], n_folds: int, seed) -> list[list[np.ndarray]]:
    """K-fold split within each task: folds[f][k] are the held-out rows of task k in fold f."""
    rng = np.random.default_rng(seed)
    per_task = [np.array_split(rng.permutation(n), n_folds) for n in ns]
    return [[per_task[k][f] for k in range(len(ns))] for f in range(n_folds)]


class SparseMultiTaskCV(BaseEstimator):
    """K-fold cross-validated tuning of a :class:`SparseMultiTask` over ``param_grid`` (keys s,
    lambda1, lambda2, lambda_z), scored by the multi-task RMSE on the held-out rows (the
    package's ``cv.smtl`` with ``multiTaskRmse``). Each task's rows are split into ``n_folds``
    folds; the IHT fits of one fold follow the grid as a warm-started path. The best point is
    refitted on all rows.

    Attributes: best_params_, best_rmse_, best_index_, cv_results_ (dict of arrays, as
    scikit-learn's), best_estimator_, and coef_, intercept_, support_, objective_ of it.
    """

    def __init__(self, estimator=None, param_grid=None, n_folds=5, random_state=None, refit=True):
        self.estimator = estimator
        self.param_grid = param_grid
        self.n_folds = n_folds
        self.random_state = random_state
        self.refit = refit

    def fit(self, Xs, ys):
        Xs, ys = check_tasks(Xs, ys)
        base = SparseMultiTask() if self.estimator is None else self.estimator
        if not isinstance(base, SparseMultiTask):
            raise ReproError(f"estimator must be a SparseMultiTask, got {type(base).__name__}")
        points = _expand_grid(self.param_grid)
        ns = [X.shape[0] for X in Xs]
        n_folds = check_int("n_folds", self.n_folds, 2, min(ns),
                            hint=f" (every task needs at least one row per fold; the smallest task has {min(ns)})")
        full = [{**{k: base.get_params()[k] for k in TUNABLE}, **pt} for pt in points]
        for pt in full:
            clone(base).set_params(**pt)._checked(Xs[0].shape[1])
        folds = task_folds(ns, n_folds, self.random_state)
        scores = np.zeros((n_folds, len(full)))
        for f, held in enumerate(folds):
            keep = [np.setdiff1d(np.arange(n), h) for n, h in zip(ns, held)]
            Xtr = [X[i] for X, i in zip(Xs, keep)]
            ytr = [y[i] for y, i in zip(ys, keep)]
            Xte = [X[h] for X, h in zip(Xs, held)]
            yte = [y[h] for y, h in zip(ys, held)]
            for i, est in enumerate(self._fit_points(base, full, Xtr, ytr)):
                scores[f, i] = multitask_rmse(Xte, yte, est[0], est[1])
        mean, std = scores.mean(axis=0), scores.std(axis=0)
        self.best_index_ = int(np.argmin(mean))
        self.best_params_ = dict(points[self.best_index_])
        self.best_rmse_ = float(mean[self.best_index_])
        self.cv_results_ = {"params": points, "mean_test_rmse": mean, "std_test_rmse": std,
                            "rank_test_rmse": np.argsort(np.argsort(mean, kind="stable"), kind="stable") + 1,
                            **{f"split{f}_test_rmse": scores[f] for f in range(n_folds)}}
        if self.refit:
            self.best_estimator_ = clone(base).set_params(**self.best_params_).fit(Xs, ys)
            for attr in ("coef_", "intercept_", "support_", "objective_"):
                setattr(self, attr, getattr(self.best_estimator_, attr))
        return self

    @staticmethod
    def _fit_points(base: SparseMultiTask, full: list[dict], Xtr, ytr):
        """(coef, intercept) for every grid point on one fold's training rows."""
        if base.solver != "iht":
            out = []
            for pt in full:
                est = clone(base).set_params(**pt).fit(Xtr, ytr)
                out.append((est.coef_, est.intercept_))
            return out
        data = prepare(Xtr, ytr, bool(base.scale))
        opt = base._checked(data.p)
        grid = [{"s": check_s(pt["s"], data.p), "lambda1": float(pt["lambda1"]), "lambda2": float(pt["lambda2"]),
                 "lambda_z": float(pt["lambda_z"])} for pt in full]
        fits = _iht.fit_path(data, grid, bool(base.common_support), use_warm_start=bool(base.warm_start),
                             max_iter=opt["max_iter"], tol=opt["tol"], step=opt["step"],
                             local_search_iter=opt["local_search_iter"])
        return [data.to_original(fit.B) for fit in fits]

    def predict(self, Xs):
        if not hasattr(self, "best_estimator_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("this SparseMultiTaskCV is not fitted (or refit=False); call fit first")
        return self.best_estimator_.predict(Xs)

    def score(self, Xs, ys) -> float:
        """Minus the multi-task RMSE of the refitted best estimator."""
        if not hasattr(self, "best_estimator_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("this SparseMultiTaskCV is not fitted (or refit=False); call fit first")
        return self.best_estimator_.score(Xs, ys)
