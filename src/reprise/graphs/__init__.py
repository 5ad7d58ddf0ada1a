"""GraphL0BnB (Behdin, Chen & Mazumder, arXiv 2307.09366): sparse Gaussian graphical models by
ℓ0-ℓ2 penalised pseudo-likelihood, approximate and exact solvers (specs/other-papers.md §2).

    from reprise.graphs import L0GraphicalModel, objective, generate_synthetic
    X, Sigma, Theta = generate_synthetic(200, 20, "toeplitz", rng=0, half_bandwidth=3)
    est = L0GraphicalModel(lambda0=0.05, lambda2=0.05, M=abs(Theta).max(), solver="bnb", time_limit=60).fit(X)
    est.precision_, est.objective_, est.lower_bound_, est.gap_, est.n_nodes_

Modules: ``problem`` (the objective and data checks), ``heuristics`` (CD, CDPSI, ASCD, ASCDPSI),
``relaxation`` (perspective relaxation, dual bound), ``bnb`` (branch-and-bound), ``estimator``,
``generators``, ``baselines`` (enumeration, SCIP, graphical lasso, CONCORD, nodewise lasso),
``tuning`` and ``experiments`` (the registered table functions).
"""
from .baselines import (MAX_P_ENUMERATION, MAX_P_SCIP, concord, exhaustive_enumeration, graphical_lasso,
                        nodewise_lasso, scip_available, scip_mip)
from .bnb import branch_and_bound
from .estimator import SOLVERS, L0GraphicalModel
from .generators import (banded_toeplitz_precision, generate_synthetic, sample_gaussian, uniform_precision)
from .heuristics import solve_heuristic
from .problem import GraphProblem, objective, pseudo_likelihood
from .tuning import tune_baseline, tune_lambda0

__all__ = [
    "L0GraphicalModel", "SOLVERS", "objective", "pseudo_likelihood", "GraphProblem", "solve_heuristic",
    "branch_and_bound", "banded_toeplitz_precision", "uniform_precision", "sample_gaussian", "generate_synthetic",
    "exhaustive_enumeration", "scip_mip", "scip_available", "graphical_lasso", "concord", "nodewise_lasso",
    "tune_lambda0", "tune_baseline", "MAX_P_ENUMERATION", "MAX_P_SCIP",
]
