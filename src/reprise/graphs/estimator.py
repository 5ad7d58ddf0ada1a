"""``L0GraphicalModel``: the GraphL0BnB estimator in scikit-learn's conventions."""
from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator

from reprise.io import ReproError

from .bnb import BRANCHINGS, RELAXATIONS, SEARCHES, branch_and_bound
from .heuristics import CD_MAX_ITR, HEURISTICS, KKT_MAX_ITR, REL_TOL, SWAP_MAX_ITR, solve_heuristic
from .problem import GraphProblem, check_data, pseudo_likelihood

SOLVERS = HEURISTICS + ("bnb",)


class L0GraphicalModel(BaseEstimator):
    """Sparse precision matrix by the ℓ0-ℓ2 penalised pseudo-likelihood (GraphL0BnB, Behdin, Chen &
    Mazumder; specs/other-papers.md §2):

    ``min_Θ Σ_i [−log θ_ii + (1/θ_ii)‖Yθ_{·i}‖²] + λ0 #{i<j: θ_ij≠0} + λ2 Σ_{i<j} θ_ij²``,
    ``|θ_ij| ≤ M``, ``Y = (X − x̄)/√n``.

    Parameters
    ----------
    lambda0, lambda2 : the ℓ0 and ℓ2 penalties (the reference demo uses 0.05 and 0.05).
    M : the bound on ``|θ_ij|`` (``None``: no bound; branch-and-bound then needs ``lambda2 > 0``).
    solver : ``"cd"``, ``"cdpsi"`` (default: CD + partial swap inspection), ``"ascd"``, ``"ascdpsi"``
        (active-set variants) or ``"bnb"`` (exact branch-and-bound warm-started by ``cdpsi``).
    time_limit, gap_tol : branch-and-bound's stopping rule (seconds; relative gap
        ``(UB − LB)/|UB|``). The reference code's defaults are 3600 s and 1e-2.
    search, dfs_levels : branch-and-bound's node order (``"bfs"``, ``"dfs"``, ``"best"``) and the
        number of levels dived depth-first first.
    relaxation, branching : branch-and-bound's node relaxation (``"perspective"``, the reference
        one, or ``"strengthened"``: part of the loss's curvature moved into the indicators' hull,
        much tighter bounds, see ``reprise.graphs.strengthened``) and branching rule
        (``"maxfrac"``, the reference one, ``"pseudocost"`` or ``"strong"``).
    rel_tol, cd_max_itr, swap_max_itr, kkt_max_itr, int_tol : the solvers' tolerances (reference
        defaults: 1e-4; ``None`` = 100 sweeps for the heuristics and 1000 per node relaxation inside
        branch-and-bound; 10 swap passes; 100 KKT rounds; 1e-4).
    assume_centered : do not subtract the mean.

    Attributes
    ----------
    precision_ : the estimate Θ (p × p, symmetric).
    objective_ : its objective (``reprise.graphs.objective`` on the training data).
    lower_bound_, gap_ : branch-and-bound's certified lower bound and relative gap (``nan`` for the
        heuristics).
    n_nodes_ : branch-and-bound nodes solved (0 for the heuristics).
    status_ : ``"heuristic"``, or branch-and-bound's ``"optimal"`` / ``"time_limit"`` / ...
    node_log_ : branch-and-bound's per-node rows (empty for the heuristics).
    location_ : the subtracted mean.  n_features_in_ : p.
    """

    def __init__(self, lambda0: float = 0.05, lambda2: float = 0.05, M: float | None = None, solver: str = "cdpsi",
                 time_limit: float = 3600.0, gap_tol: float = 1e-2, search: str = "bfs", dfs_levels: int = 0,
                 relaxation: str = "perspective", branching: str = "maxfrac",
                 rel_tol: float = REL_TOL, cd_max_itr: int | None = None, swap_max_itr: int = SWAP_MAX_ITR,
                 kkt_max_itr: int = KKT_MAX_ITR, int_tol: float = 1e-4, assume_centered: bool = False):
        self.lambda0 = lambda0
        self.lambda2 = lambda2
        self.M = M
        self.solver = solver
        self.time_limit = time_limit
        self.gap_tol = gap_tol
        self.search = search
        self.dfs_levels = dfs_levels
        self.relaxation = relaxation
        self.branching = branching
        self.rel_tol = rel_tol
        self.cd_max_itr = cd_max_itr
        self.swap_max_itr = swap_max_itr
        self.kkt_max_itr = kkt_max_itr
        self.int_tol = int_tol
        self.assume_centered = assume_centered

    def _check_params(self) -> None:
        if self.solver not in SOLVERS:
            raise ReproError(f"solver={self.solver!r} is unknown; use one of {', '.join(SOLVERS)}")
        if self.relaxation not in RELAXATIONS:
            raise ReproError(f"relaxation={self.relaxation!r} is unknown; use one of {', '.join(RELAXATIONS)}")
        if self.branching not in BRANCHINGS:
            raise ReproError(f"branching={self.branching!r} is unknown; use one of {', '.join(BRANCHINGS)}")
        if self.search not in SEARCHES:
            raise ReproError(f"search={self.search!r} is unknown; use one of {', '.join(SEARCHES)}")
        if not (isinstance(self.time_limit, (int, float)) and self.time_limit > 0):
            raise ReproError(f"time_limit={self.time_limit!r} must be a number of seconds > 0")
        if not (isinstance(self.gap_tol, (int, float)) and self.gap_tol >= 0):
            raise ReproError(f"gap_tol={self.gap_tol!r} must be a number ≥ 0")

    def fit(self, X, y=None):
        """Estimate Θ from ``X`` (n × p); ``y`` is ignored. Returns ``self``."""
        self._check_params()
        X = check_data(X)
        prob = GraphProblem.from_data(X, self.lambda0, self.lambda2, self.M, assume_centered=self.assume_centered)
        if self.solver == "bnb":
            res = branch_and_bound(prob, gap_tol=self.gap_tol, time_limit=self.time_limit, search=self.search,
                                   dfs_levels=self.dfs_levels, relaxation=self.relaxation,
                                   branching=self.branching, int_tol=self.int_tol, rel_tol=self.rel_tol,
                                   cd_max_itr=1000 if self.cd_max_itr is None else self.cd_max_itr,
                                   kkt_max_itr=self.kkt_max_itr,
                                   swap_max_itr=self.swap_max_itr)
            self.precision_, self.objective_ = res.Theta, res.objective
            self.lower_bound_, self.gap_, self.n_nodes_ = res.lower_bound, res.gap, res.n_nodes
            self.status_, self.node_log_, self.fit_seconds_ = res.status, res.log, res.seconds
        else:
            res = solve_heuristic(prob, self.solver, rel_tol=self.rel_tol,
                                  cd_max_itr=CD_MAX_ITR if self.cd_max_itr is None else self.cd_max_itr,
                                  swap_max_itr=self.swap_max_itr, kkt_max_itr=self.kkt_max_itr)
            self.precision_, self.objective_ = res.Theta, res.objective
            self.lower_bound_, self.gap_, self.n_nodes_ = math.nan, math.nan, 0
            self.status_, self.node_log_, self.fit_seconds_ = "heuristic", [], res.seconds
            self.objective_trace_ = res.trace
        self.location_ = prob.location
        self.n_features_in_ = X.shape[1]
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "precision_"):
            raise ReproError("this L0GraphicalModel is not fitted yet; call fit(X) first")

    @property
    def support_(self) -> np.ndarray:
        """Boolean off-diagonal support of ``precision_`` (upper and lower triangle)."""
        self._fitted()
        s = self.precision_ != 0
        np.fill_diagonal(s, False)
        return s

    @property
    def n_edges_(self) -> int:
        return int(np.count_nonzero(np.triu(self.support_, 1)))

    def score(self, X, y=None) -> float:
        """Held-out pseudo-log-likelihood of ``X`` at ``precision_`` (centred by ``location_``);
        higher is better, so ``GridSearchCV`` can tune ``lambda0`` with it."""
        self._fitted()
        X = check_data(X)
        if X.shape[1] != self.n_features_in_:
            raise ReproError(f"X has {X.shape[1]} features; the model was fitted on {self.n_features_in_}")
        return pseudo_likelihood(self.precision_, X, self.location_)
