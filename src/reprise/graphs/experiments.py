"""The GraphL0BnB tables as registered experiments (``fn(params, seed) -> tidy DataFrame``).

The paper's table bodies could not be read (specs/other-papers.md §2.8, all ``[U]``); the
experiments follow its inventory and the smoke versions of §2.10. Every instance is drawn from
``numpy.random.default_rng(SeedSequence([seed, tag, p, n, replicate]))``, so adding grid points
never changes the others. ``M`` is ``"oracle"`` (``max |Θ*|`` over all entries, as demo.py) or a
number. Times are wall seconds on one core after a warm-up solve (numba's compile excluded: about
7 s once per checkout, then cached; see _kernels.py). Measured times below: 2 shared CPU cores.

``graphs.tab1`` — BnB vs an exact reference and an off-the-shelf MIP (spec §2.8 item 1).
    p (list), n, model, half_bandwidth, rho, kappa, lambda0, lambda2, M, gap_tol, time_limit,
    scip (bool), scip_time_limit, replicates. Rows: method ∈ {enumeration (p ≤ 6), graphl0_bnb,
    scip (p ≤ 30; SCIP stands in for Gurobi/MOSEK)} × objective, lower_bound, gap, n_nodes,
    seconds, status, n_edges, excess (objective / best − 1).
    smoke: p=[5], n=100, toeplitz s=1, λ0=λ2=0.05, gap_tol=1e-3, time_limit=20, scip, 60 s.
    Measured: ≈ 2 s (0.07 s enumeration of the 1024 supports, 0.01 s BnB, 0.6-1.4 s SCIP).
    full: p=[5, 10, 20, 30, 50, 100], time_limit=3600, scip_time_limit=3600, replicates=5.

``graphs.tab2`` — BnB gap / nodes / time vs p (spec §2.8 item 2).
    models (list of toeplitz / uniform), p (list), n, half_bandwidth, p0 (None = s/p), lambda0,
    lambda2, M, gap_tol, time_limit, search, relaxations (list: perspective = the reference,
    strengthened = ours; one row each), replicates. Rows: heuristic_objective,
    heuristic_seconds, objective, lower_bound, gap, n_nodes, seconds, status.
    smoke: toeplitz s=2, p=[10, 20], n=200, λ0=λ2=0.05, gap_tol=1e-2, both relaxations,
    time_limit=3 (spec §2.10 says 10 s; 3 s keeps the rule well under 20 s). Measured: ≈ 9 s.
    full: models=[toeplitz, uniform], p=[20, 50, 100, 200, 500, 1000], time_limit=3600,
    relaxations=[perspective, strengthened], replicates=5.

``graphs.tab3`` — heuristic quality: CD vs CDPSI (and the active-set variants) vs BnB
    (spec §2.8 item 3). p (list), n, model, half_bandwidth, lambda0, lambda2, M, solvers,
    bnb_time_limit (0 = no BnB row), replicates. Rows: solver × objective, seconds, n_edges,
    sweeps, swaps, excess over the best row. smoke: p=[30], n=100, toeplitz s=3, λ0=λ2=0.05,
    solvers cd, cdpsi, ascd, ascdpsi, no BnB. Measured: ≈ 0.01 s.
    full: p=[30, 100, 300], bnb_time_limit=3600, replicates=10.

``graphs.tab4`` — statistical performance vs n (spec §2.8 item 4): GraphL0 (λ0 tuned on a
    held-out sample of the same size by pseudo-likelihood) vs graphical lasso, CONCORD, nodewise
    lasso (AND and OR; each tuned on the same held-out sample, see ``tuning``). models, p, n
    (list), half_bandwidth, lambda2, M, lambda0_grid, baseline_grid, solver, time_limit,
    replicates. Rows: method × penalty, mcc, mcc_offdiag, tp, fp, fn, rel_frobenius, n_edges,
    seconds (supports over all p² entries with threshold 1e-3, as the reference ``check_support``;
    the diagonal is always a true positive, so ``mcc_offdiag`` leaves it out).
    smoke: toeplitz s=1, p=15, n=[50, 200], 3 replicates, λ2=0.05, 4-point λ0 grid
    [0.01, 0.03, 0.1, 0.3], baseline grid the same, solver cdpsi. Measured: ≈ 0.6 s.
    full: models=[toeplitz, uniform], p=100, n=[50, 100, 200, 500, 1000], 8-point grids,
    solver bnb with time_limit=300, replicates=20.

``graphs.scaling`` — heuristic time vs p with the growth exponent (slope of log seconds on
    log p, least squares). p (list), n, model, half_bandwidth, lambda0, lambda2, M, solvers,
    repeats (median). smoke: p=[25, 50, 100], n=200, toeplitz s=3, λ0=λ2=0.05, cdpsi and
    ascdpsi, 1 repeat. Measured: ≈ 0.05 s. full / benchmark: p=[50, 100, 200, 500, 1000], 3 repeats
    (measured: CDPSI 8.1 s at p = 1000, exponent 3.0; ASCDPSI 1.9 s, exponent 2.8).
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Mapping

import numpy as np
import pandas as pd

from reprise.experiments import experiment, reject_unknown
from reprise.io import ReproError
from reprise.sparsity import rel_frobenius, support_counts

from .baselines import (MAX_P_ENUMERATION, MAX_P_SCIP, exhaustive_enumeration, scip_available, scip_mip)
from .bnb import RELAXATIONS, SEARCHES, branch_and_bound
from .generators import MODELS, banded_toeplitz_precision, sample_gaussian, uniform_precision
from .heuristics import HEURISTICS, solve_heuristic
from .problem import GraphProblem
from .tuning import BASELINES, tune_baseline, tune_lambda0

_TAGS = {"tab1": 1, "tab2": 2, "tab3": 3, "tab4": 4, "scaling": 5}


# --------------------------------------------------------------------------- params

def _params(name: str, params: Mapping[str, Any], defaults: dict) -> dict:
    reject_unknown(name, params, defaults)
    out = {**defaults, **dict(params)}
    for key in ("n", "replicates", "half_bandwidth", "repeats", "p"):
        if key in out and not isinstance(out[key], (list, tuple)) and out[key] is not None:
            if not (isinstance(out[key], (int, np.integer)) and out[key] >= 1):
                raise ReproError(f"{name}: {key}={out[key]!r} must be an integer ≥ 1")
    for key in ("p", "n", "models", "solvers"):
        if key in defaults and isinstance(defaults[key], list):
            val = out[key]
            val = [val] if not isinstance(val, (list, tuple)) else list(val)
            if not val:
                raise ReproError(f"{name}: {key} is an empty list; give at least one value")
            out[key] = val
    for key in ("p", "n"):
        if isinstance(out.get(key), list):
            for v in out[key]:
                if not (isinstance(v, (int, np.integer)) and v >= 2):
                    raise ReproError(f"{name}: {key} values must be integers ≥ 2, got {v!r}")
    for key in ("model",):
        if key in out and out[key] not in MODELS:
            raise ReproError(f"{name}: model={out[key]!r} is unknown; use one of {', '.join(MODELS)}")
    if "models" in out:
        for m in out["models"]:
            if m not in MODELS:
                raise ReproError(f"{name}: models has {m!r}; use {', '.join(MODELS)}")
    for key in ("time_limit", "scip_time_limit"):
        if key in out and not (isinstance(out[key], (int, float)) and out[key] > 0):
            raise ReproError(f"{name}: {key}={out[key]!r} must be a number of seconds > 0")
    if "M" in out and not (out["M"] == "oracle" or (isinstance(out["M"], (int, float)) and out["M"] > 0)):
        raise ReproError(f"{name}: M={out['M']!r} must be 'oracle' (max |Θ*|) or a number > 0")
    return out


def _rng(seed: int, tag: str, *keys) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _TAGS[tag], *[int(k) for k in keys]]))


def _instance(prm: dict, p: int, n: int, rng, model: str | None = None):
    model = model or prm.get("model", "toeplitz")
    s = prm.get("half_bandwidth", 1)
    if model == "toeplitz":
        Theta = banded_toeplitz_precision(p, s, prm.get("rho", 0.5), prm.get("kappa", 2.0))
    else:
        p0 = prm.get("p0")
        Theta = uniform_precision(p, s / p if p0 is None else p0, prm.get("kappa", 2.0), rng=rng)
    return Theta, sample_gaussian(n, Theta, rng=rng)


def _M(prm: dict, Theta: np.ndarray) -> float:
    return float(np.max(np.abs(Theta))) if prm["M"] == "oracle" else float(prm["M"])


def _warm_up() -> None:
    """Compile (or load from the cache) the numba kernels before anything is timed."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4))
    prob = GraphProblem.from_data(X, 0.05, 0.05, 1.0)
    for s in HEURISTICS:
        solve_heuristic(prob, s)
    branch_and_bound(prob, time_limit=1.0, max_nodes=3)


