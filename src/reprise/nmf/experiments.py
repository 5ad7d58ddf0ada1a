"""Experiments of the sparse NMF paper (specs/other-papers.md §7.6, smoke versions §7.8), one
function per table or figure, registered as ``nmf.<id>`` with signature
``fn(params: dict, seed: int) -> pandas.DataFrame`` (tidy rows, see ``reprise.experiments``).

Every function merges ``params`` into its defaults (which are the smoke values), rejects unknown
keys and bad values with a ReproError naming the key, derives all its generators from ``seed``
(``numpy.random.default_rng([seed, ...])``), and returns one row per (setting, method, replicate)
with the measured quantities as columns. Common columns: ``seed``, ``replicate``, ``method``,
``lam``; ``seconds`` is the wall time of that fit. Smoke wall times measured on one core of the
development machine (OMP_NUM_THREADS=1, seeds 0-2, pinned to one core) are given per experiment;
importing numpy/scipy/scikit-learn/pandas adds 1.3-2 s per process.

Methods (``method`` column): ``saa`` = ArchetypalNMF with random init and continuation;
``saa_ls`` = the same plus local search; ``saa_nocont`` = no continuation; ``saa_mip`` = MIP
initialisation; ``nmf`` = scikit-learn's plain ``NMF`` (init "nndsvda", no simplex or sparsity
constraint; its H has an arbitrary scale, reported as is); ``saa`` at λ = 0 is the sparse
simplex-constrained NMF baseline (its ``label`` column says ``sparse_simplex_nmf``).

nmf.tab_synth — §7.6 item 2: weak ``L(H0, Ĥ)`` and strong ``L(Ĥ, H0)`` robustness distances and
    reconstruction error versus noise σ, sparsity ℓ and λ, SAA variants and baselines.
    Data: ``make_synthetic`` with dense truth; the same seed for every σ (common random numbers:
    the same H0, W0 and noise direction, scaled by σ). Columns: sigma, ell_frac, ell, method,
    label, lam, weak_L, strong_L, recon_err (‖X − WĤ‖_F), recon_err_clean (‖W0H0 − WĤ‖_F),
    rel_recon_err (recon_err/‖X‖_F), objective (at λ; NaN for nmf), nnz, n_iter, seconds.
    smoke (defaults): m=20, n=60, k=4, sigmas=[0.1, 0.5], ell_fracs=[0.5], lams=[0.0, 1.0],
        n_lambdas=3, lambda_max=30, max_iter=100, tol=1e-4, methods=[saa, saa_ls, nmf],
        ls_size=2, ls_max_iter=2, replicates=1; seeds 0, 1, 2 as three jobs. Measured 0.5-0.65 s.
    full (§7.4 demo): m=40, n=500, k=20, sigmas=[0.5] (the demo's; a σ grid such as
        [0.1, 0.25, 0.5, 1.0] is [U]), ell_fracs=[0.5] (ℓ = 10n), lams=[0.0, 1.0], n_lambdas=8,
        lambda_max=30, max_iter=150, tol=1e-4, methods=[saa, saa_ls, saa_nocont, nmf],
        ls_size=2, ls_max_iter=4, ≥ 3 seeds.

nmf.tab_mip — §7.6 item 3: MIP initialisation (outer approximation, HiGHS master) against random
    initialisation, both followed by continuation. One row per init (``method`` = saa_mip/saa)
    with init_objective (at λ, before the proximal method), objective (after continuation),
    weak_L, strong_L, recon_err, seconds_init, seconds, and for the MIP mip_cuts, mip_gap
    (relative gap at stop), mip_best_F (smallest inner value F(Z)), mip_stop.
    smoke: m=20, n=60, k=4 (k·n = 240 binaries), sigma=0.5, ell_frac=0.5, lam=1.0, mip_max_cuts=5,
        mip_time_limit=20 s, mip_gap=0.05, mip_big_m=1.0, mip_master_gap=0.01, n_lambdas=3,
        lambda_max=30, max_iter=100, tol=1e-4, replicates=1. Measured 0.3-0.55 s.
    full (demo): m=40, n=500, k=20, sigma=0.5, ell_frac=0.5, lam=1, mip_big_m=1, mip_time_limit=480,
        mip_max_cuts=10, mip_gap=0.05, n_lambdas=8, max_iter=150. The k·n = 10 000-binary masters
        take seconds to minutes each, so the time limit decides how many cuts are made and the
        rows then depend on the machine's speed (at smoke the loop ends by its cut count).

nmf.fig_ls — §7.6 item 3: objective after continuation against after each local-search round, and
    the support changes. Rows: stage ("continuation" with round 0, then "local_search" with
    round 1..R), objective, support_changes (in that round), support_changes_total (cumulative),
    seconds (cumulative from the start of the fit).
    smoke: m=20, n=60, k=4, sigma=0.5, ell_frac=0.5, lam=1.0, init="random", n_lambdas=3,
        lambda_max=30, max_iter=100, tol=1e-4, ls_size=2, ls_max_iter=2, replicates=1.
        Measured 0.15-0.25 s.
    full (demo): m=40, n=500, k=20, init="mip" (demo settings as tab_mip), n_lambdas=8,
        max_iter=150, ls_size=2, ls_max_iter=4.

nmf.digits — §7.6 item 4 with the bundled substitute (§9.2): archetypes of scikit-learn's
    ``load_digits`` (scaled to [0, 1]) as 8 × 8 images. Two kinds of rows, told apart by
    ``record``:
      record="pixel": method, component (0..k−1), pixel (0..63), row, col (pixel = 8·row + col),
        value (H[component, pixel]); for a grid of k images per method. For ``nmf`` the scale of
        each image is arbitrary (normalise per image when drawing).
      record="metric": method, metric, value with metric in recon_err (‖X − WH‖_F),
        rel_recon_err (/‖X‖_F), objective (at λ; NaN for nmf), nnz, sparsity (fraction of zero
        pixels of H), ari (adjusted Rand index of argmax_i W[:, i] against the digit labels),
        seconds.
      Every row also has n_images, k, ell, lam (NaN for nmf), seed, and component/pixel/row/col
      are −1 on metric rows and metric is "" on pixel rows.
    Methods: saa (λ = lam), sparse_nmf (λ = 0, same budget), nmf.
    smoke: n_images=300 (random subset), k=10, ell_frac=0.3, lam=1.0, n_lambdas=3, lambda_max=30,
        max_iter=100, tol=1e-4, local_search=False, methods=[saa, sparse_nmf, nmf].
        Measured 0.4-0.45 s.
    full: n_images=1797 (all), k=10, ell_frac=0.3, lam=1.0, n_lambdas=8, max_iter=150,
        local_search=True (ls_size=2, ls_max_iter=4).

nmf.robustness_toy — §7.6 item 1: a 2-D toy for the strong/weak robustness figure. True
    archetypes (default a triangle with one zero coordinate, so ℓ_true = 5 of 6), data as convex
    combinations (uniform weights, normalised) plus N(0, σ²) noise clipped at 0, fits at several
    λ with budget ``ell``. Rows by ``kind``: "data" (index, x, y), "hull" (the data's convex hull
    vertices in counter-clockwise order: index = position), "true_archetype" (index, x, y),
    "archetype" (method "saa", lam, index, x, y), "metric" (lam, metric in weak_L, strong_L,
    recon_err, value). Unused cells are NaN/""/−1.
    smoke = full (the toy is small): m=60, sigma=0.03, ell=5, lams=[0.0, 1.0, 10.0], n_lambdas=3,
        lambda_max=30, max_iter=300, tol=1e-6. Measured 0.55-0.75 s.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from reprise.experiments import boolean, check_seed, choice, experiment, integer, list_of, params as _params, real
from reprise.io import ReproError
from reprise.nmf.core import objective, strong_robustness, weak_robustness
from reprise.nmf.data import DIGITS_SIDE, load_digits_matrix, make_synthetic
from reprise.nmf.estimator import ArchetypalNMF

def _budget(frac: float, k: int, n: int) -> int:
    return max(1, min(k * n, int(round(frac * k * n))))


def _child_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for an estimator, derived from the job seed and the keys."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def _plain_nmf(X, k: int, seed: int, max_iter: int):
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = NMF(n_components=k, init="nndsvda", max_iter=max_iter, random_state=seed)
        W = model.fit_transform(X)
    return W, model.components_, time.perf_counter() - t0


SAA_METHODS = ("saa", "saa_ls", "saa_nocont", "saa_mip")


def _saa(method: str, k: int, ell: int, lam: float, p: dict, seed: int) -> ArchetypalNMF:
    return ArchetypalNMF(
        n_components=k, l0_budget=ell, lam=lam, init="mip" if method == "saa_mip" else "random",
        local_search=method == "saa_ls", continuation=method != "saa_nocont", max_iter=p["max_iter"], tol=p["tol"],
        n_lambdas=p["n_lambdas"], lambda_max=p["lambda_max"], ls_size=p.get("ls_size", 2),
        ls_max_iter=p.get("ls_max_iter", 4), mip_big_m=p.get("mip_big_m", 1.0),
        mip_time_limit=p.get("mip_time_limit", 480.0), mip_max_cuts=p.get("mip_max_cuts", 10),
        mip_gap=p.get("mip_gap", 0.05), mip_master_gap=p.get("mip_master_gap", 1e-2), random_state=seed)


_SOLVER = {
    "n_lambdas": (3, integer(1)), "lambda_max": (30.0, real(0.0, strict=True)), "max_iter": (100, integer(1)),
    "tol": (1e-4, real(0.0)),
}
#: one noisy instance at one budget and one λ (tab_mip and fig_ls)
_ONE_INSTANCE = {"sigma": (0.5, real(0.0)), "ell_frac": (0.5, real(0.0, strict=True, high=1.0)), "lam": (1.0, real(0.0))}
_MIP = {
    "mip_max_cuts": (5, integer(1)), "mip_time_limit": (20.0, real(0.0, strict=True)), "mip_gap": (0.05, real(0.0)),
    "mip_big_m": (1.0, real(0.0, strict=True)), "mip_master_gap": (1e-2, real(0.0)),
}
_SYNTH = {"m": (20, integer(1)), "n": (60, integer(1)), "k": (4, integer(1))}


def _check_k(name: str, p: dict, m_key: str = "m") -> None:
    if p["k"] > p[m_key]:
        raise ReproError(f"{name}: params['k']={p['k']} exceeds params[{m_key!r}]={p[m_key]}; the archetypes are "
                         f"convex combinations of the data points, so use k ≤ {m_key}")


# --------------------------------------------------------------------------- nmf.tab_synth


@experiment("nmf.tab_synth")
def tab_synth(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Robustness distances and reconstruction error vs σ, ℓ and λ (module docstring)."""
    check_seed("nmf.tab_synth", seed)
    p = _params("nmf.tab_synth", params, {
        **_SYNTH, **_SOLVER, **_MIP,
        "sigmas": ([0.1, 0.5], list_of(real(0.0))), "ell_fracs": ([0.5], list_of(real(0.0, strict=True, high=1.0))),
        "lams": ([0.0, 1.0], list_of(real(0.0))),
        "methods": (["saa", "saa_ls", "nmf"], list_of(choice(*SAA_METHODS, "nmf"))),
        "ls_size": (2, integer(1)), "ls_max_iter": (2, integer(0)), "replicates": (1, integer(1)),
        "nmf_max_iter": (500, integer(1)),
    })
    _check_k("nmf.tab_synth", p)
    m, n, k = p["m"], p["n"], p["k"]
    rows = []
    for rep in range(p["replicates"]):
        data_seed = [seed, rep]
        for sigma in p["sigmas"]:
            d = make_synthetic(m, n, k, sigma, random_state=np.random.default_rng(data_seed))
            x_norm = float(np.linalg.norm(d.X))
            base = {"seed": seed, "replicate": rep, "sigma": sigma, "m": m, "n": n, "k": k}
            for fi, frac in enumerate(p["ell_fracs"]):
                ell = _budget(frac, k, n)
                for method in p["methods"]:
                    fit_seed = _child_seed(seed, rep, fi, SAA_METHODS.index(method) if method != "nmf" else 9)
                    if method == "nmf":
                        W, H, secs = _plain_nmf(d.X, k, fit_seed, p["nmf_max_iter"])
                        fits = [(math.nan, "nmf", W, H, math.nan, 0, secs)]
                    else:
                        fits = []
                        for lam in p["lams"]:
                            t0 = time.perf_counter()
                            est = _saa(method, k, ell, lam, p, fit_seed).fit(d.X)
                            label = "sparse_simplex_nmf" if lam == 0 else method
                            fits.append((lam, label, est.weights_, est.components_, est.objective_, est.n_iter_,
                                         time.perf_counter() - t0))
                    for lam, label, W, H, obj, n_iter, secs in fits:
                        recon = float(np.linalg.norm(d.X - W @ H))
                        rows.append({**base, "ell_frac": frac, "ell": ell, "method": method, "label": label,
                                     "lam": lam, "weak_L": weak_robustness(d.H0, H),
                                     "strong_L": strong_robustness(d.H0, H), "recon_err": recon,
                                     "recon_err_clean": float(np.linalg.norm(d.X_clean - W @ H)),
                                     "rel_recon_err": recon / x_norm, "objective": obj,
                                     "nnz": int(np.count_nonzero(H)), "n_iter": int(n_iter), "seconds": secs})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- nmf.tab_mip


