"""Sparse NMF with archetypal regularisation (Behdin & Mazumder, arXiv 2104.03527; specs/other-papers.md §7).

``ArchetypalNMF`` is the estimator; ``objective`` is the one objective every solver, test and
experiment uses; ``weak_robustness``/``strong_robustness`` are the demo's ``L(H0, Ĥ)`` and
``L(Ĥ, H0)``. The algorithms live in ``core`` (block proximal gradient, continuation, hull
projection), ``mip`` (outer-approximation initialisation, HiGHS master) and ``local_search``;
``data`` has the synthetic generator and the digits substitute; ``experiments`` the registered
experiment functions (``nmf.*``).
"""
from reprise.nmf.core import (archetype_distance, block_prox, continuation, hull_weights, lambda_grid, objective,
                              strong_robustness, weak_robustness)
from reprise.nmf.data import load_digits_matrix, make_synthetic
from reprise.nmf.estimator import ArchetypalNMF
from reprise.nmf.local_search import local_search
from reprise.nmf.mip import mip_init, solve_master

__all__ = ["ArchetypalNMF", "archetype_distance", "block_prox", "continuation", "hull_weights", "lambda_grid",
           "load_digits_matrix", "local_search", "make_synthetic", "mip_init", "objective", "solve_master",
           "strong_robustness", "weak_robustness"]
