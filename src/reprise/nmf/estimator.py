"""``ArchetypalNMF``: sparse NMF with archetypal regularisation as a scikit-learn estimator
(specs/other-papers.md §7.2-§7.3; DESIGN.md "Interfaces of the other papers")."""
from __future__ import annotations

import numbers
import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from reprise.nmf.core import (NMFInputError, check_budget, check_data, check_int, check_lam, continuation, hull_weights,
                              lambda_grid, objective)
from reprise.nmf.local_search import local_search as run_local_search
from reprise.nmf.mip import mip_init
from reprise.sparsity import hard_threshold, mip_backend

INITS = ("random", "mip")


class ArchetypalNMF(TransformerMixin, BaseEstimator):
    """Sparse nonnegative matrix factorisation ``X ≈ W H`` with archetypal regularisation:

        min ‖X − W H‖_F² + lam · ‖H − W̃ X‖_F²
        s.t. H ≥ 0, ‖H‖₀ ≤ l0_budget, rows of W in Δ_k, rows of W̃ in Δ_m.

    Rows of ``X`` (m × n, nonnegative) are data points; the k rows of H are sparse archetypes and
    each data point is a convex combination of them. ``lam = 0`` is sparse simplex-constrained NMF;
    large ``lam`` approaches sparse archetypal analysis.

    Parameters
    ----------
    n_components : int, the number of archetypes k (≤ the number of data points).
    l0_budget : int or None, the most nonzeros of H, in (0, k·n]; None means dense (k·n).
    lam : float ≥ 0, the weight of the archetypal term (the demo's target is 1).
    init : "random" (k distinct random data points, hard-thresholded to the budget) or "mip"
        (outer approximation over supports, HiGHS master; see ``reprise.nmf.mip``).
    local_search : bool, run the support local search after the proximal method.
    continuation : bool, solve along a log grid of λ from ``lambda_max`` down to ``lam``
        (``n_lambdas`` points, warm starts); otherwise solve at ``lam`` only. ``lam = 0`` is always
        solved directly (there is no log grid down to 0).
    max_iter, tol : per stage of the block proximal gradient method (stop when an iteration lowers
        the objective by less than ``tol · f₀``). Demo: 150 and 1e-4.
    n_lambdas, lambda_max : the continuation grid (demo: 8 and 30).
    ls_size, ls_max_iter : the local search's ``Size`` and rounds (demo: 2 and 4).
    mip_big_m : upper bound M on the entries of H in the MIP; None uses ``X.max()`` (which keeps
        every archetype inside the data hull feasible); the demo uses 1.
    mip_time_limit : seconds for the whole outer approximation (demo: 480).
    mip_max_cuts, mip_gap : stop after this many cuts or at this relative gap (demo: 10, 0.05).
    mip_master_gap : HiGHS's relative gap for each master MILP (its dual bound is what counts).
    mip_backend : the MILP back-end; only "highs" (``scipy.optimize.milp``).
    random_state : int, numpy Generator or None, for the random initialisation and the local search.

    Attributes
    ----------
    components_ : (k, n) H, the archetypes.       weights_ : (m, k) W, rows in the simplex.
    weights_tilde_ : (k, m) W̃, rows in the simplex (archetype i's hull point is ``W̃[i] @ X``).
    objective_ : the final objective at ``lam``.   reconstruction_err_ : ``‖X − W H‖_F``.
    objective_trace_ : objective at ``lam`` from the start of the last continuation stage through
        each of its iterations and then each local-search round (non-increasing).
    stage_traces_ : list of per-stage traces (each at its own λ).   lambda_path_ : the λ of each stage.
    n_iter_ : proximal iterations over all stages.   init_objective_ : objective at ``lam`` of the initial point.
    objective_continuation_ : objective before the local search.   support_changes_ : accepted
        local-search moves that changed the support (0 without local search).
    mip_ : the ``MIPResult`` (gap, cuts, seconds, stop reason) with ``init="mip"``, else None.
    timings_ : seconds spent in "init", "prox" and "local_search".
    """

    def __init__(self, n_components=2, l0_budget=None, lam=1.0, init="random", local_search=False, continuation=True,
                 max_iter=150, tol=1e-4, n_lambdas=8, lambda_max=30.0, ls_size=2, ls_max_iter=4, mip_big_m=None,
                 mip_time_limit=480.0, mip_max_cuts=10, mip_gap=0.05, mip_master_gap=1e-2, mip_backend="highs",
                 random_state=None):
        self.n_components = n_components
        self.l0_budget = l0_budget
        self.lam = lam
        self.init = init
        self.local_search = local_search
        self.continuation = continuation
        self.max_iter = max_iter
        self.tol = tol
        self.n_lambdas = n_lambdas
        self.lambda_max = lambda_max
        self.ls_size = ls_size
        self.ls_max_iter = ls_max_iter
        self.mip_big_m = mip_big_m
        self.mip_time_limit = mip_time_limit
        self.mip_max_cuts = mip_max_cuts
        self.mip_gap = mip_gap
        self.mip_master_gap = mip_master_gap
        self.mip_backend = mip_backend
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    # ------------------------------------------------------------------ validation

    def _validated(self, X):
        X = check_data(X)
        m, n = X.shape
        k = check_int(self.n_components, "n_components", 1, m,
                      hint=f"the archetypes are convex combinations of the m={m} data points; use at most m")
        ell = check_budget(self.l0_budget, k, n)
        lam = check_lam(self.lam)
        if self.init not in INITS:
            raise NMFInputError(f"init={self.init!r} is unknown; use one of {', '.join(INITS)}")
        check_int(self.max_iter, "max_iter", 1, hint="iterations of the block proximal method per stage")
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) or not self.tol >= 0:
            raise NMFInputError(f"tol={self.tol!r} must be a number ≥ 0 (relative decrease; the demo uses 1e-4)")
        if self.local_search:
            check_int(self.ls_size, "ls_size", 1, hint="candidate entries per local-search round (demo: 2)")
            check_int(self.ls_max_iter, "ls_max_iter", 0, hint="local-search rounds (demo: 4)")
        if self.init == "mip":
            mip_backend(self.mip_backend)
            check_int(self.mip_max_cuts, "mip_max_cuts", 1, hint="the demo uses 10")
            if isinstance(self.mip_gap, bool) or not isinstance(self.mip_gap, numbers.Real) or not self.mip_gap >= 0:
                raise NMFInputError(f"mip_gap={self.mip_gap!r} must be a relative gap ≥ 0 (the demo uses 0.05)")
            if isinstance(self.mip_master_gap, bool) or not isinstance(self.mip_master_gap, numbers.Real) \
                    or not self.mip_master_gap >= 0:
                raise NMFInputError(f"mip_master_gap={self.mip_master_gap!r} must be a relative gap ≥ 0 "
                                    f"(default 0.01)")
        grid = lambda_grid(lam, self.lambda_max, self.n_lambdas) if self.continuation else [lam]
        return X, k, ell, lam, grid

    # ------------------------------------------------------------------ fitting

    def _initial_point(self, X, k, ell, rng):
        if self.init == "mip":
            big_m = float(X.max()) if self.mip_big_m is None else self.mip_big_m
            res = mip_init(X, k, ell, big_m=big_m, time_limit=self.mip_time_limit, max_cuts=self.mip_max_cuts,
                           min_gap=self.mip_gap, backend=self.mip_backend, master_gap=self.mip_master_gap)
            return res.H, res.W, res.W_tilde, res
        m = X.shape[0]
        rows = rng.choice(m, size=k, replace=False)
        W_tilde = np.zeros((k, m))
        W_tilde[np.arange(k), rows] = 1.0
        H = hard_threshold(X[rows], ell)
        return H, hull_weights(X, H), W_tilde, None

    def fit(self, X, y=None):
        """Fit the factorisation to ``X`` (m × n, nonnegative); ``y`` is ignored. Returns self."""
        X, k, ell, lam, grid = self._validated(X)
        rng = np.random.default_rng(self.random_state)
        timings = {}
        t0 = time.perf_counter()
        H, W, W_tilde, self.mip_ = self._initial_point(X, k, ell, rng)
        timings["init"] = time.perf_counter() - t0
        self.init_objective_ = objective(X, W, H, W_tilde, lam)

        t0 = time.perf_counter()
        path = continuation(X, H, W, W_tilde, grid, ell, self.max_iter, float(self.tol))
        timings["prox"] = time.perf_counter() - t0
        H, W, W_tilde = path.H, path.W, path.W_tilde
        self.lambda_path_ = list(path.lambdas)
        self.stage_traces_ = [list(s.trace) for s in path.stages]
        self.n_iter_ = int(sum(s.n_iter for s in path.stages))
        trace = list(path.trace)
        self.objective_continuation_ = trace[-1]

        self.support_changes_ = 0
        if self.local_search and self.ls_max_iter > 0:
            t0 = time.perf_counter()
            ls = run_local_search(X, H, W, W_tilde, lam, size=int(self.ls_size), max_iter=int(self.ls_max_iter),
                                  rng=rng)
            timings["local_search"] = time.perf_counter() - t0
            H, W, W_tilde = ls.H, ls.W, ls.W_tilde
            trace += ls.trace[1:]
            self.support_changes_ = ls.support_changes

        self.components_, self.weights_, self.weights_tilde_ = H, W, W_tilde
        self.objective_trace_ = trace
        self.objective_ = objective(X, W, H, W_tilde, lam)
        self.reconstruction_err_ = float(np.linalg.norm(X - W @ H))
        self.n_features_in_ = X.shape[1]
        self.n_components_ = k
        self.timings_ = timings
        return self

    def fit_transform(self, X, y=None):
        """Fit and return W (the simplex weights of the training points)."""
        return self.fit(X).weights_

    def transform(self, X):
        """Simplex weights of new points: each row of X projected onto the hull of the archetypes."""
        check_is_fitted(self, "components_")
        X = check_data(X)
        if X.shape[1] != self.n_features_in_:
            raise NMFInputError(f"X has {X.shape[1]} features, but ArchetypalNMF is expecting {self.n_features_in_} "
                                f"features as input (those it was fitted on); pass data with the same features")
        return hull_weights(X, self.components_)

    def inverse_transform(self, W):
        """Data from simplex weights: ``W @ components_``."""
        check_is_fitted(self, "components_")
        return np.asarray(W, dtype=float) @ self.components_

    @property
    def sparsity_(self) -> float:
        """Fraction of zero entries of H."""
        check_is_fitted(self, "components_")
        return float(np.mean(self.components_ == 0))