def _edges(Theta: np.ndarray) -> int:
    return int(np.count_nonzero(np.triu(Theta != 0, 1)))


# --------------------------------------------------------------------------- tab1

TAB1 = dict(p=[5], n=100, model="toeplitz", half_bandwidth=1, rho=0.5, kappa=2.0, p0=None, lambda0=0.05,
            lambda2=0.05, M="oracle", gap_tol=1e-3, time_limit=20.0, scip=True, scip_time_limit=60.0, replicates=1)


@experiment("graphs.tab1")
def tab1(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """BnB against exhaustive enumeration (p ≤ 6) and SCIP (p ≤ 30) on the same instances."""
    prm = _params("graphs.tab1", params, TAB1)
    if prm["scip"] and not scip_available():
        raise ReproError("graphs.tab1: scip=true needs pyscipopt (pip install pyscipopt==6.2.1), or set scip: false")
    _warm_up()
    rows = []
    for p in prm["p"]:
        for rep in range(prm["replicates"]):
            Theta_true, X = _instance(prm, p, prm["n"], _rng(seed, "tab1", p, prm["n"], rep))
            M = _M(prm, Theta_true)
            base = dict(p=p, n=prm["n"], model=prm["model"], replicate=rep, lambda0=prm["lambda0"],
                        lambda2=prm["lambda2"], M=M)
            results = []
            if p <= MAX_P_ENUMERATION:
                r = exhaustive_enumeration(X, prm["lambda0"], prm["lambda2"], M)
                results.append(("enumeration", r.Theta, r.objective, r.lower_bound, r.gap, r.n_nodes, r.seconds,
                                r.status))
            prob = GraphProblem.from_data(X, prm["lambda0"], prm["lambda2"], M)
            r = branch_and_bound(prob, gap_tol=prm["gap_tol"], time_limit=prm["time_limit"], log_every=0)
            results.append(("graphl0_bnb", r.Theta, r.objective, r.lower_bound, r.gap, r.n_nodes, r.seconds, r.status))
            if prm["scip"] and p <= MAX_P_SCIP:
                r = scip_mip(X, prm["lambda0"], prm["lambda2"], M, time_limit=prm["scip_time_limit"],
                             gap_tol=prm["gap_tol"])
                results.append(("scip", r.Theta, r.objective, r.lower_bound, r.gap, r.n_nodes, r.seconds, r.status))
            best = min(x[2] for x in results)
            for method, Th, obj, lb, gap, nodes, sec, status in results:
                c = support_counts(Th, Theta_true)
                rows.append({**base, "method": method, "objective": obj, "lower_bound": lb, "gap": gap,
                             "n_nodes": nodes, "seconds": sec, "status": status, "n_edges": _edges(Th),
                             "excess": obj / best - 1.0 if best else obj - best, "mcc": c.mcc})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- tab2

TAB2 = dict(models=["toeplitz"], p=[10, 20], n=200, half_bandwidth=2, rho=0.5, kappa=2.0, p0=None, lambda0=0.05,
            lambda2=0.05, M="oracle", gap_tol=1e-2, time_limit=3.0, search="bfs", relaxations=["perspective", "strengthened"],
            replicates=1)


@experiment("graphs.tab2")
def tab2(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """BnB final gap, nodes and time within a time limit, per model and p."""
    prm = _params("graphs.tab2", params, TAB2)
    if prm["search"] not in SEARCHES:
        raise ReproError(f"graphs.tab2: search={prm['search']!r}; use one of {', '.join(SEARCHES)}")
    for r in prm["relaxations"]:
        if r not in RELAXATIONS:
            raise ReproError(f"graphs.tab2: relaxations has {r!r}; use {', '.join(RELAXATIONS)}")
    _warm_up()
    rows = []
    for model in prm["models"]:
        for p in prm["p"]:
            for rep in range(prm["replicates"]):
                Theta_true, X = _instance(prm, p, prm["n"], _rng(seed, "tab2", MODELS.index(model), p, prm["n"], rep),
                                          model)
                M = _M(prm, Theta_true)
                prob = GraphProblem.from_data(X, prm["lambda0"], prm["lambda2"], M)
                h = solve_heuristic(prob, "cdpsi")
                for relax in prm["relaxations"]:
                    r = branch_and_bound(prob, warm_start=h.Theta, gap_tol=prm["gap_tol"],
                                         time_limit=prm["time_limit"], search=prm["search"], relaxation=relax,
                                         log_every=0)
                    c = support_counts(r.Theta, Theta_true)
                    rows.append(dict(model=model, p=p, n=prm["n"], replicate=rep, lambda0=prm["lambda0"],
                                     lambda2=prm["lambda2"], M=M, time_limit=prm["time_limit"], search=prm["search"],
                                     relaxation=relax, heuristic_objective=h.objective,
                                     heuristic_seconds=h.seconds, objective=r.objective, lower_bound=r.lower_bound,
                                     gap=r.gap, n_nodes=r.n_nodes, seconds=r.seconds, status=r.status,
                                     n_edges=_edges(r.Theta), mcc=c.mcc))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- tab3

TAB3 = dict(p=[30], n=100, model="toeplitz", half_bandwidth=3, rho=0.5, kappa=2.0, p0=None, lambda0=0.05,
            lambda2=0.05, M="oracle", solvers=["cd", "cdpsi", "ascd", "ascdpsi"], bnb_time_limit=0.0, replicates=1)


def _check_solvers(name: str, solvers) -> None:
    for s in solvers:
        if s not in HEURISTICS:
            raise ReproError(f"{name}: solvers has {s!r}; use {', '.join(HEURISTICS)}")


@experiment("graphs.tab3")
def tab3(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Objective and time of the heuristics (and optionally BnB) on the same instances."""
    prm = _params("graphs.tab3", params, TAB3)
    _check_solvers("graphs.tab3", prm["solvers"])
    if not (isinstance(prm["bnb_time_limit"], (int, float)) and prm["bnb_time_limit"] >= 0):
        raise ReproError(f"graphs.tab3: bnb_time_limit={prm['bnb_time_limit']!r} must be ≥ 0 seconds (0: no BnB)")
    _warm_up()
    rows = []
    for p in prm["p"]:
        for rep in range(prm["replicates"]):
            Theta_true, X = _instance(prm, p, prm["n"], _rng(seed, "tab3", p, prm["n"], rep))
            M = _M(prm, Theta_true)
            prob = GraphProblem.from_data(X, prm["lambda0"], prm["lambda2"], M)
            block = []
            for s in prm["solvers"]:
                h = solve_heuristic(prob, s)
                block.append(dict(solver=s, objective=h.objective, seconds=h.seconds, n_edges=_edges(h.Theta),
                                  sweeps=h.sweeps, swaps=h.swaps, lower_bound=math.nan, gap=math.nan,
                                  mcc=support_counts(h.Theta, Theta_true).mcc))
            if prm["bnb_time_limit"] > 0:
                r = branch_and_bound(prob, time_limit=prm["bnb_time_limit"], log_every=0)
                block.append(dict(solver="bnb", objective=r.objective, seconds=r.seconds, n_edges=_edges(r.Theta),
                                  sweeps=0, swaps=0, lower_bound=r.lower_bound, gap=r.gap,
                                  mcc=support_counts(r.Theta, Theta_true).mcc))
            best = min(b["objective"] for b in block)
            for b in block:
                rows.append(dict(p=p, n=prm["n"], model=prm["model"], replicate=rep, lambda0=prm["lambda0"],
                                 lambda2=prm["lambda2"], M=M, **b, excess=b["objective"] / best - 1.0))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- tab4

TAB4 = dict(models=["toeplitz"], p=15, n=[50, 200], half_bandwidth=1, rho=0.5, kappa=2.0, p0=None, lambda2=0.05,
            M="oracle", lambda0_grid=[0.01, 0.03, 0.1, 0.3], baseline_grid=[0.01, 0.03, 0.1, 0.3],
            baselines=list(BASELINES), solver="cdpsi", time_limit=60.0, replicates=3)


@experiment("graphs.tab4")
def tab4(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Support recovery and estimation error of GraphL0 and the baselines, each tuned on held-out data."""
    prm = _params("graphs.tab4", params, TAB4)
    if not (isinstance(prm["p"], (int, np.integer)) and prm["p"] >= 2):
        raise ReproError(f"graphs.tab4: p={prm['p']!r} must be one integer ≥ 2")
    for b in prm["baselines"]:
        if b not in BASELINES:
            raise ReproError(f"graphs.tab4: baselines has {b!r}; use {', '.join(BASELINES)}")
    if prm["solver"] not in HEURISTICS + ("bnb",):
        raise ReproError(f"graphs.tab4: solver={prm['solver']!r}; use one of {', '.join(HEURISTICS + ('bnb',))}")
    _warm_up()
    rows = []
    p = prm["p"]
    for model in prm["models"]:
        for n in prm["n"]:
            for rep in range(prm["replicates"]):
                rng = _rng(seed, "tab4", MODELS.index(model), p, n, rep)
                Theta_true, X = _instance(prm, p, n, rng, model)
                X_val = sample_gaussian(n, Theta_true, rng=rng)
                M = _M(prm, Theta_true)
                fits = []
                t0 = time.perf_counter()
                tuned = tune_lambda0(X, X_val, prm["lambda0_grid"], lambda2=prm["lambda2"], M=M, solver=prm["solver"],
                                     time_limit=prm["time_limit"])
                fits.append(("graphl0", tuned, time.perf_counter() - t0))
                for b in prm["baselines"]:
                    t0 = time.perf_counter()
                    fits.append((b, tune_baseline(b, X, X_val, prm["baseline_grid"]), time.perf_counter() - t0))
                for method, tu, sec in fits:
                    c = support_counts(tu.precision, Theta_true)
                    off = support_counts(tu.precision, Theta_true, off_diagonal=True)
                    rows.append(dict(model=model, p=p, n=n, replicate=rep, method=method, penalty=tu.value,
                                     mcc=c.mcc, mcc_offdiag=off.mcc, tp=c.tp, fp=c.fp, fn=c.fn,
                                     rel_frobenius=rel_frobenius(tu.precision, Theta_true),
                                     n_edges=int(np.count_nonzero(np.triu(np.abs(tu.precision) > 1e-3, 1))),
                                     seconds=sec))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- scaling

SCALING = dict(p=[25, 50, 100], n=200, model="toeplitz", half_bandwidth=3, rho=0.5, kappa=2.0, p0=None,
               lambda0=0.05, lambda2=0.05, M="oracle", solvers=["cdpsi", "ascdpsi"], repeats=1)


def growth_exponent(p, seconds) -> float:
    """Least-squares slope of ``log seconds`` on ``log p`` (nan with fewer than two points)."""
    p, s = np.asarray(p, dtype=float), np.asarray(seconds, dtype=float)
    keep = (p > 0) & (s > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(p[keep]), np.log(s[keep]), 1)[0])


@experiment("graphs.scaling")
def scaling(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Heuristic time against p, and the fitted growth exponent of each solver."""
    prm = _params("graphs.scaling", params, SCALING)
    _check_solvers("graphs.scaling", prm["solvers"])
    _warm_up()
    rows = []
    for p in prm["p"]:
        Theta_true, X = _instance(prm, p, prm["n"], _rng(seed, "scaling", p, prm["n"]))
        M = _M(prm, Theta_true)
        prob = GraphProblem.from_data(X, prm["lambda0"], prm["lambda2"], M)
        for s in prm["solvers"]:
            times, h = [], None
            for _ in range(prm["repeats"]):
                h = solve_heuristic(prob, s)
                times.append(h.seconds)
            rows.append(dict(p=p, n=prm["n"], model=prm["model"], solver=s, seconds=statistics.median(times),
                             objective=h.objective, n_edges=_edges(h.Theta), sweeps=h.sweeps,
                             mcc=support_counts(h.Theta, Theta_true).mcc))
    frame = pd.DataFrame(rows)
    frame["growth_exponent"] = frame.groupby("solver")["seconds"].transform(
        lambda s: growth_exponent(frame.loc[s.index, "p"], s))
    return frame