@experiment("nmf.tab_mip")
def tab_mip(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """MIP initialisation against random initialisation (module docstring)."""
    check_seed("nmf.tab_mip", seed)
    p = _params("nmf.tab_mip", params, {
        **_SYNTH, **_SOLVER, **_MIP, **_ONE_INSTANCE,
        "replicates": (1, integer(1)),
    })
    _check_k("nmf.tab_mip", p)
    m, n, k = p["m"], p["n"], p["k"]
    ell = _budget(p["ell_frac"], k, n)
    rows = []
    for rep in range(p["replicates"]):
        d = make_synthetic(m, n, k, p["sigma"], random_state=np.random.default_rng([seed, rep]))
        for method in ("saa", "saa_mip"):
            t0 = time.perf_counter()
            est = _saa(method, k, ell, p["lam"], p, _child_seed(seed, rep, 0)).fit(d.X)
            secs = time.perf_counter() - t0
            mip = est.mip_
            rows.append({"seed": seed, "replicate": rep, "m": m, "n": n, "k": k, "sigma": p["sigma"], "ell": ell,
                         "lam": p["lam"], "method": method, "init": est.init,
                         "init_objective": est.init_objective_, "objective": est.objective_,
                         "weak_L": weak_robustness(d.H0, est.components_),
                         "strong_L": strong_robustness(d.H0, est.components_),
                         "recon_err": est.reconstruction_err_, "seconds_init": est.timings_["init"], "seconds": secs,
                         "mip_cuts": mip.n_cuts if mip else 0, "mip_gap": mip.gap if mip else math.nan,
                         "mip_best_F": mip.best_value if mip else math.nan, "mip_stop": mip.stop if mip else ""})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- nmf.fig_ls


@experiment("nmf.fig_ls")
def fig_ls(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Objective after continuation and after each local-search round (module docstring)."""
    check_seed("nmf.fig_ls", seed)
    p = _params("nmf.fig_ls", params, {
        **_SYNTH, **_SOLVER, **_MIP, **_ONE_INSTANCE,
        "init": ("random", choice("random", "mip")), "ls_size": (2, integer(1)), "ls_max_iter": (2, integer(1)),
        "replicates": (1, integer(1)),
    })
    _check_k("nmf.fig_ls", p)
    from reprise.nmf.local_search import local_search

    m, n, k = p["m"], p["n"], p["k"]
    ell = _budget(p["ell_frac"], k, n)
    rows = []
    for rep in range(p["replicates"]):
        d = make_synthetic(m, n, k, p["sigma"], random_state=np.random.default_rng([seed, rep]))
        t0 = time.perf_counter()
        est = _saa("saa_mip" if p["init"] == "mip" else "saa", k, ell, p["lam"], p, _child_seed(seed, rep, 0))
        est.fit(d.X)
        base = {"seed": seed, "replicate": rep, "m": m, "n": n, "k": k, "sigma": p["sigma"], "ell": ell,
                "lam": p["lam"], "init": p["init"]}
        rows.append({**base, "stage": "continuation", "round": 0, "objective": est.objective_,
                     "support_changes": 0, "support_changes_total": 0, "seconds": time.perf_counter() - t0})
        # the rounds one by one, so each has its own objective, support changes and time
        rng = np.random.default_rng([seed, rep, 1])
        H, W, Wt, total = est.components_, est.weights_, est.weights_tilde_, 0
        for r in range(1, p["ls_max_iter"] + 1):
            ls = local_search(d.X, H, W, Wt, p["lam"], size=p["ls_size"], max_iter=1, rng=rng)
            H, W, Wt = ls.H, ls.W, ls.W_tilde
            total += ls.support_changes
            rows.append({**base, "stage": "local_search", "round": r, "objective": objective(d.X, W, H, Wt, p["lam"]),
                         "support_changes": ls.support_changes, "support_changes_total": total,
                         "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- nmf.digits


@experiment("nmf.digits")
def digits(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Archetype images of load_digits and reconstruction/clustering metrics (module docstring)."""
    check_seed("nmf.digits", seed)
    p = _params("nmf.digits", params, {
        **_SOLVER,
        "n_images": (300, integer(1, 1797)), "k": (10, integer(1)), "ell_frac": (0.3, real(0.0, strict=True, high=1.0)),
        "lam": (1.0, real(0.0)), "local_search": (False, boolean), "ls_size": (2, integer(1)),
        "ls_max_iter": (4, integer(0)),
        "methods": (["saa", "sparse_nmf", "nmf"], list_of(choice("saa", "sparse_nmf", "nmf"))),
        "nmf_max_iter": (500, integer(1)),
    })
    _check_k("nmf.digits", p, "n_images")
    from sklearn.metrics import adjusted_rand_score

    X, labels = load_digits_matrix(p["n_images"], random_state=np.random.default_rng([seed, 0]))
    k, n = p["k"], X.shape[1]
    ell = _budget(p["ell_frac"], k, n)
    x_norm = float(np.linalg.norm(X))
    base = {"seed": seed, "n_images": X.shape[0], "k": k, "ell": ell}
    rows = []
    for mi, method in enumerate(p["methods"]):
        fit_seed = _child_seed(seed, 1, mi)
        t0 = time.perf_counter()
        if method == "nmf":
            W, H, _ = _plain_nmf(X, k, fit_seed, p["nmf_max_iter"])
            lam, obj = math.nan, math.nan
        else:
            lam = p["lam"] if method == "saa" else 0.0
            est = _saa("saa_ls" if p["local_search"] else "saa", k, ell, lam, p, fit_seed).fit(X)
            W, H, obj = est.weights_, est.components_, est.objective_
        secs = time.perf_counter() - t0
        head = {**base, "method": method, "lam": lam}
        for c in range(k):
            for pix in range(n):
                rows.append({**head, "record": "pixel", "component": c, "pixel": pix, "row": pix // DIGITS_SIDE,
                             "col": pix % DIGITS_SIDE, "metric": "", "value": float(H[c, pix])})
        recon = float(np.linalg.norm(X - W @ H))
        metrics = {"recon_err": recon, "rel_recon_err": recon / x_norm, "objective": obj,
                   "nnz": float(np.count_nonzero(H)), "sparsity": float(np.mean(H == 0)),
                   "ari": float(adjusted_rand_score(labels, np.argmax(W, axis=1))), "seconds": secs}
        for metric, value in metrics.items():
            rows.append({**head, "record": "metric", "component": -1, "pixel": -1, "row": -1, "col": -1,
                         "metric": metric, "value": value})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- nmf.robustness_toy

TOY_ARCHETYPES = [[0.0, 1.0], [1.0, 0.7], [0.6, 0.1]]


@experiment("nmf.robustness_toy")
def robustness_toy(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """The 2-D toy of strong/weak robustness: data, hull and archetypes as points (module docstring)."""
    from scipy.spatial import ConvexHull, QhullError

    def points(where, v):
        arr = np.asarray(v, dtype=float) if not isinstance(v, (str, bytes)) else None
        if arr is None or arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 2 or np.any(arr < 0) \
                or not np.all(np.isfinite(arr)):
            raise ReproError(f"{where} must be a list of ≥ 2 nonnegative 2-D points [[x, y], ...]")
        return arr.tolist()

    check_seed("nmf.robustness_toy", seed)
    p = _params("nmf.robustness_toy", params, {
        **_SOLVER, "max_iter": (300, integer(1)), "tol": (1e-6, real(0.0)),
        "m": (60, integer(3)), "sigma": (0.03, real(0.0)), "ell": (5, integer(1)),
        "lams": ([0.0, 1.0, 10.0], list_of(real(0.0))), "archetypes": (TOY_ARCHETYPES, points),
    })
    H0 = np.asarray(p["archetypes"], dtype=float)
    k = H0.shape[0]
    if p["ell"] > 2 * k:
        raise ReproError(f"nmf.robustness_toy: params['ell']={p['ell']} exceeds k·n = {2 * k}")
    if k > p["m"]:
        raise ReproError(f"nmf.robustness_toy: {k} archetypes need params['m'] ≥ {k}")
    rng = np.random.default_rng([seed, 0])
    W0 = rng.uniform(size=(p["m"], k))
    W0 /= W0.sum(axis=1, keepdims=True)
    X = np.maximum(W0 @ H0 + p["sigma"] * rng.standard_normal((p["m"], 2)), 0.0)
    blank = {"seed": seed, "method": "", "lam": math.nan, "index": -1, "x": math.nan, "y": math.nan, "metric": "",
             "value": math.nan}
    rows = [{**blank, "kind": "data", "index": i, "x": x, "y": y} for i, (x, y) in enumerate(X)]
    try:
        hull = ConvexHull(X).vertices
    except QhullError:
        raise ReproError("nmf.robustness_toy: the data points are (nearly) collinear, so they have no 2-D hull; "
                         "use params['archetypes'] that span a triangle or a larger params['sigma']") from None
    rows += [{**blank, "kind": "hull", "index": pos, "x": X[v, 0], "y": X[v, 1]} for pos, v in enumerate(hull)]
    rows += [{**blank, "kind": "true_archetype", "index": i, "x": x, "y": y} for i, (x, y) in enumerate(H0)]
    for li, lam in enumerate(p["lams"]):
        est = _saa("saa", k, p["ell"], lam, p, _child_seed(seed, 1, li)).fit(X)
        H = est.components_
        rows += [{**blank, "kind": "archetype", "method": "saa", "lam": lam, "index": i, "x": x, "y": y}
                 for i, (x, y) in enumerate(H)]
        for metric, value in {"weak_L": weak_robustness(H0, H), "strong_L": strong_robustness(H0, H),
                              "recon_err": est.reconstruction_err_}.items():
            rows.append({**blank, "kind": "metric", "method": "saa", "lam": lam, "metric": metric, "value": value})
    frame = pd.DataFrame(rows)
    return frame[["seed", "kind", "method", "lam", "index", "x", "y", "metric", "value"]]
